"""OneWindow's kernel and composition root.

Kernel modules (settings, db, migrate, outbox, events, errors, problems, embedded, logs, metrics,
web, ops, jobs) import no context. The composition root (app, worker, cli, serve, demo) wires
the contexts together and may import everything. See DESIGN.md.
"""

__version__ = "0.1.0"

"""One-window approvals: the service catalog, applications (online, app, counter), documents,
front-desk intake, department reviews through the workflow engine, results, e-certificates and
ratings.

Owns the `services` schema. Independent of `grid`.
"""

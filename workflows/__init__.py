"""Workflows: the engine that routes approvals and field cases. Versioned definitions, instances,
tasks assigned to a role within an organisation unit, parallel branches, working-day SLA clocks,
escalation and an immutable history.

It knows nothing of approvals or cases: those register as subject kinds through a Protocol the
engine defines. Owns the `workflows` schema.
"""

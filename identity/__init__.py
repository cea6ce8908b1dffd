"""Identity: people, organisation units (departments, districts, streets, communities, grids),
roles scoped to a unit, the city's own OpenID Connect provider, login pages and route guards.

Owns the `identity` schema. Other contexts use it only through `identity.api` and
`identity.events`.
"""

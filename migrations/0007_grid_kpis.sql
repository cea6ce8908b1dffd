-- Grid KPIs scoped to a unit (grid.kpis `within`: a community's supervisor sees its community)
-- match a case on any of its grid, community, street, district or department. Read through
-- `cases_reported` alone, a community's year (~6,000 of 1,000,000 cases in bench/grid_kpis.py)
-- scans the whole city's year: ~500 ms. This index finds the scope's cases directly: ~25 ms.
-- A GIN over the five codes (built-in array_ops, no extension) serves that filter, written as
-- `ARRAY[grid_code, community, street, district, department] && $codes` (the same expression,
-- or the planner cannot use it); NULL elements never match. A large scope (a street, a
-- department) still reads the period through `cases_reported` or a sequential scan, as the
-- planner prefers. The table is new (0006), so building it inside the migration's transaction
-- is quick.
CREATE INDEX cases_units ON grid.cases
    USING gin ((ARRAY[grid_code, community, street, district, department]));

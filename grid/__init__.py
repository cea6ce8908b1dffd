"""Grid management: grids as polygons, grid workers, field cases and their closed loop
(register, dispatch, handle, verify, close, evaluate), offline sync from workers' phones, KPIs.

Owns the `grid` schema. Independent of `services`.
"""

-- A definition's body keeps the order its author wrote (json, not jsonb, which sorts keys): the
-- actions of a step are offered in that order (approve before reject, as written). Bodies stored
-- before this migration keep the order jsonb gave them until their definition is uploaded again.
-- The engine never queries inside a body; the checksum is computed from the sorted form.
ALTER TABLE workflows.definitions ALTER COLUMN body TYPE json USING body::json;

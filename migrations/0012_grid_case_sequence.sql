-- Grid: every event a case publishes (CaseReported, CaseChanged, CaseClosed) carries the case's
-- own event number, `sequence`: 1 for its report, then one more for each event after it. The
-- number is taken by the statement that writes the change (or, for a change that writes no case
-- column, by an UPDATE of this column alone), so under the case's row lock, held to commit: the
-- numbers of one case follow the order its changes were committed, whatever order the outbox
-- hands the events on in. The IOC feed (channels) uses it as the CloudEvent's `sequence`.
-- Cases reported before this migration start from 0: their next event is 1.
-- No CHECK: validating one would scan every case under an exclusive lock; only code increments it.
ALTER TABLE grid.cases ADD COLUMN event_sequence bigint NOT NULL DEFAULT 0;

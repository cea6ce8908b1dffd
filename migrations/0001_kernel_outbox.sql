-- The kernel's schema: the transactional outbox.
--
-- A change and the event announcing it are written in the same transaction, so either both
-- happen or neither does. The worker drains pending rows with FOR UPDATE SKIP LOCKED (several
-- workers never take the same row) and records each subscriber's delivery, so a retry after a
-- partial failure only goes to the subscribers that have not had the event yet.

CREATE SCHEMA onewindow;

CREATE TABLE onewindow.outbox (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    topic            text NOT NULL CHECK (topic ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    payload          jsonb NOT NULL,
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz
);

-- The drainer's only query path: pending rows that are due, oldest first.
CREATE INDEX outbox_due ON onewindow.outbox (next_attempt_at, seq) WHERE state = 'pending';
-- Operators look for dead letters; pruning looks for old delivered rows.
CREATE INDEX outbox_dead ON onewindow.outbox (seq) WHERE state = 'dead';
CREATE INDEX outbox_delivered_at ON onewindow.outbox (delivered_at) WHERE state = 'delivered';

CREATE TABLE onewindow.outbox_deliveries (
    event_id      uuid NOT NULL REFERENCES onewindow.outbox (id) ON DELETE CASCADE,
    subscriber    text NOT NULL,
    delivered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, subscriber)
);

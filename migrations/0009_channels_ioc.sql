-- Channels: the IOC incident feed (endpoints, the feed, deliveries and their log, the IOC's
-- inbound updates). docs/ioc-feed.md describes the behaviour these tables carry.

-- Where the feed is POSTed. `configured` marks the one endpoint the settings own
-- (ONEWINDOW_IOC_WEBHOOK_URL): at most one, upserted at every start.
CREATE TABLE channels.ioc_endpoints (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    url text NOT NULL CHECK (url ~ '^https?://'),
    configured boolean NOT NULL DEFAULT false,
    enabled boolean NOT NULL DEFAULT true,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX ioc_endpoints_configured ON channels.ioc_endpoints (configured) WHERE configured;

-- Signing secrets, encrypted with a key derived from ONEWINDOW_SECRET_KEY (they must be read back
-- to sign). Every active secret signs (rotation: add the new one, retire the old one later).
CREATE TABLE channels.ioc_endpoint_secrets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id uuid NOT NULL REFERENCES channels.ioc_endpoints (id) ON DELETE CASCADE,
    secret bytea NOT NULL,
    hint text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
CREATE INDEX ioc_endpoint_secrets_endpoint ON channels.ioc_endpoint_secrets (endpoint_id);

-- The feed: each event once, as the CloudEvent that is pushed and pulled. `sequence` is grid's
-- own number of the event within its case (taken under the case's row lock when the change was
-- written: grid.cases.event_sequence). `position` orders the pull feed; positions are given out
-- under a lock held to commit, so they commit in order and a reader's cursor never skips an
-- event committed later.
CREATE TABLE channels.ioc_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    case_id uuid NOT NULL,
    sequence bigint NOT NULL,
    type text NOT NULL,
    cloudevent jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, sequence)
);

-- One delivery per event and endpoint. Per (endpoint, incident), a "lane", only the head is
-- claimable: the pending delivery whose next_attempt_at is not 'infinity'. The ones behind it wait
-- with next_attempt_at = 'infinity' and the lowest `sequence` of them becomes the head when the
-- head is delivered or dead-lettered (channels/ioc_store.py, under a per-lane advisory lock), so
-- the claim never looks at a blocked backlog. A worker claims a due head (FOR UPDATE SKIP LOCKED)
-- by taking a lease and moving next_attempt_at to the lease's end: a worker that dies leaves the
-- delivery to fall due again when the lease runs out.
CREATE TABLE channels.ioc_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id uuid NOT NULL REFERENCES channels.ioc_endpoints (id) ON DELETE CASCADE,
    event_position bigint NOT NULL REFERENCES channels.ioc_events (position),
    case_id uuid NOT NULL,
    sequence bigint NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease uuid,
    leased_until timestamptz,
    last_status integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (endpoint_id, event_position)
);
-- Due work, per enabled endpoint (the claim walks the enabled endpoints and reads each one's due
-- heads from here; waiting deliveries sort last, at 'infinity', and are never read by it).
CREATE INDEX ioc_deliveries_due ON channels.ioc_deliveries (endpoint_id, next_attempt_at)
    WHERE state = 'pending';
-- A lane: its head and the next to release.
CREATE INDEX ioc_deliveries_lane ON channels.ioc_deliveries (endpoint_id, case_id, sequence)
    WHERE state = 'pending';
CREATE INDEX ioc_deliveries_endpoint ON channels.ioc_deliveries (endpoint_id, state, event_position);

-- The delivery log: every attempt (time, status code or error kind, duration); never a body.
CREATE TABLE channels.ioc_delivery_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES channels.ioc_deliveries (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES channels.ioc_endpoints (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error text,
    outcome text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead', 'replayed'))
);
CREATE INDEX ioc_delivery_attempts_endpoint ON channels.ioc_delivery_attempts (endpoint_id, id);
CREATE INDEX ioc_delivery_attempts_delivery ON channels.ioc_delivery_attempts (delivery_id, id);

-- The IOC's own status updates, each once per (client, update_id): the same id again returns the
-- stored reply. `stale`: older than the incident's latest update, recorded without effect.
CREATE TABLE channels.ioc_updates (
    client_id text NOT NULL,
    update_id text NOT NULL,
    case_id uuid NOT NULL,
    status text NOT NULL,
    note text,
    occurred_at timestamptz NOT NULL,
    stale boolean NOT NULL,
    effect text NOT NULL,
    fingerprint bytea NOT NULL,
    reply jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, update_id)
);
CREATE INDEX ioc_updates_case ON channels.ioc_updates (case_id, occurred_at) WHERE NOT stale;

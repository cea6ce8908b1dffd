-- The workflow engine (workflows/) and the kernel's Idempotency-Key store.

-- A POST that creates or acts carries an Idempotency-Key: the key is stored in the same
-- transaction as the effect, with the reply. A second request with the key blocks on the primary
-- key until the first commits, then gets the first reply; if the first rolled back, the second
-- runs as if it were the first. A key is the caller's own: scoped by principal and operation.
CREATE TABLE onewindow.idempotency_keys (
    principal    text NOT NULL,
    scope        text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint  bytea NOT NULL,
    status       smallint,
    reply        jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, scope, key)
);
CREATE INDEX idempotency_keys_created ON onewindow.idempotency_keys (created_at);

CREATE SCHEMA workflows;

-- A definition is immutable once stored: a new upload with the same key is the next version.
CREATE TABLE workflows.definitions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key         text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    version     integer NOT NULL CHECK (version >= 1),
    name        text NOT NULL,
    body        jsonb NOT NULL,      -- the normalised Definition the engine runs
    source      text NOT NULL,       -- what the author uploaded, as uploaded
    media_type  text NOT NULL CHECK (media_type IN ('yaml', 'json')),
    checksum    bytea NOT NULL,      -- sha256 of the normalised body: an identical upload is no new version
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (key, version)
);

-- The city's calendar: the days that differ from the weekday rule (settings.weekend_days).
CREATE TABLE workflows.calendar_days (
    day         date PRIMARY KEY,
    working     boolean NOT NULL,    -- false: a public holiday; true: a make-up working day
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Processes cache the calendar and reread it when this number moves (one row, bumped by trigger).
CREATE TABLE workflows.calendar_version (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version   bigint NOT NULL
);
INSERT INTO workflows.calendar_version (version) VALUES (1);
CREATE FUNCTION workflows.bump_calendar_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workflows.calendar_version SET version = version + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER calendar_days_changed AFTER INSERT OR UPDATE OR DELETE ON workflows.calendar_days
    FOR EACH STATEMENT EXECUTE FUNCTION workflows.bump_calendar_version();

-- One instance per subject (an application item, a grid case). Its clock: `due_at` while it
-- runs; while any branch waits for the applicant (`pauses` > 0) the clock stops and the time
-- left is kept in `remaining_s` (seconds of the deadline's own clock).
CREATE TABLE workflows.instances (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    definition_id  uuid NOT NULL REFERENCES workflows.definitions (id),
    subject_kind   text NOT NULL,
    subject_id     text NOT NULL,
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ended')),
    outcome        text,
    vars           jsonb NOT NULL DEFAULT '{}',
    started_by     text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    ended_at       timestamptz,
    due_at         timestamptz,
    remaining_s    bigint,
    warned         boolean NOT NULL DEFAULT false,
    breached       boolean NOT NULL DEFAULT false,
    pauses         integer NOT NULL DEFAULT 0 CHECK (pauses >= 0),
    version        integer NOT NULL DEFAULT 1,
    UNIQUE (subject_kind, subject_id),
    CHECK ((status = 'ended') = (ended_at IS NOT NULL))
);

-- Where an instance is: the root token, and one per running branch of a parallel state.
-- `resume_state`/`resume_s`: the task that sent this branch to the applicant, and the time its
-- deadline had left, so coming back to it continues the clock instead of restarting it.
CREATE TABLE workflows.tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    instance_id   uuid NOT NULL REFERENCES workflows.instances (id),
    parent_id     uuid REFERENCES workflows.tokens (id),
    branch        text,
    state         text NOT NULL,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'forked', 'done', 'cancelled')),
    outcome       text,
    resume_state  text,
    resume_s      bigint
);
CREATE INDEX tokens_instance ON workflows.tokens (instance_id);

-- A task is a piece of work in a queue: a role within an organisation unit (`unit_path`, the
-- unit's chain of codes, compared byte-wise so a prefix range finds a unit and all below it),
-- claimed by a person (`assignee`) or not. Wait states are tasks of the applicant. `due_at` is
-- 'infinity'-free: no deadline is stored as 9999-12-31 so the inbox sorts and pages on one key.
CREATE TABLE workflows.tasks (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    instance_id   uuid NOT NULL REFERENCES workflows.instances (id),
    token_id      uuid NOT NULL REFERENCES workflows.tokens (id),
    definition_id uuid NOT NULL REFERENCES workflows.definitions (id),
    subject_kind  text NOT NULL,
    subject_id    text NOT NULL,
    state         text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('task', 'wait')),
    role          text,
    unit_path     text COLLATE "C",
    assignee      text,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed', 'cancelled')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    due_at        timestamptz NOT NULL,
    budget_s      bigint,
    warned        boolean NOT NULL DEFAULT false,
    breached      boolean NOT NULL DEFAULT false,
    completed_at  timestamptz,
    completed_by  text,
    action        text,
    version       integer NOT NULL DEFAULT 1,
    CHECK ((status = 'open') = (completed_at IS NULL))
);
-- The inbox: open tasks of a role in a unit subtree, by due date; a person's own; due dates.
CREATE INDEX tasks_open_queue ON workflows.tasks (role, unit_path, due_at, id) WHERE status = 'open';
CREATE INDEX tasks_open_assignee ON workflows.tasks (assignee, due_at, id) WHERE status = 'open';
CREATE INDEX tasks_open_unit ON workflows.tasks (unit_path, due_at, id) WHERE status = 'open';
CREATE INDEX tasks_open_due ON workflows.tasks (due_at, id) WHERE status = 'open';
CREATE INDEX tasks_instance ON workflows.tasks (instance_id);

-- Deadline timers: the cron scan's only query path is unfired timers that are due.
CREATE TABLE workflows.timers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  uuid NOT NULL REFERENCES workflows.instances (id),
    task_id      uuid REFERENCES workflows.tasks (id),
    kind         text NOT NULL CHECK (kind IN ('warn', 'breach')),
    fire_at      timestamptz NOT NULL,
    fired_at     timestamptz,
    error        text
);
CREATE INDEX timers_due ON workflows.timers (fire_at) WHERE fired_at IS NULL;
CREATE INDEX timers_instance ON workflows.timers (instance_id) WHERE fired_at IS NULL;

-- Out of office: while a delegation runs, the delegate sees and acts on the person's tasks.
CREATE TABLE workflows.delegations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    person      text NOT NULL,
    delegate    text NOT NULL CHECK (delegate <> person),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX delegations_delegate ON workflows.delegations (delegate, ends_at) WHERE revoked_at IS NULL;
CREATE INDEX delegations_person ON workflows.delegations (person, ends_at) WHERE revoked_at IS NULL;

-- Every step, appended and never changed: who (and in which role and unit), when, what, from
-- where to where, why, and the deadline that applied then.
CREATE TABLE workflows.history (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  uuid NOT NULL REFERENCES workflows.instances (id),
    task_id      uuid REFERENCES workflows.tasks (id),
    at           timestamptz NOT NULL DEFAULT now(),
    event        text NOT NULL,
    actor        text NOT NULL,
    actor_name   text,
    actor_role   text,
    actor_unit   text,
    action       text,
    from_state   text,
    to_state     text,
    comment      text,
    attachments  jsonb NOT NULL DEFAULT '[]',
    data         jsonb NOT NULL DEFAULT '{}',
    due_at       timestamptz
);
CREATE INDEX history_instance ON workflows.history (instance_id, seq);

CREATE FUNCTION workflows.history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'workflows.history is append-only';
END $$;
CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON workflows.history
    FOR EACH ROW EXECUTE FUNCTION workflows.history_is_append_only();

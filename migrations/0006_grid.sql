-- Grid management: the grid layer (polygons as GeoJSON, located in the application with shapely),
-- case categories, field cases and their closed loop (run by the workflow engine; the case row
-- is the loop's subject and keeps the figures the KPIs count), photos, and what offline phones
-- have already synced.

-- A street's command centre registers, dispatches and closes cases: a role of its own.
ALTER TABLE identity.role_assignments DROP CONSTRAINT role_assignments_role_check;
ALTER TABLE identity.role_assignments ADD CONSTRAINT role_assignments_role_check CHECK (
    role IN ('citizen', 'clerk', 'officer', 'supervisor', 'grid_worker', 'command_centre', 'admin')
);

CREATE SCHEMA grid;

-- One row: the layer's version, bumped by every import, and a token drawn afresh by each, so
-- each process knows when the in-memory locator it holds is stale (a version number can come
-- back after a rolled-back import; a token never does).
CREATE TABLE grid.layer (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version      integer NOT NULL DEFAULT 0,
    token        uuid NOT NULL DEFAULT gen_random_uuid(),
    imported_at  timestamptz,
    imported_by  text
);
INSERT INTO grid.layer DEFAULT VALUES;

-- `code` is also the grid's organisation unit (identity), so roles scope to it. Retired grids
-- (absent from a later import) stay for the cases that name them and are never located.
CREATE TABLE grid.grids (
    code         text PRIMARY KEY,
    name         text NOT NULL,
    community    text NOT NULL,
    street       text NOT NULL,
    district     text NOT NULL,
    households   integer NOT NULL CHECK (households >= 0),
    geometry     jsonb NOT NULL,
    unit_path    text NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);
CREATE INDEX grids_community ON grid.grids (community) WHERE retired_at IS NULL;

-- Every version a grid has had, written by the import that made it.
CREATE TABLE grid.grid_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code         text NOT NULL REFERENCES grid.grids (code),
    version      integer NOT NULL,
    change       text NOT NULL CHECK (change IN ('created', 'updated', 'retired', 'restored')),
    name         text NOT NULL,
    community    text NOT NULL,
    street       text NOT NULL,
    district     text NOT NULL,
    households   integer NOT NULL,
    geometry     jsonb NOT NULL,
    layer_version integer NOT NULL,
    changed_by   text NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, version)
);

-- Managed components and events (GB/T 30428): who handles them and how fast. Limits are ISO 8601
-- durations: hours (PT4H) count on the clock, days (P3D) count working days.
CREATE TABLE grid.categories (
    code               text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind               text NOT NULL CHECK (kind IN ('component', 'event')),
    name_zh            text NOT NULL,
    name_en            text NOT NULL,
    department         text NOT NULL,
    register_limit     text NOT NULL,
    handle_limit       text NOT NULL,
    severity           text NOT NULL CHECK (severity IN ('low', 'normal', 'high', 'urgent')),
    citizen_reportable boolean NOT NULL DEFAULT true,
    active             boolean NOT NULL DEFAULT true,
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    updated_by         text NOT NULL
);

CREATE SEQUENCE grid.case_numbers;

-- A case. `client_id` is the id a phone gave it offline (a replay finds it). The street,
-- community and district are copied from the grid when located, so the KPIs group without a
-- join and a later re-import does not move old cases. Times: `reported_at` is when it was seen
-- (the phone's clock, offline), `created_at` when the server learned of it.
CREATE TABLE grid.cases (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number          text NOT NULL UNIQUE,
    client_id       uuid UNIQUE,
    source          text NOT NULL CHECK (source IN ('worker', 'citizen', 'command_centre')),
    reporter        text NOT NULL,
    category        text NOT NULL REFERENCES grid.categories (code),
    department      text NOT NULL,
    severity        text NOT NULL,
    grid_code       text REFERENCES grid.grids (code),
    community       text,
    street          text,
    district        text,
    lat             double precision CHECK (lat BETWEEN -90 AND 90),
    lon             double precision CHECK (lon BETWEEN -180 AND 180),
    address         text,
    description     text NOT NULL,
    status          text NOT NULL DEFAULT 'registering' CHECK (status IN (
                        'registering', 'dispatching', 'handling', 'verifying', 'closing',
                        'evaluating', 'closed', 'rejected', 'duplicate')),
    duplicate_of    uuid REFERENCES grid.cases (id),
    dispatched_to   text CHECK (dispatched_to IN ('department', 'worker')),
    rework_count    integer NOT NULL DEFAULT 0 CHECK (rework_count >= 0),
    reported_at     timestamptz NOT NULL,
    register_due_at timestamptz NOT NULL,
    registered_at   timestamptz,
    dispatched_at   timestamptz,
    handle_due_at   timestamptz,
    handled_at      timestamptz,
    closed_at       timestamptz,
    rating          smallint CHECK (rating BETWEEN 1 AND 5),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         integer NOT NULL DEFAULT 1,
    CHECK ((lat IS NULL) = (lon IS NULL)),
    CHECK (lat IS NOT NULL OR address IS NOT NULL),
    -- A duplicate's loop ends when it is linked; the case itself closes with the case it
    -- duplicates (status 'closed', the same closed_at).
    CHECK ((status IN ('closed', 'rejected')) = (closed_at IS NOT NULL)),
    CHECK ((status = 'duplicate') <= (duplicate_of IS NOT NULL))
);
-- The delta download and the duplicate finder read open cases of a grid; the KPIs read a
-- period by when cases were reported; the delta reads by change time.
CREATE INDEX cases_grid_open ON grid.cases (grid_code, category, reported_at)
    WHERE status NOT IN ('closed', 'rejected', 'duplicate');
CREATE INDEX cases_reported ON grid.cases (reported_at);
CREATE INDEX cases_updated ON grid.cases (updated_at, id);
CREATE INDEX cases_duplicate_of ON grid.cases (duplicate_of) WHERE duplicate_of IS NOT NULL;
CREATE INDEX cases_reporter ON grid.cases (reporter, reported_at);

-- The case's own history (the workflow keeps the loop's; this keeps what grid itself did:
-- reported, located, linked, photos added, closed with its duplicates).
CREATE TABLE grid.case_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     uuid NOT NULL REFERENCES grid.cases (id),
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    note        text,
    data        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX case_history_case ON grid.case_history (case_id, id);

-- Photos are stored once per content (sha256), on disk; a case names them.
CREATE TABLE grid.photos (
    sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    media_type   text NOT NULL,
    size         integer NOT NULL CHECK (size > 0),
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE grid.case_photos (
    case_id   uuid NOT NULL REFERENCES grid.cases (id),
    sha256    text NOT NULL REFERENCES grid.photos (sha256),
    stage     text NOT NULL CHECK (stage IN ('report', 'handle', 'verify')),
    added_by  text NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, sha256)
);

-- What a phone's sync has applied, by the item's client-generated id: a replay returns the
-- stored result and changes nothing.
CREATE TABLE grid.sync_items (
    client_id    uuid PRIMARY KEY,
    worker       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('case', 'update')),
    case_id      uuid REFERENCES grid.cases (id),
    result       jsonb NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
);

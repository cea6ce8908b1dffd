-- One-window approvals (services): the catalog of approval items and bundles (versioned, every
-- edit audited), applications and their items (each item is one workflow instance, reviewed in
-- its department), the documents people have on file, counter intake, payments, e-certificates
-- (signed with a key of their own), ratings and their follow-up.

CREATE SCHEMA services;

-- --- the catalog ----------------------------------------------------------------------------------

-- The current version of each approval item; `body` is the whole item as the admin wrote it
-- (names, form schema, checklist, fee, ...). The columns beside it are what searches, joins and
-- checks read. Every version ever published stays in item_versions: an application names the
-- version it was made under and is judged by it.
CREATE TABLE services.items (
    code          text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    version       integer NOT NULL CHECK (version >= 1),
    department    text NOT NULL,          -- identity unit code of the owning department
    name_zh       text NOT NULL,
    name_en       text NOT NULL,
    keywords      text NOT NULL DEFAULT '', -- lower-cased names, description and keywords, for search
    life_events   text[] NOT NULL DEFAULT '{}',
    channels      text[] NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    body          json NOT NULL,          -- json, not jsonb: the form's fields keep their order
    updated_at    timestamptz NOT NULL,
    updated_by    text NOT NULL
);
CREATE INDEX items_department ON services.items (department) WHERE active;
CREATE INDEX items_life_events ON services.items USING gin (life_events);

CREATE TABLE services.item_versions (
    code          text NOT NULL REFERENCES services.items (code),
    version       integer NOT NULL,
    body          json NOT NULL,          -- json, not jsonb: the form's fields keep their order
    active        boolean NOT NULL,
    changed_by    text NOT NULL,
    changed_at    timestamptz NOT NULL,
    note          text,
    PRIMARY KEY (code, version)
);

-- A bundle ("one thing"): several items applied for together with one form and one document set.
CREATE TABLE services.bundles (
    code          text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    version       integer NOT NULL CHECK (version >= 1),
    name_zh       text NOT NULL,
    name_en       text NOT NULL,
    keywords      text NOT NULL DEFAULT '',
    life_events   text[] NOT NULL DEFAULT '{}',
    items         text[] NOT NULL CHECK (cardinality(items) >= 2),
    active        boolean NOT NULL DEFAULT true,
    body          json NOT NULL,          -- json, not jsonb: the form's fields keep their order
    updated_at    timestamptz NOT NULL,
    updated_by    text NOT NULL
);
CREATE INDEX bundles_life_events ON services.bundles USING gin (life_events);

CREATE TABLE services.bundle_versions (
    code          text NOT NULL REFERENCES services.bundles (code),
    version       integer NOT NULL,
    body          json NOT NULL,          -- json, not jsonb: the form's fields keep their order
    active        boolean NOT NULL,
    changed_by    text NOT NULL,
    changed_at    timestamptz NOT NULL,
    note          text,
    PRIMARY KEY (code, version)
);

-- --- applications ---------------------------------------------------------------------------------

-- Application numbers: YC-2026-000123, one counter per prefix and year, taken under the row lock.
CREATE TABLE services.number_counters (
    prefix        text NOT NULL,
    year          integer NOT NULL,
    last          bigint NOT NULL,
    PRIMARY KEY (prefix, year)
);

-- One application: for one item, or for a bundle of items (one form, one document set, one
-- number). `applicant` is the citizen's subject; `created_by` who typed it (the citizen, or a
-- clerk at the counter). `version` is the ETag of its editable parts.
CREATE TABLE services.applications (
    id              uuid PRIMARY KEY,
    number          text UNIQUE,           -- given at submit
    applicant       text NOT NULL,
    created_by      text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('online', 'app', 'counter')),
    bundle_code     text,
    bundle_version  integer,
    status          text NOT NULL CHECK (status IN (
                        'draft',            -- being written
                        'submitted',        -- waiting for counter intake (documents checked in person)
                        'in_review',        -- its items are with the departments
                        'needs_correction', -- at least one item waits for the applicant's correction
                        'awaiting_payment', -- at least one item waits for a fee (and none for a correction)
                        'decided',          -- every item decided (see the items for how)
                        'returned',         -- returned at intake with the list of what is missing
                        'withdrawn'         -- withdrawn by the applicant before a decision
                    )),
    outcome         text CHECK (outcome IN ('approved', 'rejected', 'partly_approved')),
    form            jsonb NOT NULL DEFAULT '{}',
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    submitted_at    timestamptz,
    decided_at      timestamptz,
    withdrawn_at    timestamptz,
    withdrawn_reason text,                -- the applicant's reason for withdrawing
    promised_at     timestamptz,          -- the promised deadline (working days from submission)
    -- counter intake
    intake_by       text,
    intake_at       timestamptz,
    intake_note     text,
    documents_due_at timestamptz,         -- accepted with documents pending: by when
    missing         jsonb NOT NULL DEFAULT '[]', -- what the counter or the review asked for
    receipt_number  text UNIQUE
);
CREATE INDEX applications_applicant ON services.applications (applicant, created_at DESC, id DESC);
CREATE INDEX applications_status ON services.applications (status, created_at) WHERE status NOT IN ('decided', 'withdrawn');

-- Each item of an application, reviewed through its own workflow instance (subject kind
-- `application_item`, subject id = this row's id), in the item's department.
CREATE TABLE services.application_items (
    id              uuid PRIMARY KEY,
    application_id  uuid NOT NULL REFERENCES services.applications (id),
    position        integer NOT NULL,
    item_code       text NOT NULL REFERENCES services.items (code),
    item_version    integer NOT NULL,
    department      text NOT NULL,
    status          text NOT NULL CHECK (status IN (
                        'pending', 'in_review', 'needs_correction', 'awaiting_payment',
                        'approved', 'rejected', 'withdrawn'
                    )),
    fee_minor       bigint NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    promised_at     timestamptz,
    started_at      timestamptz,
    decided_at      timestamptz,
    decided_by      text,
    reason          text,                 -- a rejection's reason
    corrections     integer NOT NULL DEFAULT 0, -- times returned for correction
    working_days    integer,              -- working days from submission to decision (paused time excluded)
    on_time         boolean,
    UNIQUE (application_id, position),
    FOREIGN KEY (item_code, item_version) REFERENCES services.item_versions (code, version)
);
CREATE INDEX application_items_application ON services.application_items (application_id);
CREATE INDEX application_items_stats ON services.application_items (item_code, department, decided_at);

-- --- documents ------------------------------------------------------------------------------------

-- A person's documents on file (content in the blob store under its SHA-256): uploaded once,
-- offered again to every later application of theirs that asks for the same kind.
CREATE TABLE services.documents (
    id              uuid PRIMARY KEY,
    owner           text NOT NULL,
    kind            text NOT NULL,         -- the checklist code it was given for (id_card, floor_plan, ...)
    filename        text NOT NULL,
    media_type      text NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes > 0),
    sha256          text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    uploaded_by     text NOT NULL,
    uploaded_at     timestamptz NOT NULL,
    valid_until     date
);
CREATE INDEX documents_owner ON services.documents (owner, kind, uploaded_at DESC);

-- What an application supplies for each entry of its checklist: a document on file or a
-- certificate already issued to the applicant (reuse), or nothing yet (pending).
CREATE TABLE services.application_documents (
    application_id  uuid NOT NULL REFERENCES services.applications (id),
    checklist_code  text NOT NULL,
    document_id     uuid REFERENCES services.documents (id),
    certificate_number text,
    status          text NOT NULL CHECK (status IN ('provided', 'reused', 'pending', 'accepted', 'rejected')),
    due_at          timestamptz,           -- pending documents: by when
    note            text,
    attached_by     text NOT NULL,
    attached_at     timestamptz NOT NULL,
    PRIMARY KEY (application_id, checklist_code),
    CHECK (status = 'pending' OR document_id IS NOT NULL OR certificate_number IS NOT NULL)
);

-- --- payments -------------------------------------------------------------------------------------

CREATE TABLE services.payments (
    id              uuid PRIMARY KEY,
    application_item_id uuid NOT NULL REFERENCES services.application_items (id),
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL,
    provider        text NOT NULL,
    reference       text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed')),
    created_at      timestamptz NOT NULL,
    confirmed_at    timestamptz,
    UNIQUE (provider, reference)
);
CREATE UNIQUE INDEX payments_one_confirmed ON services.payments (application_item_id) WHERE status = 'confirmed';

-- --- certificates ---------------------------------------------------------------------------------

-- The signing keys of e-certificates (not the identity provider's): private keys encrypted with
-- the server's secret; retired keys stay published so old certificates still verify.
CREATE TABLE services.certificate_keys (
    kid             text PRIMARY KEY,
    algorithm       text NOT NULL,
    public_jwk      jsonb NOT NULL,
    private_key     bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    retired_at      timestamptz
);

CREATE TABLE services.certificates (
    number          text PRIMARY KEY,
    application_item_id uuid NOT NULL UNIQUE REFERENCES services.application_items (id),
    holder          text NOT NULL,
    item_code       text NOT NULL,
    kid             text NOT NULL REFERENCES services.certificate_keys (kid),
    jws             text NOT NULL,
    issued_at       timestamptz NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_until     timestamptz,
    revoked_at      timestamptz,
    revoked_by      text,
    revoked_reason  text,
    delivery        text NOT NULL DEFAULT 'online' CHECK (delivery IN ('online', 'counter')),
    handed_over_at  timestamptz,
    handed_over_by  text,
    handed_over_note text,                -- the clerk's note (who collected it: no ID number)
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX certificates_holder ON services.certificates (holder, issued_at DESC);

-- --- ratings --------------------------------------------------------------------------------------

-- 好差评: once per application, five levels. A rating in the two lowest levels opens one
-- follow-up per department that decided an item of it: a workflow instance (subject kind
-- `rating_follow_up`, subject id = the follow-up's id) for the department's supervisor.
CREATE TABLE services.ratings (
    application_id  uuid PRIMARY KEY REFERENCES services.applications (id),
    level           smallint NOT NULL CHECK (level BETWEEN 1 AND 5),
    comment         text,
    rated_by        text NOT NULL,
    rated_at        timestamptz NOT NULL
);

CREATE TABLE services.follow_ups (
    id              uuid PRIMARY KEY,
    application_id  uuid NOT NULL REFERENCES services.ratings (application_id),
    department      text NOT NULL,
    status          text NOT NULL CHECK (status IN ('open', 'done')),
    outcome         text,
    note            text,
    opened_at       timestamptz NOT NULL,
    closed_at       timestamptz,
    UNIQUE (application_id, department)
);

-- Channels: Open311 GeoReport v2 (api keys issued per app, the service requests it took and
-- their tokens, citizens' updates).

CREATE SCHEMA channels;

-- Every citizen-reportable case category is an Open311 service. What the service asks besides
-- the location and description (its attributes, in the GeoReport v2 shape: code, datatype,
-- required, values, ...) and whether it takes reports from people who are not signed in are
-- properties of the category, so they live beside it; grid reads them, channels presents them.
ALTER TABLE grid.categories
    ADD COLUMN attributes jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(attributes) = 'array'),
    ADD COLUMN anonymous_reports boolean NOT NULL DEFAULT true;

-- `servicerequestupdates` reads the cases' history by time ("every update since ..."), across
-- cases: without this it would scan the whole history.
CREATE INDEX case_history_at ON grid.case_history (at, id);

-- An api key per client app, issued by an administrator. Only a digest of the key is stored
-- (it is shown once, when issued); `prefix` lets people tell their keys apart. A revoked key
-- stays, so the requests it sent still name it.
CREATE TABLE channels.open311_keys (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app              text NOT NULL CHECK (length(app) BETWEEN 1 AND 200),
    key_digest       bytea NOT NULL UNIQUE,
    prefix           text NOT NULL,
    rate_per_minute  integer CHECK (rate_per_minute > 0),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_by       text,
    revoked_at       timestamptz,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

-- A service request taken through Open311: the grid case it became (by id and number; grid owns
-- the case), the token handed back, the app that sent it, and what grid does not keep (the
-- service's attribute values, the client's media URL, its address id). Contact fields the client
-- may send (e-mail, names, phone) are not stored: a citizen who wants to follow a report signs in.
CREATE TABLE channels.open311_requests (
    case_id       uuid PRIMARY KEY,
    number        text NOT NULL UNIQUE,
    token         uuid NOT NULL UNIQUE,
    key_id        uuid NOT NULL REFERENCES channels.open311_keys (id),
    service_code  text NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,
    media_url     text,
    address_id    text,
    signed_in     boolean NOT NULL,
    requested_at  timestamptz NOT NULL
);
CREATE INDEX open311_requests_key ON channels.open311_requests (key_id, requested_at);

-- A citizen's update (FixMyStreet's POST servicerequestupdates), keyed by the app and the
-- app's own update id: a retry finds the note it already added (the case's history row).
CREATE TABLE channels.open311_updates (
    key_id           uuid NOT NULL REFERENCES channels.open311_keys (id),
    client_update_id text NOT NULL CHECK (length(client_update_id) BETWEEN 1 AND 100),
    case_id          uuid NOT NULL,
    history_id       bigint NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, client_update_id)
);

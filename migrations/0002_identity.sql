-- Identity: people, the organisation tree, roles scoped to a unit, OpenID Connect clients,
-- signing keys, sign-on sessions, codes and tokens, and the audit trail.
--
-- Personal data: phone numbers and national ID numbers are stored encrypted (AES-GCM, key
-- derived from ONEWINDOW_SECRET_KEY) for display, and as keyed hashes (HMAC) for lookup.
-- Secrets we only ever compare (passwords, client secrets, codes, refresh tokens, session ids)
-- are stored as hashes, never as themselves.

CREATE SCHEMA identity;

-- The organisation tree: city -> department; city -> district -> street -> community -> grid.
-- `path` is the chain of codes from the root ("yc/xingqing/fenghuang/fh-01/G-0107"), so "is this
-- unit inside that one" is a prefix test, in SQL and inside a token.
CREATE TABLE identity.org_units (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    kind        text NOT NULL CHECK (kind IN ('city', 'department', 'district', 'street', 'community', 'grid')),
    parent_id   uuid REFERENCES identity.org_units (id),
    path        text NOT NULL UNIQUE,
    name_zh     text NOT NULL,
    name_en     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'city') = (parent_id IS NULL))
);
CREATE INDEX org_units_parent ON identity.org_units (parent_id);
CREATE INDEX org_units_path ON identity.org_units (path text_pattern_ops);

CREATE TABLE identity.persons (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username              text UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{2,63}$'),
    display_name          text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    email                 text UNIQUE CHECK (email = lower(email)),
    email_verified_at     timestamptz,
    phone_hash            bytea UNIQUE,
    phone_enc             bytea,
    phone_verified_at     timestamptz,
    national_id_hash      bytea UNIQUE,
    national_id_enc       bytea,
    identity_verified_at  timestamptz,
    identity_verified_by  uuid REFERENCES identity.persons (id),
    identity_method       text CHECK (identity_method IN ('counter', 'national_eid')),
    locale                text NOT NULL DEFAULT 'zh' CHECK (locale IN ('zh', 'en')),
    disabled_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    version               integer NOT NULL DEFAULT 1,
    CHECK (username IS NOT NULL OR email IS NOT NULL OR phone_hash IS NOT NULL),
    CHECK ((phone_hash IS NULL) = (phone_enc IS NULL)),
    CHECK ((national_id_hash IS NULL) = (national_id_enc IS NULL))
);

CREATE TABLE identity.passwords (
    person_id   uuid PRIMARY KEY REFERENCES identity.persons (id) ON DELETE CASCADE,
    hash        text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identity.totp (
    person_id       uuid PRIMARY KEY REFERENCES identity.persons (id) ON DELETE CASCADE,
    secret_enc      bytea NOT NULL,
    confirmed_at    timestamptz,
    last_used_step  bigint
);

CREATE TABLE identity.recovery_codes (
    person_id    uuid NOT NULL REFERENCES identity.persons (id) ON DELETE CASCADE,
    code_digest  text NOT NULL,
    used_at      timestamptz,
    PRIMARY KEY (person_id, code_digest)
);

CREATE TABLE identity.role_assignments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    person_id   uuid NOT NULL REFERENCES identity.persons (id),
    role        text NOT NULL CHECK (role IN ('citizen', 'clerk', 'officer', 'supervisor', 'grid_worker', 'admin')),
    unit_id     uuid NOT NULL REFERENCES identity.org_units (id),
    granted_by  uuid REFERENCES identity.persons (id),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    revoked_by  uuid REFERENCES identity.persons (id)
);
CREATE UNIQUE INDEX role_assignments_active ON identity.role_assignments (person_id, role, unit_id)
    WHERE revoked_at IS NULL;
CREATE INDEX role_assignments_unit ON identity.role_assignments (unit_id) WHERE revoked_at IS NULL;

-- Brute-force protection: failures per account and per source address, in a sliding window.
CREATE TABLE identity.login_failures (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   uuid REFERENCES identity.persons (id) ON DELETE CASCADE,
    source      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_person ON identity.login_failures (person_id, at);
CREATE INDEX login_failures_source ON identity.login_failures (source, at);

CREATE TABLE identity.account_locks (
    person_id     uuid PRIMARY KEY REFERENCES identity.persons (id) ON DELETE CASCADE,
    locked_until  timestamptz NOT NULL,
    reason        text NOT NULL
);

-- One-time codes that verify a phone number or e-mail address (only a keyed hash is kept).
CREATE TABLE identity.verification_codes (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    purpose       text NOT NULL CHECK (purpose IN ('register', 'verify_email', 'verify_phone', 'reset')),
    target_hash   bytea NOT NULL,
    code_digest   bytea NOT NULL,
    expires_at    timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    consumed_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verification_codes_target ON identity.verification_codes (target_hash, created_at);

CREATE TABLE identity.clients (
    client_id                   text PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    name                        text NOT NULL,
    kind                        text NOT NULL CHECK (kind IN ('public', 'confidential')),
    secret_hash                 text,
    jwks                        jsonb,
    token_endpoint_auth_method  text NOT NULL CHECK (token_endpoint_auth_method IN
                                    ('none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt')),
    grant_types                 text[] NOT NULL,
    redirect_uris               text[] NOT NULL DEFAULT '{}',
    allow_loopback_redirects    boolean NOT NULL DEFAULT false,
    post_logout_redirect_uris   text[] NOT NULL DEFAULT '{}',
    scopes                      text[] NOT NULL,
    disabled_at                 timestamptz,
    secret_rotated_at           timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'public') = (token_endpoint_auth_method = 'none'))
);

-- Signing keys. The private key is encrypted; the public key is published in the JWKS from
-- `created_at` until `unpublish_after` (its last token has expired). One key is active.
CREATE TABLE identity.signing_keys (
    kid              text PRIMARY KEY,
    alg              text NOT NULL,
    private_key_enc  bytea NOT NULL,
    public_jwk       jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    retired_at       timestamptz,
    unpublish_after  timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_active ON identity.signing_keys ((true)) WHERE retired_at IS NULL;

-- Single sign-on sessions (the cookie holds a random id; only its hash is kept).
CREATE TABLE identity.sessions (
    id_hash     bytea PRIMARY KEY,
    person_id   uuid NOT NULL REFERENCES identity.persons (id) ON DELETE CASCADE,
    auth_time   timestamptz NOT NULL,
    amr         text[] NOT NULL,
    acr         text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz
);
CREATE INDEX sessions_person ON identity.sessions (person_id) WHERE ended_at IS NULL;

CREATE TABLE identity.authorization_codes (
    code_hash              bytea PRIMARY KEY,
    client_id              text NOT NULL REFERENCES identity.clients (client_id),
    person_id              uuid NOT NULL REFERENCES identity.persons (id) ON DELETE CASCADE,
    session_hash           bytea,
    redirect_uri           text NOT NULL,
    scope                  text NOT NULL,
    nonce                  text,
    code_challenge         text,
    code_challenge_method  text,
    auth_time              timestamptz NOT NULL,
    acr                    text NOT NULL,
    amr                    text[] NOT NULL,
    expires_at             timestamptz NOT NULL,
    used_at                timestamptz,
    -- The refresh-token family the code's first use created: revoked if the code is used again.
    family_id              uuid
);

-- Refresh tokens rotate on every use; all tokens descending from one sign-in share a family,
-- and presenting an already-used one revokes the family.
CREATE TABLE identity.refresh_tokens (
    token_hash   bytea PRIMARY KEY,
    family_id    uuid NOT NULL,
    client_id    text NOT NULL REFERENCES identity.clients (client_id),
    person_id    uuid NOT NULL REFERENCES identity.persons (id) ON DELETE CASCADE,
    session_hash bytea,
    scope        text NOT NULL,
    auth_time    timestamptz NOT NULL,
    acr          text NOT NULL,
    amr          text[] NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX refresh_tokens_family ON identity.refresh_tokens (family_id);

-- Access tokens are JWTs checked locally by every route; the record here is what revocation,
-- introspection and "a reused code revokes what it issued" work on.
CREATE TABLE identity.access_tokens (
    jti         text PRIMARY KEY,
    family_id   uuid,
    client_id   text NOT NULL REFERENCES identity.clients (client_id),
    person_id   uuid REFERENCES identity.persons (id) ON DELETE CASCADE,
    scope       text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX access_tokens_family ON identity.access_tokens (family_id) WHERE family_id IS NOT NULL;
CREATE INDEX access_tokens_expiry ON identity.access_tokens (expires_at);

-- private_key_jwt client assertions are single use.
CREATE TABLE identity.used_assertions (
    client_id   text NOT NULL,
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- Who did what, when: every administrative change and every sign-in attempt.
CREATE TABLE identity.audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    client_id   text,
    action      text NOT NULL,
    subject     text,
    outcome     text NOT NULL DEFAULT 'ok',
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_subject ON identity.audit_log (subject, at);
CREATE INDEX audit_log_actor ON identity.audit_log (actor_id, at);

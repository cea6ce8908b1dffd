-- Identity: what the admin API and citizen self-registration need beyond 0002.

-- A registration waiting for its one-time code, beside the code it waits for. What the person
-- typed is held only until they prove the phone or e-mail is theirs: completing the registration
-- clears it (the row stays, without it, so registrations per source address can still be
-- counted), and the row goes with its code an hour after the code expired.
--
-- The phone number or e-mail address is encrypted (AES-GCM, the code's id as associated data),
-- the password is already an argon2id hash, and the source address is kept only as a keyed
-- hash: enough to count registrations per address, not to say who sent them.
CREATE TABLE identity.pending_registrations (
    code_id        uuid PRIMARY KEY REFERENCES identity.verification_codes (id) ON DELETE CASCADE,
    channel        text NOT NULL CHECK (channel IN ('sms', 'email')),
    target_enc     bytea,
    display_name   text CHECK (length(display_name) BETWEEN 1 AND 200),
    password_hash  text,
    locale         text NOT NULL DEFAULT 'zh' CHECK (locale IN ('zh', 'en')),
    source_hash    bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((target_enc IS NULL) = (display_name IS NULL) AND (display_name IS NULL) = (password_hash IS NULL))
);
CREATE INDEX pending_registrations_source ON identity.pending_registrations (source_hash, created_at);
-- Each registration sweeps a few long-expired registration codes away.
CREATE INDEX verification_codes_register_expiry ON identity.verification_codes (expires_at)
    WHERE purpose = 'register';

-- The admin API lists persons in creation order and searches them by the start of a username,
-- e-mail address or display name: prefix matches that a btree with pattern ops can serve.
CREATE INDEX persons_created ON identity.persons (created_at, id);
CREATE INDEX persons_username_prefix ON identity.persons (username text_pattern_ops);
CREATE INDEX persons_email_prefix ON identity.persons (email text_pattern_ops);
CREATE INDEX persons_display_name_prefix ON identity.persons (lower(display_name) text_pattern_ops);

-- The audit log is read newest first, filtered by action as often as by subject or actor.
CREATE INDEX audit_log_action ON identity.audit_log (action, id);

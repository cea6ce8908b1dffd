-- Channels: notifications (preferences, what was sent to whom, and when).
-- The schema `channels` comes from 0008. No address is stored here: e-mail addresses and phone
-- numbers stay in identity (the phone encrypted) and are read when a message is sent.

-- A person's own choice; without a row the default comes from identity (a verified e-mail:
-- email, else a verified phone: sms, else none: nothing goes to an unverified address) and the
-- language from the person's locale.
CREATE TABLE channels.notification_preferences (
    person      text PRIMARY KEY,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'none')),
    language    text NOT NULL CHECK (language IN ('zh-CN', 'en')),
    version     integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per message. Written by the outbox subscriber in the event's transaction; sent after
-- commit by the worker. `params` is what the template needs (it may hold a staff comment, so
-- it is cleared once the message is sent, skipped or dead); `recipient` is a subject id.
CREATE TABLE channels.notifications (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        uuid NOT NULL,
    topic           text NOT NULL,
    recipient       text NOT NULL,
    template        text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms')),
    language        text NOT NULL CHECK (language IN ('zh-CN', 'en')),
    params          jsonb,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Set together when a sender claims the row (`sending`): the token its outcome must carry (a
    -- sender whose lease ran out cannot overwrite the one that took the message over) and when
    -- the claim runs out (clock_timestamp() + the lease, the database's clock only).
    lease           uuid,
    lease_until     timestamptz,
    last_error      text,
    sent_via        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    -- At least once from the outbox, at most one message per event, person and template.
    CONSTRAINT notifications_once UNIQUE (event_id, recipient, template)
);

-- What the sender claims: due messages, and those whose claim ran out (a worker that died).
CREATE INDEX notifications_due ON channels.notifications (next_attempt_at)
    WHERE state IN ('pending', 'failed', 'sending');
CREATE INDEX notifications_recipient ON channels.notifications (recipient, created_at);
-- What the daily prune deletes: finished messages by the time they finished.
CREATE INDEX notifications_done ON channels.notifications (updated_at)
    WHERE state IN ('sent', 'skipped', 'dead');

-- Channels: notifications (preferences, what was sent to whom, and when).
COMMENT ON SCHEMA channels IS 'OneWindow channels: Open311, the IOC incident feed, notifications.';

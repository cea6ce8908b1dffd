-- Channels: the IOC incident feed (endpoints, per-incident sequence, deliveries and their log,
-- the IOC's inbound updates).
COMMENT ON SCHEMA channels IS 'OneWindow channels: Open311, the IOC incident feed, notifications.';

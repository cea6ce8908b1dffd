-- Channels: Open311 GeoReport v2 (api keys issued per app, the service requests it took and
-- their tokens, citizens' updates).

CREATE SCHEMA channels;

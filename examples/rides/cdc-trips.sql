-- The app's table that the change-capture variant reads (pipeline-cdc.toml): one row per
-- trip, inserted by the app. weir reads its rows with the table's own types; the key
-- (a single integer column) orders the initial snapshot.
CREATE TABLE IF NOT EXISTS trips (
  id bigserial PRIMARY KEY,
  trip_id text NOT NULL,
  city text,
  driver_id text,
  rider_id text,
  fare double precision,
  distance_km double precision,
  status text,
  event_time timestamptz NOT NULL
);

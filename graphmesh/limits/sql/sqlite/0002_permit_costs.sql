-- A permit's cost: how much of its limiter's limit it uses. Rate and concurrency limiters
-- charge 1 per permit; a token limiter charges the tokens a call is estimated to use and
-- corrects the estimate from the response (graphmesh/limits/stored.py).
ALTER TABLE graphmesh_limiter_permits ADD COLUMN cost INTEGER NOT NULL DEFAULT 1;

-- The W3C trace context (traceparent) of the request that created the run: every event
-- and job of the run carries it, so its NATS messages and task work join that trace.
ALTER TABLE graphmesh_runs ADD COLUMN traceparent text;

-- Run events: the outbox relay's queries (graphmesh.orchestrator.events.sqlite).

-- name: unpublished_run_events
-- The first unpublished events of the runs waiting longest. One relay per database: no
-- locks are taken, the caller publishes then stamps in a short write transaction.
WITH heads AS (
    SELECT run_id, min(seq) AS head_seq, min(time) AS waiting_since
    FROM graphmesh_run_events
    WHERE published_at IS NULL
    GROUP BY run_id
),
ready AS (
    SELECT heads.run_id
    FROM heads
    WHERE heads.head_seq = 1 OR EXISTS (
        SELECT 1 FROM graphmesh_run_events AS previous
        WHERE previous.run_id = heads.run_id AND previous.seq = heads.head_seq - 1)
    ORDER BY heads.waiting_since, heads.run_id
    LIMIT :max_runs
),
ranked AS (
    SELECT event.*, row_number() OVER (PARTITION BY event.run_id ORDER BY event.seq) AS position
    FROM graphmesh_run_events AS event JOIN ready USING (run_id)
    WHERE event.published_at IS NULL
)
SELECT run_id, seq, time, kind, run_status, task_id, status, progress, message, error,
       error_type, output_ref, details, traceparent
FROM ranked
WHERE position <= :max_per_run
ORDER BY run_id, seq;

-- name: mark_run_event_published
UPDATE graphmesh_run_events
SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE run_id = :run_id AND seq = :seq AND published_at IS NULL;

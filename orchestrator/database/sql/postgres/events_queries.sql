-- Run events: the outbox relay's queries (graphmesh.orchestrator.events.postgres).

-- name: claim_run_events
-- A run is claimed by locking its head, its first unpublished event, with SKIP LOCKED: a
-- second relay skips the whole run, so two relays never publish one run at the same time
-- and per-run order holds. The head must follow a published event (or be seq 1): a gap is
-- an event whose transaction has not committed yet. Later events of a claimed run need no
-- lock: only the head's holder publishes them. Runs waiting longest go first.
WITH heads AS MATERIALIZED (
    SELECT head.run_id
    FROM graphmesh_run_events AS head
    WHERE head.published_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM graphmesh_run_events AS earlier
          WHERE earlier.run_id = head.run_id AND earlier.seq < head.seq
            AND earlier.published_at IS NULL)
      AND (head.seq = 1 OR EXISTS (
          SELECT 1 FROM graphmesh_run_events AS previous
          WHERE previous.run_id = head.run_id AND previous.seq = head.seq - 1))
    ORDER BY head.time, head.run_id
    LIMIT %(max_runs)s
    FOR UPDATE SKIP LOCKED
),
ranked AS (
    SELECT event.*, row_number() OVER (PARTITION BY event.run_id ORDER BY event.seq) AS position
    FROM graphmesh_run_events AS event JOIN heads USING (run_id)
    WHERE event.published_at IS NULL
)
SELECT run_id, seq, time, kind, run_status, task_id, status, progress, message, error,
       error_type, output_ref, details, traceparent
FROM ranked
WHERE position <= %(max_per_run)s
ORDER BY run_id, seq;

-- name: mark_run_events_published
UPDATE graphmesh_run_events AS event
SET published_at = now()
FROM unnest(%(run_ids)s::text[], %(seqs)s::bigint[]) AS published(run_id, seq)
WHERE event.run_id = published.run_id AND event.seq = published.seq
  AND event.published_at IS NULL;

-- name: notify_run_events
-- Run services call this in the transaction that writes events; Postgres delivers it at
-- commit and folds repeats within one transaction into one notification.
SELECT pg_notify('graphmesh_run_events', '');

-- name: listen_run_events
LISTEN graphmesh_run_events;

-- Named queries of the SQLite job queue (graphmesh.orchestrator.queue.sqlite_ops).
-- Every query returning jobs lists the same columns in the same order (see job_from_row).
-- Times are Unix seconds passed in as :now. Fenced updates match (id, attempt,
-- status = 'running'): a stale attempt matches nothing.

-- name: enqueue_job
INSERT INTO graphmesh_jobs (
    queue, task, payload, priority, idempotency_key, retry, run_at, created_at,
    schedule_to_start_s, start_deadline, start_to_close_s, traceparent
)
VALUES (
    :queue, :task, :payload, :priority, :key, :retry, :run_at, :now,
    :s2s, :run_at + :s2s, :stc, :traceparent
)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent;

-- name: enqueue_started_job
-- enqueue_job with the first attempt started for the caller (eager dispatch), leased as
-- a claim would, unless its queue has a due pending job of higher priority: then it is
-- inserted pending, for a claim. A key another job holds inserts nothing and leaves that
-- job as it is. (`WHERE true` tells SQLite the ON CONFLICT is not part of the SELECT.)
INSERT INTO graphmesh_jobs (
    queue, task, payload, priority, idempotency_key, retry, run_at, created_at,
    schedule_to_start_s, start_deadline, start_to_close_s, traceparent,
    status, attempt, session_id, started_at, attempt_deadline, lease_until
)
SELECT :queue, :task, :payload, :priority, :key, :retry, :now, :now,
       :s2s, :now + :s2s, :stc, :traceparent,
       CASE WHEN eager.starts THEN 'running' ELSE 'pending' END,
       CASE WHEN eager.starts THEN 1 ELSE 0 END,
       CASE WHEN eager.starts THEN :session END,
       CASE WHEN eager.starts THEN :now END,
       CASE WHEN eager.starts THEN :now + :stc END,
       CASE WHEN eager.starts
            THEN min(:now + :lease_s, coalesce(:now + :stc, :now + :lease_s)) END
FROM (
    SELECT NOT EXISTS (
        SELECT 1 FROM graphmesh_jobs
        WHERE status = 'pending' AND queue = :queue AND priority > :priority
          AND run_at <= :now AND (start_deadline IS NULL OR start_deadline > :now)
    ) AS starts
) AS eager
WHERE true
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent;

-- name: job_by_key
SELECT id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent
FROM graphmesh_jobs WHERE idempotency_key = :key;

-- name: claim_jobs
-- One statement; writers hold the database lock, so no other claim interleaves.
UPDATE graphmesh_jobs
SET status = 'running',
    attempt = attempt + 1,
    session_id = :session,
    started_at = :now,
    progress = 0,
    attempt_deadline = :now + start_to_close_s,
    lease_until = min(:now + :lease_s, coalesce(:now + start_to_close_s, :now + :lease_s))
WHERE id IN (
    SELECT id FROM graphmesh_jobs
    WHERE status = 'pending' AND queue IN (SELECT value FROM json_each(:queues))
      AND run_at <= :now AND (start_deadline IS NULL OR start_deadline > :now)
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent;

-- name: heartbeat_job
UPDATE graphmesh_jobs
SET lease_until = min(:now + :lease_s, coalesce(attempt_deadline, :now + :lease_s))
WHERE id = :id AND attempt = :attempt AND status = 'running'
RETURNING lease_until, cancel_requested;

-- name: report_progress
UPDATE graphmesh_jobs SET progress = :progress
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: complete_job
UPDATE graphmesh_jobs
SET status = 'succeeded', finished_at = :now, lease_until = NULL, attempt_deadline = NULL,
    progress = 100, result = :result
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: lock_attempt
SELECT retry, json_array_length(history), cancel_requested
FROM graphmesh_jobs
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: expired_attempts
SELECT id, attempt, retry, json_array_length(history), cancel_requested,
       coalesce(attempt_deadline <= :now, 0)
FROM graphmesh_jobs
WHERE status = 'running' AND lease_until < :now
ORDER BY lease_until
LIMIT :limit;

-- name: orphaned_attempts
-- Attempts whose session ended: its row is gone (deleted at its end, or by maintenance
-- once its process was found gone).
SELECT id, attempt, retry, json_array_length(history), cancel_requested
FROM graphmesh_jobs
WHERE status = 'running' AND session_id IS NOT NULL
  AND session_id NOT IN (SELECT id FROM graphmesh_job_sessions);

-- name: settle_attempt
-- Ends an attempt: back to pending (a retry after :delay_s, or a handed-back attempt), or
-- final. A non-NULL :error is appended to the history with the attempt's times.
UPDATE graphmesh_jobs
SET status = :status,
    run_at = CASE WHEN :status = 'pending' THEN :now + :delay_s ELSE run_at END,
    start_deadline = CASE WHEN :status = 'pending' THEN :now + :delay_s + schedule_to_start_s
                          ELSE start_deadline END,
    finished_at = CASE WHEN :status = 'pending' THEN NULL ELSE :now END,
    lease_until = NULL,
    attempt_deadline = NULL,
    history = CASE WHEN :error IS NULL THEN history
                   ELSE json_insert(history, '$[#]', json_object(
                       'attempt', attempt, 'started_at', started_at, 'ended_at', :now,
                       'error', json(:error)))
              END
WHERE id = :id AND attempt = :attempt AND status = 'running'
RETURNING id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent;

-- name: expire_unstarted
UPDATE graphmesh_jobs
SET status = 'dead_letter', finished_at = :now,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt, 'started_at', NULL, 'ended_at', :now, 'error', json(:error)))
WHERE status = 'pending' AND start_deadline <= :now;

-- name: cancel_job
-- SET expressions read the row as it was, so status is tested before it changes.
UPDATE graphmesh_jobs
SET cancel_requested = cancel_requested OR status IN ('pending', 'running'),
    status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'pending' THEN :now ELSE finished_at END
WHERE id = :id
RETURNING id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent;

-- name: get_job
SELECT id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent
FROM graphmesh_jobs WHERE id = :id;

-- name: list_jobs
SELECT id, queue, task, payload, priority, status, idempotency_key, retry, run_at, created_at,
       attempt, started_at, lease_until, finished_at, cancel_requested, progress, result,
       history, schedule_to_start_s, start_to_close_s, traceparent
FROM graphmesh_jobs
WHERE id > :after_id
  AND (:status IS NULL OR status = :status)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id
LIMIT :limit;

-- name: delete_finished
-- The newest job is never deleted: SQLite gives a new row max(id) + 1, so keeping it means
-- ids (and with them attempt tokens) are never reused.
DELETE FROM graphmesh_jobs
WHERE status IN ('succeeded', 'dead_letter', 'cancelled')
  AND finished_at <= :now - :older_than_s
  AND id < (SELECT max(id) FROM graphmesh_jobs);

-- name: open_session
INSERT INTO graphmesh_job_sessions (pid, host, process, started_at)
VALUES (:pid, :host, :process, :now)
RETURNING id;

-- name: end_session
DELETE FROM graphmesh_job_sessions WHERE id = :id;

-- name: job_sessions
SELECT id, pid, host, process FROM graphmesh_job_sessions;

-- name: end_sessions
DELETE FROM graphmesh_job_sessions WHERE id IN (SELECT value FROM json_each(:ids));

-- name: queue_stats
SELECT queue,
       sum(status = 'pending' AND run_at <= :now),
       sum(status = 'pending' AND run_at > :now),
       sum(status = 'pending' AND attempt > 0),
       sum(status = 'running'),
       sum(status = 'dead_letter'),
       coalesce(:now - min(CASE WHEN status = 'pending' AND run_at <= :now THEN run_at END), 0.0)
FROM graphmesh_jobs
WHERE status IN ('pending', 'running', 'dead_letter')
GROUP BY queue
ORDER BY queue;

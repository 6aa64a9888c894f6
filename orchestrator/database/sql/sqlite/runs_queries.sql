-- Named queries of the durable runs (graphmesh.orchestrator.runs.durable_*), with the names
-- and parameters of storage/sql/postgres/runs_queries.sql. Batch writes run once per row
-- (executemany); list parameters arrive as JSON arrays (json_each).

-- name: insert_run
INSERT INTO graphmesh_runs (
    run_id, ordinal, tenant, status, graph, inputs, labels, idempotency_key, open_tasks,
    timeout_s, deadline, traceparent
)
VALUES (
    :run_id, (SELECT coalesce(max(ordinal), 0) + 1 FROM graphmesh_runs), :tenant, :status,
    :graph, :inputs, :labels, :idempotency_key, :open_tasks, :timeout_s,
    strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || :timeout_s || ' seconds'), :traceparent
)
ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING run_id;

-- name: created_run
-- What get_run reads of a run that this transaction inserted, less the JSON the creating
-- process holds (read after its first changes, which stamp the times).
SELECT status, error, last_seq, created_at, updated_at, started_at, ended_at
FROM graphmesh_runs WHERE run_id = :run_id;

-- name: run_by_key
SELECT run_id FROM graphmesh_runs
WHERE tenant = :tenant AND idempotency_key = :idempotency_key;

-- name: insert_tasks
INSERT INTO graphmesh_run_tasks (run_id, task_id, position, type, remaining)
VALUES (:run_id, :task_id, :position, :type, :remaining);

-- name: insert_events
INSERT INTO graphmesh_run_events (
    run_id, seq, kind, run_status, task_id, status, progress, message, error, error_type,
    output_ref, details, traceparent
)
VALUES (
    :run_id, :seq, :kind, :run_status, :task_id, :status, :progress, :message, :error,
    :error_type, :output_ref, :details, :traceparent
);

-- name: get_run
SELECT run_id, tenant, status, graph, inputs, labels, idempotency_key, error, last_seq,
       created_at, updated_at, started_at, ended_at, traceparent
FROM graphmesh_runs WHERE run_id = :run_id AND tenant = :tenant;

-- name: run_task_states
SELECT task_id, type, status, progress, error, attempts, usage
FROM graphmesh_run_tasks WHERE run_id = :run_id ORDER BY position;

-- name: list_runs
-- Newest first, from before the page token's ordinal; every wanted label must match.
SELECT run_id, tenant, status, graph, inputs, labels, idempotency_key, error, last_seq,
       created_at, updated_at, started_at, ended_at, traceparent, ordinal
FROM graphmesh_runs AS run
WHERE tenant = :tenant AND ordinal < :before
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND NOT EXISTS (
      SELECT 1 FROM json_each(:labels) AS wanted
      WHERE NOT EXISTS (
          SELECT 1 FROM json_each(run.labels) AS have
          WHERE have.key = wanted.key AND have.value = wanted.value))
ORDER BY ordinal DESC
LIMIT :limit;

-- name: tenant_usage
-- A tenant's runs not yet ended and their unsettled tasks (quotas), and the run of an
-- idempotency key. Served by the partial index graphmesh_runs_active_idx.
SELECT count(*), coalesce(sum(open_tasks), 0),
       (SELECT run_id FROM graphmesh_runs WHERE tenant = :tenant AND idempotency_key = :idempotency_key)
FROM graphmesh_runs
WHERE tenant = :tenant AND status IN ('PENDING', 'RUNNING', 'CANCELLING');

-- name: task_output
SELECT task.status, task.output
FROM graphmesh_run_tasks AS task JOIN graphmesh_runs AS run USING (run_id)
WHERE run.run_id = :run_id AND run.tenant = :tenant AND task.task_id = :task_id;

-- name: run_exists
SELECT 1 FROM graphmesh_runs WHERE run_id = :run_id AND tenant = :tenant;

-- name: events_after
SELECT run_id, seq, time, kind, run_status, task_id, status, progress, message, error,
       error_type, output_ref, details, traceparent
FROM graphmesh_run_events
WHERE run_id = :run_id AND seq > :seq
ORDER BY seq
LIMIT :limit;

-- name: run_progress
SELECT status, last_seq FROM graphmesh_runs WHERE run_id = :run_id;

-- name: run_plan
SELECT graph, inputs, traceparent, tenant FROM graphmesh_runs WHERE run_id = :run_id;

-- name: lock_runs
-- The caller holds the database write lock (BEGIN IMMEDIATE): no row locks are needed.
SELECT run_id, tenant, status, last_seq, open_tasks, generation, error, cancel_reason,
       timeout_s, coalesce(deadline < strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0), traceparent
FROM graphmesh_runs
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
ORDER BY run_id;

-- name: task_states
-- The i-th task id goes with the i-th run id. CROSS JOIN keeps this order of the loops, so
-- each wanted row is one primary-key lookup (SQLite would otherwise scan the table).
SELECT task.run_id, task.task_id, task.status, task.progress, task.attempts, task.remaining,
       task.dead, task.job_id, task.error
FROM json_each(:task_ids) AS task_key
CROSS JOIN graphmesh_run_tasks AS task
WHERE task.run_id = json_extract(:run_ids, '$[' || task_key.key || ']')
  AND task.task_id = task_key.value;

-- name: open_task_states
SELECT run_id, task_id, status, progress, attempts, remaining, dead, job_id, error
FROM graphmesh_run_tasks
WHERE run_id = :run_id AND status IN ('PENDING', 'PROCESSING');

-- name: all_task_states
SELECT run_id, task_id, status, progress, attempts, remaining, dead, job_id, error
FROM graphmesh_run_tasks WHERE run_id = :run_id;

-- name: task_inputs
SELECT task_id, status, output, error_payload, provenance
FROM graphmesh_run_tasks
WHERE run_id = :run_id AND task_id IN (SELECT value FROM json_each(:task_ids));

-- name: update_tasks
UPDATE graphmesh_run_tasks
SET status = :status, progress = :progress, attempts = :attempts, remaining = :remaining,
    dead = :dead, error = :error,
    -- A job enqueued in this transaction is found by its key.
    job_id = CASE WHEN :job_key IS NULL THEN :job_id
                  ELSE (SELECT id FROM graphmesh_jobs WHERE idempotency_key = :job_key) END,
    error_payload = CASE WHEN :reset THEN NULL ELSE coalesce(:error_payload, error_payload) END,
    output = CASE WHEN :has_output THEN :output WHEN :reset THEN NULL ELSE output END,
    provenance = CASE WHEN :has_output THEN :provenance WHEN :reset THEN NULL
                      ELSE provenance END,
    usage = CASE WHEN :reset THEN NULL ELSE coalesce(:usage, usage) END,
    started_at = CASE WHEN :started THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                      WHEN :reset THEN NULL ELSE started_at END,
    ended_at = CASE WHEN :ended THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                    WHEN :reset THEN NULL ELSE ended_at END
WHERE run_id = :run_id AND task_id = :task_id;

-- name: update_runs
UPDATE graphmesh_runs
SET status = :status, last_seq = :last_seq, open_tasks = :open_tasks, error = :error,
    cancel_reason = :cancel_reason, generation = :generation,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    started_at = CASE WHEN :started
                      THEN coalesce(started_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                      ELSE started_at END,
    ended_at = CASE WHEN :ended THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                    WHEN :reopened THEN NULL ELSE ended_at END,
    deadline = CASE WHEN :reopened
                    THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || timeout_s || ' seconds')
                    ELSE deadline END
WHERE run_id = :run_id;

-- name: overdue_runs
SELECT run_id FROM graphmesh_runs
WHERE deadline IS NOT NULL AND deadline < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
  AND status IN ('PENDING', 'RUNNING')
LIMIT :limit;

-- name: orphaned_tasks
SELECT task.run_id, task.task_id, task.job_id, job.status, job.history
FROM graphmesh_run_tasks AS task JOIN graphmesh_jobs AS job ON job.id = task.job_id
WHERE task.job_id IS NOT NULL AND task.status IN ('PENDING', 'PROCESSING')
  AND job.status IN ('dead_letter', 'cancelled')
LIMIT :limit;

-- name: start_checks
SELECT task.task_id, task.status, task.job_id, run.status
FROM graphmesh_run_tasks AS task JOIN graphmesh_runs AS run USING (run_id)
WHERE task.run_id = :run_id AND task.task_id IN (SELECT value FROM json_each(:task_ids));

-- name: latest_attempts
-- The attempts among (job_ids, attempts), paired by position, that are their job's latest:
-- a task start from an earlier attempt is stale (see the Postgres query).
SELECT job.id, job.attempt
FROM json_each(:job_ids) AS id
JOIN json_each(:attempts) AS attempt ON attempt.key = id.key
JOIN graphmesh_jobs AS job ON job.id = id.value AND job.attempt = attempt.value;

-- Named queries of the durable runs (graphmesh.orchestrator.runs.durable_*). Batch writes
-- take their rows as one JSON array of objects (%(rows)s, jsonb_to_recordset): encoding
-- JSON costs far less than dumping one array per column. Key arrays are passed in binary
-- (%(name)b). JSON values are written and read as text, decoded by the caller. SQLite has the same names and parameters (storage/sql/sqlite/runs_queries.sql).

-- name: insert_run
INSERT INTO graphmesh_runs (
    run_id, tenant, status, graph, inputs, labels, idempotency_key, open_tasks, timeout_s,
    deadline, traceparent
)
VALUES (
    %(run_id)s, %(tenant)s, %(status)s, %(graph)s::jsonb, %(inputs)s::jsonb,
    %(labels)s::jsonb, %(idempotency_key)s, %(open_tasks)s, %(timeout_s)s,
    now() + make_interval(secs => %(timeout_s)s), %(traceparent)s
)
ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING run_id;

-- name: created_run
-- What get_run reads of a run that this transaction inserted, less the JSON the creating
-- process holds (read after its first changes, which stamp the times).
SELECT status, error, last_seq, created_at, updated_at, started_at, ended_at
FROM graphmesh_runs WHERE run_id = %(run_id)s;

-- name: run_by_key
SELECT run_id FROM graphmesh_runs
WHERE tenant = %(tenant)s AND idempotency_key = %(idempotency_key)s;

-- name: insert_tasks
INSERT INTO graphmesh_run_tasks (run_id, task_id, position, type, remaining)
SELECT run_id, task_id, position, type, remaining
FROM jsonb_to_recordset(%(rows)s::jsonb)
    AS new (run_id text, task_id text, position integer, type text, remaining integer);

-- name: insert_events
INSERT INTO graphmesh_run_events (
    run_id, seq, kind, run_status, task_id, status, progress, message, error, error_type,
    output_ref, details, traceparent
)
SELECT run_id, seq, kind, run_status, task_id, status, progress, message, error, error_type,
       output_ref, details::jsonb, traceparent
FROM jsonb_to_recordset(%(rows)s::jsonb) AS new (
    run_id text, seq bigint, kind text, run_status text, task_id text, status text,
    progress float8, message text, error text, error_type text, output_ref text, details text,
    traceparent text
);

-- name: get_run
SELECT run_id, tenant, status, graph::text, inputs::text, labels::text, idempotency_key,
       error, last_seq, created_at, updated_at, started_at, ended_at, traceparent
FROM graphmesh_runs WHERE run_id = %(run_id)s AND tenant = %(tenant)s;

-- name: run_task_states
SELECT task_id, type, status, progress, error, attempts, usage::text
FROM graphmesh_run_tasks WHERE run_id = %(run_id)s ORDER BY position;

-- name: list_runs
-- Newest first, from before the page token's ordinal; labels match by containment.
SELECT run_id, tenant, status, graph::text, inputs::text, labels::text, idempotency_key,
       error, last_seq, created_at, updated_at, started_at, ended_at, traceparent, ordinal
FROM graphmesh_runs
WHERE tenant = %(tenant)s AND ordinal < %(before)s
  AND (%(statuses)b::text[] IS NULL OR status = ANY(%(statuses)b::text[]))
  AND labels @> %(labels)s::jsonb
ORDER BY ordinal DESC
LIMIT %(limit)s;

-- name: tenant_usage
-- A tenant's runs not yet ended and their unsettled tasks (quotas), and the run of an
-- idempotency key. Served by the partial index graphmesh_runs_active_idx.
SELECT count(*), coalesce(sum(open_tasks), 0),
       (SELECT run_id FROM graphmesh_runs WHERE tenant = %(tenant)s AND idempotency_key = %(idempotency_key)s)
FROM graphmesh_runs
WHERE tenant = %(tenant)s AND status IN ('PENDING', 'RUNNING', 'CANCELLING');

-- name: task_output
SELECT task.status, task.output::text
FROM graphmesh_run_tasks AS task JOIN graphmesh_runs AS run USING (run_id)
WHERE run.run_id = %(run_id)s AND run.tenant = %(tenant)s AND task.task_id = %(task_id)s;

-- name: run_exists
SELECT 1 FROM graphmesh_runs WHERE run_id = %(run_id)s AND tenant = %(tenant)s;

-- name: events_after
SELECT run_id, seq, time, kind, run_status, task_id, status, progress, message, error,
       error_type, output_ref, details::text, traceparent
FROM graphmesh_run_events
WHERE run_id = %(run_id)s AND seq > %(seq)s
ORDER BY seq
LIMIT %(limit)s;

-- name: run_progress
SELECT status, last_seq FROM graphmesh_runs WHERE run_id = %(run_id)s;

-- name: run_plan
SELECT graph::text, inputs::text, traceparent, tenant FROM graphmesh_runs WHERE run_id = %(run_id)s;

-- name: lock_runs
-- Every transaction that changes runs starts here, locking them in one order.
SELECT run_id, tenant, status, last_seq, open_tasks, generation, error, cancel_reason,
       timeout_s, coalesce(deadline < now(), false), traceparent
FROM graphmesh_runs
WHERE run_id = ANY(%(run_ids)b::text[])
ORDER BY run_id
FOR UPDATE;

-- name: task_states
-- Row by row through the primary key (LATERAL ... LIMIT 1 keeps the planner from turning
-- the lookups into a hash join over a scan of the whole table; here and below).
SELECT task.run_id, task.task_id, task.status, task.progress, task.attempts, task.remaining,
       task.dead, task.job_id, task.error
FROM unnest(%(run_ids)b::text[], %(task_ids)b::text[]) AS wanted (run_id, task_id)
CROSS JOIN LATERAL (
    SELECT * FROM graphmesh_run_tasks AS row
    WHERE row.run_id = wanted.run_id AND row.task_id = wanted.task_id
    LIMIT 1
) AS task;

-- name: open_task_states
SELECT run_id, task_id, status, progress, attempts, remaining, dead, job_id, error
FROM graphmesh_run_tasks
WHERE run_id = %(run_id)s AND status IN ('PENDING', 'PROCESSING');

-- name: all_task_states
SELECT run_id, task_id, status, progress, attempts, remaining, dead, job_id, error
FROM graphmesh_run_tasks WHERE run_id = %(run_id)s;

-- name: task_inputs
-- What a starting task gathers from its upstream tasks.
SELECT task.task_id, task.status, task.output::text, task.error_payload::text,
       task.provenance::text
FROM unnest(%(task_ids)b::text[]) AS wanted (task_id)
CROSS JOIN LATERAL (
    SELECT * FROM graphmesh_run_tasks AS row
    WHERE row.run_id = %(run_id)s AND row.task_id = wanted.task_id
    LIMIT 1
) AS task;

-- name: update_tasks
-- The rows are found through the primary key first (their ctids), then joined with the
-- new values: a plain join is planned as a scan of the whole table.
WITH new AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS new (
        run_id text, task_id text, status text, progress float8, attempts integer,
        remaining integer, dead boolean, job_id bigint, job_key text, error text,
        error_payload text,
        has_output boolean, output text, provenance text, started boolean, ended boolean,
        reset boolean, usage text
    )
)
UPDATE graphmesh_run_tasks AS task
SET status = new.status, progress = new.progress, attempts = new.attempts,
    remaining = new.remaining, dead = new.dead, error = new.error,
    -- A job enqueued in this transaction is found by its key (it was not read back).
    job_id = CASE WHEN new.job_key IS NULL THEN new.job_id
                  ELSE (SELECT id FROM graphmesh_jobs WHERE idempotency_key = new.job_key) END,
    -- Rows are loaded without their payload: NULL keeps it, a reset clears it.
    error_payload = CASE WHEN new.reset THEN NULL
                         ELSE coalesce(new.error_payload::jsonb, task.error_payload) END,
    output = CASE WHEN new.has_output THEN new.output::jsonb
                  WHEN new.reset THEN NULL ELSE task.output END,
    provenance = CASE WHEN new.has_output THEN new.provenance::jsonb
                      WHEN new.reset THEN NULL ELSE task.provenance END,
    usage = CASE WHEN new.reset THEN NULL ELSE coalesce(new.usage::jsonb, task.usage) END,
    started_at = CASE WHEN new.started THEN now() WHEN new.reset THEN NULL
                      ELSE task.started_at END,
    ended_at = CASE WHEN new.ended THEN now() WHEN new.reset THEN NULL ELSE task.ended_at END
FROM new
WHERE task.ctid = ANY(ARRAY(
        SELECT found.ctid
        FROM new AS wanted
        CROSS JOIN LATERAL (
            SELECT row.ctid FROM graphmesh_run_tasks AS row
            WHERE row.run_id = wanted.run_id AND row.task_id = wanted.task_id
            LIMIT 1
        ) AS found))
  AND task.run_id = new.run_id AND task.task_id = new.task_id;

-- name: update_runs
UPDATE graphmesh_runs AS run
SET status = new.status, last_seq = new.last_seq, open_tasks = new.open_tasks,
    error = new.error, cancel_reason = new.cancel_reason, generation = new.generation,
    updated_at = now(),
    started_at = CASE WHEN new.started THEN coalesce(run.started_at, now())
                      ELSE run.started_at END,
    ended_at = CASE WHEN new.ended THEN now() WHEN new.reopened THEN NULL
                    ELSE run.ended_at END,
    -- A resumed run gets its whole timeout again.
    deadline = CASE WHEN new.reopened THEN now() + make_interval(secs => run.timeout_s)
                    ELSE run.deadline END
FROM jsonb_to_recordset(%(rows)s::jsonb) AS new (
    run_id text, status text, last_seq bigint, open_tasks integer, error text,
    cancel_reason text, generation integer, started boolean, ended boolean, reopened boolean
)
WHERE run.run_id = new.run_id;

-- name: notify_runs
-- Payload "<run_id> <status>": watchers wake for their run, workers stop the tasks of runs
-- that are no longer running, and the outbox relay wakes for any payload. Delivered at
-- commit.
SELECT pg_notify('graphmesh_run_events', payload) FROM unnest(%(payloads)b::text[]) AS payload;

-- name: listen_runs
LISTEN graphmesh_run_events;

-- name: overdue_runs
SELECT run_id FROM graphmesh_runs
WHERE deadline IS NOT NULL AND deadline < now()
  AND status IN ('PENDING', 'RUNNING')
LIMIT %(limit)s;

-- name: orphaned_tasks
-- Open tasks whose job ended without them: dead-lettered (a worker died on its last
-- attempt, or it never started in time) or cancelled. Reads the queue's table.
SELECT task.run_id, task.task_id, task.job_id, job.status, job.history::text
FROM graphmesh_run_tasks AS task JOIN graphmesh_jobs AS job ON job.id = task.job_id
WHERE task.job_id IS NOT NULL AND task.status IN ('PENDING', 'PROCESSING')
  AND job.status IN ('dead_letter', 'cancelled')
LIMIT %(limit)s;

-- name: start_checks
-- Whether jobs may start their tasks (read without locks; the start itself is checked
-- again when it is written).
SELECT task.task_id, task.status, task.job_id, run.status
FROM graphmesh_runs AS run
CROSS JOIN unnest(%(task_ids)b::text[]) AS wanted (task_id)
CROSS JOIN LATERAL (
    SELECT * FROM graphmesh_run_tasks AS row
    WHERE row.run_id = run.run_id AND row.task_id = wanted.task_id
    LIMIT 1
) AS task
WHERE run.run_id = %(run_id)s;

-- name: latest_attempts
-- The attempts among (job_ids, attempts) that are their job's latest: a task start from an
-- earlier attempt (its lease ran out and another attempt took over) is stale. A latest
-- attempt that already ended (a fast failure, before its start was written) is not.
SELECT job.id, job.attempt
FROM graphmesh_jobs AS job
JOIN unnest(%(job_ids)s::bigint[], %(attempts)s::integer[]) AS token (id, attempt)
  ON job.id = token.id AND job.attempt = token.attempt;

-- name: transaction_id
-- Names a run transaction, so that one whose commit was cut off on the way can be looked
-- up afterwards (transaction_status). Sent with its first reads: no round trip of its own.
SELECT pg_current_xact_id()::text;

-- name: transaction_status
-- 'committed', 'aborted' or 'in progress'; NULL once too old to be told.
SELECT pg_xact_status(%(xid)s::xid8);

-- Named queries of the Postgres job queue (graphmesh.orchestrator.queue.postgres).
-- Every query returning jobs lists the same columns in the same order (see job_from_row);
-- JSON comes back as text, which the queue decodes faster than the driver would.
-- Fenced updates match (id, attempt, status = 'running'): a stale attempt matches nothing.

-- name: enqueue_jobs
-- One statement for a batch; a key another job holds is skipped here and read back by
-- jobs_by_keys. The batch is one JSON array of rows (see enqueue_params): encoding one
-- document costs a fraction of dumping ten arrays, which dominated a batch's cost. It is
-- parsed once as jsonb (each ->> on json text would parse its row again). The ORDER BY
-- makes ids follow the order of the batch.
INSERT INTO graphmesh_jobs (
    queue, task, payload, priority, idempotency_key, retry, run_at,
    schedule_to_start_s, start_deadline, start_to_close_s, traceparent
)
SELECT spec.queue, spec.task, spec.payload, spec.priority, spec.key, spec.retry,
       coalesce(spec.run_at, now()), spec.s2s,
       coalesce(spec.run_at, now()) + make_interval(secs => spec.s2s),
       spec.stc, spec.traceparent
FROM jsonb_array_elements(%(specs)s::jsonb) WITH ORDINALITY AS item (row, position)
CROSS JOIN LATERAL (
    SELECT item.row->>0 AS queue, item.row->>1 AS task, item.row->2 AS payload,
           (item.row->>3)::integer AS priority, item.row->>4 AS key,
           (item.row->>5)::jsonb AS retry, (item.row->>6)::timestamptz AS run_at,
           (item.row->>7)::float8 AS s2s, (item.row->>8)::float8 AS stc,
           item.row->>9 AS traceparent
) AS spec
ORDER BY item.position
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, queue, task, payload::text, priority, status, idempotency_key, retry::text, run_at,
          created_at, attempt, started_at, lease_until, finished_at, cancel_requested,
          progress, result::text, history::text, schedule_to_start_s, start_to_close_s, traceparent;

-- name: enqueue_started_jobs
-- enqueue_jobs for a caller that runs the jobs itself at once (eager dispatch): each row
-- is inserted with its first attempt started, leased for %(lease_s)s (capped by its
-- start-to-close timeout) as a claim would. Running rows are not in the runnable set: no
-- worker is woken for them. Priorities still hold: a row whose queue has a due pending
-- job of higher priority (one probe of the runnable index) is inserted pending instead,
-- for a claim, and its insert wakes the workers. A key another job holds is skipped, and
-- that job is left as it is.
INSERT INTO graphmesh_jobs (
    queue, task, payload, priority, idempotency_key, retry, run_at,
    schedule_to_start_s, start_deadline, start_to_close_s, traceparent,
    status, attempt, session_id, started_at, attempt_deadline, lease_until
)
SELECT spec.queue, spec.task, spec.payload, spec.priority, spec.key, spec.retry, now(),
       spec.s2s, now() + make_interval(secs => spec.s2s), spec.stc, spec.traceparent,
       CASE WHEN eager.starts THEN 'running' ELSE 'pending' END,
       CASE WHEN eager.starts THEN 1 ELSE 0 END,
       CASE WHEN eager.starts THEN %(session)s::integer END,
       CASE WHEN eager.starts THEN now() END,
       CASE WHEN eager.starts THEN now() + make_interval(secs => spec.stc) END,
       CASE WHEN eager.starts THEN least(now() + make_interval(secs => %(lease_s)s),
                                   now() + make_interval(secs => spec.stc)) END
FROM jsonb_array_elements(%(specs)s::jsonb) WITH ORDINALITY AS item (row, position)
CROSS JOIN LATERAL (
    SELECT item.row->>0 AS queue, item.row->>1 AS task, item.row->2 AS payload,
           (item.row->>3)::integer AS priority, item.row->>4 AS key,
           (item.row->>5)::jsonb AS retry, (item.row->>7)::float8 AS s2s,
           (item.row->>8)::float8 AS stc, item.row->>9 AS traceparent
) AS spec
CROSS JOIN LATERAL (
    SELECT NOT EXISTS (
        SELECT FROM graphmesh_jobs AS waiting
        WHERE waiting.status = 'pending' AND waiting.queue = spec.queue
          AND waiting.priority > spec.priority AND waiting.run_at <= now()
          AND (waiting.start_deadline IS NULL OR waiting.start_deadline > now())
    ) AS starts
    OFFSET 0  -- a fence: probed once per row, not once per CASE below
) AS eager
ORDER BY item.position
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, queue, task, payload::text, priority, status, idempotency_key, retry::text, run_at,
          created_at, attempt, started_at, lease_until, finished_at, cancel_requested,
          progress, result::text, history::text, schedule_to_start_s, start_to_close_s, traceparent;

-- name: jobs_by_keys
SELECT id, queue, task, payload::text, priority, status, idempotency_key, retry::text, run_at,
       created_at, attempt, started_at, lease_until, finished_at, cancel_requested,
       progress, result::text, history::text, schedule_to_start_s, start_to_close_s, traceparent
FROM graphmesh_jobs WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: claim_jobs
-- THE claim, for one queue: one statement. Walk the runnable index in claim order, lock
-- rows no other claimer holds (SKIP LOCKED: claimers never wait on each other) and start
-- their attempts. `id = ANY(ARRAY(...))` makes the update reach its rows through the
-- primary key, where a join could be planned as a scan of the whole table. The lease
-- never reaches past the start-to-close deadline (least() ignores the NULL of "no
-- timeout"). A claim in a transaction of its own commits without waiting for its WAL
-- flush (commit = 'off': synchronous_commit for this transaction only); a claim in a
-- caller's transaction passes NULL, which leaves the caller's setting as it is. (A claim
-- lost to a database crash leaves its job pending, to run again: at-least-once, as ever.
-- A completion commits durably, and the WAL is flushed in order, so its claim is too.)
UPDATE graphmesh_jobs AS job
SET status = 'running',
    attempt = job.attempt + 1,
    session_id = %(session)s::integer,
    started_at = now(),
    progress = 0,
    attempt_deadline = now() + make_interval(secs => job.start_to_close_s),
    lease_until = least(
        now() + make_interval(secs => %(lease_s)s),
        now() + make_interval(secs => job.start_to_close_s)
    )
WHERE job.id = ANY(ARRAY(
    SELECT id FROM graphmesh_jobs
    WHERE status = 'pending' AND queue = %(queue)s AND run_at <= now()
      AND (start_deadline IS NULL OR start_deadline > now())
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
  AND (SELECT set_config('synchronous_commit',
                         coalesce(%(commit)s, current_setting('synchronous_commit')),
                         true)) IS NOT NULL
RETURNING job.id, job.queue, job.task, job.payload::text, job.priority, job.status,
          job.idempotency_key, job.retry::text, job.run_at, job.created_at, job.attempt,
          job.started_at, job.lease_until, job.finished_at, job.cancel_requested,
          job.progress, job.result::text, job.history::text, job.schedule_to_start_s,
          job.start_to_close_s, job.traceparent;

-- name: claim_jobs_of_queues
-- The claim for several queues, still one statement: per queue as above, then the best
-- `limit` over all of them. (Rows locked but not kept are free again when it commits.)
UPDATE graphmesh_jobs AS job
SET status = 'running',
    attempt = job.attempt + 1,
    session_id = %(session)s::integer,
    started_at = now(),
    progress = 0,
    attempt_deadline = now() + make_interval(secs => job.start_to_close_s),
    lease_until = least(
        now() + make_interval(secs => %(lease_s)s),
        now() + make_interval(secs => job.start_to_close_s)
    )
WHERE job.id = ANY(ARRAY(
    SELECT candidate.id
    FROM unnest(%(queues)s::text[]) AS wanted (queue)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM graphmesh_jobs
        WHERE status = 'pending' AND queue = wanted.queue AND run_at <= now()
          AND (start_deadline IS NULL OR start_deadline > now())
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS candidate
    ORDER BY candidate.priority DESC, candidate.run_at, candidate.id
    LIMIT %(limit)s
))
  AND (SELECT set_config('synchronous_commit',
                         coalesce(%(commit)s, current_setting('synchronous_commit')),
                         true)) IS NOT NULL
RETURNING job.id, job.queue, job.task, job.payload::text, job.priority, job.status,
          job.idempotency_key, job.retry::text, job.run_at, job.created_at, job.attempt,
          job.started_at, job.lease_until, job.finished_at, job.cancel_requested,
          job.progress, job.result::text, job.history::text, job.schedule_to_start_s,
          job.start_to_close_s, job.traceparent;

-- name: heartbeat_jobs
UPDATE graphmesh_jobs AS job
SET lease_until = least(now() + make_interval(secs => %(lease_s)s), job.attempt_deadline)
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS beat (id, attempt)
WHERE job.id = ANY(%(ids)s::bigint[]) AND job.id = beat.id AND job.attempt = beat.attempt AND job.status = 'running'
RETURNING job.id, job.attempt, job.lease_until, job.cancel_requested;

-- name: report_progress
UPDATE graphmesh_jobs SET progress = %(progress)s
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
RETURNING id;

-- name: complete_jobs
-- Batched completions: one statement for many attempts, passed as one JSON array of
-- {id, attempt, result} (cheaper to encode than arrays). The `id = ANY(...)` (here and in
-- the other batch updates) lets the planner reach the rows through the primary key.
WITH done AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(%(done)s::jsonb) AS done (id bigint, attempt integer, result jsonb)
)
UPDATE graphmesh_jobs AS job
SET status = 'succeeded', finished_at = now(), lease_until = NULL, attempt_deadline = NULL,
    progress = 100, result = done.result
FROM done
WHERE job.id = ANY(ARRAY(SELECT id FROM done)) AND job.id = done.id
  AND job.attempt = done.attempt AND job.status = 'running'
RETURNING job.id, job.attempt;

-- name: lock_attempt
-- What deciding a failure needs, with the row locked until the decision is written.
SELECT retry::text, jsonb_array_length(history), cancel_requested
FROM graphmesh_jobs
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
FOR UPDATE;

-- name: lock_expired_attempts
-- Attempts whose worker stopped heartbeating (or ran past start-to-close). SKIP LOCKED:
-- two maintainers never rescue the same attempt.
SELECT id, attempt, retry::text, jsonb_array_length(history), cancel_requested,
       coalesce(attempt_deadline <= now(), false)
FROM graphmesh_jobs
WHERE status = 'running' AND lease_until < now()
ORDER BY lease_until
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: gone_sessions
-- Worker sessions whose advisory lock nobody holds: registered ones, and those holding
-- running attempts (a session that ended without handing its attempts back has no row).
-- The try-lock is transaction-scoped: taken only from a dead session, and released when
-- this statement ends. Right after a server start every session's lock is gone, live
-- workers' too, while they take them again: then no session counts as gone.
SELECT held.id
FROM (
    SELECT id FROM graphmesh_job_sessions
    UNION
    SELECT session_id FROM graphmesh_jobs WHERE status = 'running' AND session_id IS NOT NULL
) AS held (id)
WHERE pg_postmaster_start_time() < now() - make_interval(secs => %(settle_s)s)
  AND pg_try_advisory_xact_lock(%(namespace)s, held.id);

-- name: lock_orphaned_attempts
-- The running attempts of sessions found gone, each session's lock taken (and its row
-- deleted) for this transaction, so none comes back while its attempts are rescued.
WITH gone AS MATERIALIZED (
    SELECT id FROM unnest(%(ids)s::integer[]) AS gone (id)
    WHERE pg_try_advisory_xact_lock(%(namespace)s, id)
), ended AS (
    DELETE FROM graphmesh_job_sessions WHERE id IN (SELECT id FROM gone)
)
SELECT id, attempt, retry::text, jsonb_array_length(history), cancel_requested
FROM graphmesh_jobs
WHERE status = 'running' AND session_id IN (SELECT id FROM gone)
FOR UPDATE SKIP LOCKED;

-- name: settle_attempts
-- Ends attempts: back to pending (a retry after delay_s, or a handed-back attempt), or
-- final. A non-NULL error is appended to the history with the attempt's times.
UPDATE graphmesh_jobs AS job
SET status = settled.status,
    run_at = CASE WHEN settled.status = 'pending'
                  THEN now() + make_interval(secs => settled.delay_s) ELSE job.run_at END,
    start_deadline = CASE WHEN settled.status = 'pending'
                          THEN now() + make_interval(secs => settled.delay_s)
                               + make_interval(secs => job.schedule_to_start_s)
                          ELSE job.start_deadline END,
    finished_at = CASE WHEN settled.status = 'pending' THEN NULL ELSE now() END,
    lease_until = NULL,
    attempt_deadline = NULL,
    history = CASE WHEN settled.error IS NULL THEN job.history
                   ELSE job.history || jsonb_build_array(jsonb_build_object(
                       'attempt', job.attempt, 'started_at', job.started_at,
                       'ended_at', now(), 'error', settled.error))
              END
FROM unnest(
    %(ids)s::bigint[], %(attempts)s::integer[], %(statuses)s::text[], %(delays)s::float8[],
    %(errors)s::jsonb[]
) AS settled (id, attempt, status, delay_s, error)
WHERE job.id = ANY(%(ids)s::bigint[]) AND job.id = settled.id AND job.attempt = settled.attempt AND job.status = 'running'
RETURNING job.id, job.queue, job.task, job.payload::text, job.priority, job.status,
          job.idempotency_key, job.retry::text, job.run_at, job.created_at, job.attempt,
          job.started_at, job.lease_until, job.finished_at, job.cancel_requested,
          job.progress, job.result::text, job.history::text, job.schedule_to_start_s,
          job.start_to_close_s, job.traceparent;

-- name: expire_unstarted
UPDATE graphmesh_jobs
SET status = 'dead_letter', finished_at = now(),
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'started_at', NULL, 'ended_at', now(), 'error', %(error)s::jsonb))
WHERE status = 'pending' AND start_deadline <= now();

-- name: notify_queues
SELECT pg_notify('graphmesh_jobs', queue) FROM unnest(%(queues)s::text[]) AS queue;

-- name: listen_jobs
LISTEN graphmesh_jobs;

-- name: cancel_job
-- SET expressions read the row as it was, so status is tested before it changes.
UPDATE graphmesh_jobs
SET cancel_requested = cancel_requested OR status IN ('pending', 'running'),
    status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'pending' THEN now() ELSE finished_at END
WHERE id = %(id)s
RETURNING id, queue, task, payload::text, priority, status, idempotency_key, retry::text, run_at,
          created_at, attempt, started_at, lease_until, finished_at, cancel_requested,
          progress, result::text, history::text, schedule_to_start_s, start_to_close_s, traceparent;

-- name: get_job
SELECT id, queue, task, payload::text, priority, status, idempotency_key, retry::text, run_at,
       created_at, attempt, started_at, lease_until, finished_at, cancel_requested,
       progress, result::text, history::text, schedule_to_start_s, start_to_close_s, traceparent
FROM graphmesh_jobs WHERE id = %(id)s;

-- name: list_jobs
SELECT id, queue, task, payload::text, priority, status, idempotency_key, retry::text, run_at,
       created_at, attempt, started_at, lease_until, finished_at, cancel_requested,
       progress, result::text, history::text, schedule_to_start_s, start_to_close_s, traceparent
FROM graphmesh_jobs
WHERE id > %(after_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY id
LIMIT %(limit)s;

-- name: delete_finished
DELETE FROM graphmesh_jobs
WHERE status IN ('succeeded', 'dead_letter', 'cancelled')
  AND finished_at <= now() - make_interval(secs => %(older_than_s)s);

-- name: open_session
-- A worker session of this process, its lock held by this connection until it ends (no
-- idle-session timeout may end it: the connection waits idle by design).
WITH session AS (
    INSERT INTO graphmesh_job_sessions (pid, host, process)
    VALUES (%(pid)s, %(host)s, %(process)s)
    RETURNING id
)
SELECT id, pg_advisory_lock(%(namespace)s, id),
       CASE WHEN current_setting('server_version_num')::integer >= 140000
            THEN set_config('idle_session_timeout', '0', false) END
FROM session;

-- name: resume_session
-- The session's lock again, on a new connection after the old one broke; its row again
-- if maintenance took the session for dead meanwhile.
INSERT INTO graphmesh_job_sessions (id, pid, host, process)
OVERRIDING SYSTEM VALUE
SELECT %(id)s, %(pid)s, %(host)s, %(process)s
FROM (SELECT pg_advisory_lock(%(namespace)s, %(id)s),
             CASE WHEN current_setting('server_version_num')::integer >= 140000
                  THEN set_config('idle_session_timeout', '0', false) END) AS locked
ON CONFLICT (id) DO NOTHING;

-- name: end_session
-- (Closing the session's connection then releases its lock.)
DELETE FROM graphmesh_job_sessions WHERE id = %(id)s;

-- name: queue_stats
-- Sampled for metrics: the runnable and running sets come from their partial indexes.
SELECT queue,
       count(*) FILTER (WHERE status = 'pending' AND run_at <= now()),
       count(*) FILTER (WHERE status = 'pending' AND run_at > now()),
       count(*) FILTER (WHERE status = 'pending' AND attempt > 0),
       count(*) FILTER (WHERE status = 'running'),
       count(*) FILTER (WHERE status = 'dead_letter'),
       COALESCE(EXTRACT(EPOCH FROM now() - min(run_at)
                FILTER (WHERE status = 'pending' AND run_at <= now())), 0)::float8
FROM graphmesh_jobs
WHERE status IN ('pending', 'running', 'dead_letter')
GROUP BY queue
ORDER BY queue;

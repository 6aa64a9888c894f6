-- The job queue (graphmesh.orchestrator.queue.postgres). One row per job. The running
-- attempt's number is the fencing token; its lease (lease_until) is extended by heartbeats
-- and never reaches past attempt_deadline (the start-to-close timeout). Failed attempts
-- accumulate in history, so a dead-lettered job keeps every error.

CREATE TABLE graphmesh_jobs (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue               text        NOT NULL,
    task                text        NOT NULL,
    payload             jsonb       NOT NULL,
    priority            integer     NOT NULL DEFAULT 0,
    status              text        NOT NULL DEFAULT 'pending' CHECK (
        status IN ('pending', 'running', 'succeeded', 'dead_letter', 'cancelled')
    ),
    idempotency_key     text,
    retry               jsonb       NOT NULL,
    run_at              timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    attempt             integer     NOT NULL DEFAULT 0,
    started_at          timestamptz,
    lease_until         timestamptz,
    attempt_deadline    timestamptz,
    finished_at         timestamptz,
    cancel_requested    boolean     NOT NULL DEFAULT false,
    progress            real        NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    result              jsonb,
    history             jsonb       NOT NULL DEFAULT '[]',
    schedule_to_start_s double precision,
    start_deadline      timestamptz,
    start_to_close_s    double precision,
    traceparent         text
);

-- Idempotency: a key names one job until TTL cleanup deletes it.
CREATE UNIQUE INDEX graphmesh_jobs_key_idx ON graphmesh_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The runnable set, in claim order. Partial, so finished jobs cost the claim nothing.
CREATE INDEX graphmesh_jobs_runnable_idx ON graphmesh_jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending';

-- Leases to rescue, and jobs that may miss their schedule-to-start deadline.
CREATE INDEX graphmesh_jobs_lease_idx ON graphmesh_jobs (lease_until)
    WHERE status = 'running';
CREATE INDEX graphmesh_jobs_start_deadline_idx ON graphmesh_jobs (start_deadline)
    WHERE status = 'pending' AND start_deadline IS NOT NULL;

-- TTL cleanup of finished jobs.
CREATE INDEX graphmesh_jobs_finished_idx ON graphmesh_jobs (finished_at)
    WHERE status IN ('succeeded', 'dead_letter', 'cancelled');

-- Wake idle workers: one notification per queue per inserting statement (a transition
-- table, so a batch enqueue does not send one per row), delivered at commit.
CREATE FUNCTION graphmesh_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('graphmesh_jobs', queue) FROM (SELECT DISTINCT queue FROM inserted) AS q;
    RETURN NULL;
END
$$;

CREATE TRIGGER graphmesh_jobs_notify_insert
    AFTER INSERT ON graphmesh_jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION graphmesh_jobs_notify();

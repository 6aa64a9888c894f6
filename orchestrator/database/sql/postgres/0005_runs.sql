-- Durable runs (graphmesh.orchestrator.runs.durable_postgres): one row per run, one per task
-- of a run. Every writer of a run locks its row first (it also hands out the event seqs,
-- last_seq), so the run row is the one mutex of a run's state and its events commit in seq
-- order. The graph is kept as submitted (validated); outputs live with their task.

CREATE TABLE graphmesh_runs (
    run_id          text             PRIMARY KEY,
    ordinal         bigint           GENERATED ALWAYS AS IDENTITY,
    tenant          text             NOT NULL,
    status          text             NOT NULL CHECK (status IN (
        'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLING', 'CANCELLED'
    )),
    graph           jsonb            NOT NULL,
    inputs          jsonb            NOT NULL,
    labels          jsonb            NOT NULL DEFAULT '{}',
    idempotency_key text,
    error           text,
    cancel_reason   text             NOT NULL DEFAULT '',
    last_seq        bigint           NOT NULL DEFAULT 0,
    -- Tasks not yet settled (COMPLETED, FAILED or SKIPPED): the run ends when it reaches 0.
    open_tasks      integer          NOT NULL,
    -- Bumped by every resume; part of the job keys, so a resumed task gets a new job.
    generation      integer          NOT NULL DEFAULT 0,
    timeout_s       double precision,
    deadline        timestamptz,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    started_at      timestamptz,
    ended_at        timestamptz
);

-- Idempotent CreateRun: a key names one run per tenant.
CREATE UNIQUE INDEX graphmesh_runs_key_idx ON graphmesh_runs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- ListRuns: a tenant's runs, newest first.
CREATE INDEX graphmesh_runs_tenant_idx ON graphmesh_runs (tenant, ordinal);

-- The sweep: runs past their deadline.
CREATE INDEX graphmesh_runs_deadline_idx ON graphmesh_runs (deadline)
    WHERE deadline IS NOT NULL AND status IN ('PENDING', 'RUNNING');

CREATE TABLE graphmesh_run_tasks (
    run_id          text             NOT NULL REFERENCES graphmesh_runs (run_id) ON DELETE CASCADE,
    task_id         text             NOT NULL,
    position        integer          NOT NULL,
    type            text             NOT NULL,
    status          text             NOT NULL DEFAULT 'PENDING' CHECK (status IN (
        'PENDING', 'PROCESSING', 'COMPLETED', 'ABORTING', 'FAILED', 'SKIPPED'
    )),
    progress        double precision NOT NULL DEFAULT 0,
    attempts        integer          NOT NULL DEFAULT 0,
    -- Incoming dataflows whose source has not settled: the task is ready at 0.
    remaining       integer          NOT NULL,
    -- Reached only through a branch that will not run (an error branch of a task that
    -- succeeded, or a skipped task): skipped instead of run when it becomes ready.
    dead            boolean          NOT NULL DEFAULT false,
    -- The job of the current attempt: a worker whose job is not this one is stale.
    job_id          bigint,
    error           text,
    error_payload   jsonb,
    output          jsonb,
    provenance      jsonb,
    started_at      timestamptz,
    ended_at        timestamptz,
    PRIMARY KEY (run_id, task_id)
);

-- The sweep: open tasks whose job ended without them (dead-lettered, cancelled).
CREATE INDEX graphmesh_run_tasks_job_idx ON graphmesh_run_tasks (job_id)
    WHERE job_id IS NOT NULL AND status IN ('PENDING', 'PROCESSING');

-- Durable runs (graphmesh.orchestrator.runs.durable_sqlite); the columns of the Postgres
-- tables. JSON is text; times are ISO-8601 UTC text (so comparisons are plain text
-- comparisons); writes serialise on the database lock, so the run row needs no row lock.

CREATE TABLE graphmesh_runs (
    run_id          TEXT    NOT NULL PRIMARY KEY,
    ordinal         INTEGER NOT NULL,
    tenant          TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN (
        'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLING', 'CANCELLED'
    )),
    graph           TEXT    NOT NULL,
    inputs          TEXT    NOT NULL,
    labels          TEXT    NOT NULL DEFAULT '{}',
    idempotency_key TEXT,
    error           TEXT,
    cancel_reason   TEXT    NOT NULL DEFAULT '',
    last_seq        INTEGER NOT NULL DEFAULT 0,
    open_tasks      INTEGER NOT NULL,
    generation      INTEGER NOT NULL DEFAULT 0,
    timeout_s       REAL,
    deadline        TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at      TEXT,
    ended_at        TEXT
) WITHOUT ROWID;

CREATE UNIQUE INDEX graphmesh_runs_key_idx ON graphmesh_runs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX graphmesh_runs_tenant_idx ON graphmesh_runs (tenant, ordinal);

CREATE INDEX graphmesh_runs_deadline_idx ON graphmesh_runs (deadline)
    WHERE deadline IS NOT NULL AND status IN ('PENDING', 'RUNNING');

CREATE TABLE graphmesh_run_tasks (
    run_id          TEXT    NOT NULL REFERENCES graphmesh_runs (run_id) ON DELETE CASCADE,
    task_id         TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'PENDING' CHECK (status IN (
        'PENDING', 'PROCESSING', 'COMPLETED', 'ABORTING', 'FAILED', 'SKIPPED'
    )),
    progress        REAL    NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    remaining       INTEGER NOT NULL,
    dead            INTEGER NOT NULL DEFAULT 0,
    job_id          INTEGER,
    error           TEXT,
    error_payload   TEXT,
    output          TEXT,
    provenance      TEXT,
    started_at      TEXT,
    ended_at        TEXT,
    PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;

CREATE INDEX graphmesh_run_tasks_job_idx ON graphmesh_run_tasks (job_id)
    WHERE job_id IS NOT NULL AND status IN ('PENDING', 'PROCESSING');

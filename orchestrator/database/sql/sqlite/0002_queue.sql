-- The job queue (graphmesh.orchestrator.queue.sqlite); the columns of the Postgres table.
-- Times are Unix seconds (REAL) from the queue's clock, so claim and lease arithmetic
-- stay plain comparisons; JSON is text. Writes serialise on the database lock, so the
-- claim needs no row locks.

CREATE TABLE graphmesh_jobs (
    id                  INTEGER NOT NULL PRIMARY KEY,
    queue               TEXT    NOT NULL,
    task                TEXT    NOT NULL,
    payload             TEXT    NOT NULL,
    priority            INTEGER NOT NULL DEFAULT 0,
    status              TEXT    NOT NULL DEFAULT 'pending' CHECK (
        status IN ('pending', 'running', 'succeeded', 'dead_letter', 'cancelled')
    ),
    idempotency_key     TEXT,
    retry               TEXT    NOT NULL,
    run_at              REAL    NOT NULL,
    created_at          REAL    NOT NULL,
    attempt             INTEGER NOT NULL DEFAULT 0,
    started_at          REAL,
    lease_until         REAL,
    attempt_deadline    REAL,
    finished_at         REAL,
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    progress            REAL    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    result              TEXT,
    history             TEXT    NOT NULL DEFAULT '[]',
    schedule_to_start_s REAL,
    start_deadline      REAL,
    start_to_close_s    REAL,
    traceparent         TEXT
);

CREATE UNIQUE INDEX graphmesh_jobs_key_idx ON graphmesh_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX graphmesh_jobs_runnable_idx ON graphmesh_jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending';

CREATE INDEX graphmesh_jobs_lease_idx ON graphmesh_jobs (lease_until)
    WHERE status = 'running';

CREATE INDEX graphmesh_jobs_start_deadline_idx ON graphmesh_jobs (start_deadline)
    WHERE status = 'pending' AND start_deadline IS NOT NULL;

CREATE INDEX graphmesh_jobs_finished_idx ON graphmesh_jobs (finished_at)
    WHERE status IN ('succeeded', 'dead_letter', 'cancelled');

-- Worker sessions (graphmesh.orchestrator.queue.postgres_session): a worker claims under a
-- session, and each attempt records it (session_id). The session's process holds the
-- session-level advisory lock (SESSION_LOCKS, id) on a connection of its own; when the
-- process dies its connection ends, Postgres releases the lock at once, and maintenance
-- rescues the session's attempts without waiting for their leases. The rows say which
-- process each session is (for operators); a session's lock, not its row, says it lives.
CREATE TABLE graphmesh_job_sessions (
    id         integer     GENERATED ALWAYS AS IDENTITY (CYCLE) PRIMARY KEY,
    pid        integer     NOT NULL,
    host       text        NOT NULL,
    process    text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE graphmesh_jobs ADD COLUMN session_id integer;

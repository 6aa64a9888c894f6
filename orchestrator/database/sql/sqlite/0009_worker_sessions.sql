-- Worker sessions (graphmesh.orchestrator.queue.sqlite): a worker claims under a session,
-- and each attempt records it (session_id). A session is a row naming its process (pid,
-- host, and a random token of the process, so a pid reused by a later process is not
-- taken for the old one); maintenance rescues the attempts of sessions whose process is
-- gone, and of sessions that ended, without waiting for their leases. SQLite has no
-- sessions of its own to watch, but its processes share one host.
CREATE TABLE graphmesh_job_sessions (
    id         INTEGER NOT NULL PRIMARY KEY,
    pid        INTEGER NOT NULL,
    host       TEXT    NOT NULL,
    process    TEXT    NOT NULL,
    started_at REAL    NOT NULL
);

ALTER TABLE graphmesh_jobs ADD COLUMN session_id INTEGER;

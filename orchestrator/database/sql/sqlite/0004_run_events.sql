-- The run event log, which is also the outbox: a state change and its event are written in
-- one transaction; the relay publishes unpublished rows in seq order per run and stamps
-- published_at. WatchRun reads the same rows. JSON as text; times as ISO-8601 UTC text.

CREATE TABLE graphmesh_run_events (
    run_id        TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    time          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    kind          TEXT    NOT NULL,
    run_status    TEXT    NOT NULL,
    task_id       TEXT    NOT NULL DEFAULT '',
    status        TEXT,
    progress      REAL    NOT NULL DEFAULT 0,
    message       TEXT    NOT NULL DEFAULT '',
    error         TEXT,
    error_type    TEXT,
    output_ref    TEXT    NOT NULL DEFAULT '',
    details       TEXT,
    traceparent   TEXT,
    published_at  TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE INDEX graphmesh_run_events_unpublished
    ON graphmesh_run_events (run_id, seq) WHERE published_at IS NULL;

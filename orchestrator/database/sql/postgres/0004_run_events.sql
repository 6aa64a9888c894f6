-- The run event log, which is also the outbox: a state change and its event are written in
-- one transaction; the relay publishes unpublished rows to NATS JetStream in seq order per
-- run and stamps published_at. WatchRun reads the same rows.

CREATE TABLE graphmesh_run_events (
    run_id        text             NOT NULL,
    seq           bigint           NOT NULL,
    time          timestamptz      NOT NULL DEFAULT now(),
    kind          text             NOT NULL,
    run_status    text             NOT NULL,
    task_id       text             NOT NULL DEFAULT '',
    status        text,
    progress      double precision NOT NULL DEFAULT 0,
    message       text             NOT NULL DEFAULT '',
    error         text,
    error_type    text,
    output_ref    text             NOT NULL DEFAULT '',
    details       jsonb,
    traceparent   text,
    published_at  timestamptz,
    PRIMARY KEY (run_id, seq)
);

-- The relay's work list stays small: only rows not yet published are indexed.
CREATE INDEX graphmesh_run_events_unpublished
    ON graphmesh_run_events (run_id, seq) WHERE published_at IS NULL;

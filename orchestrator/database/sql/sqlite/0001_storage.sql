-- Task outputs (cache), saved graphs, models and the task types each model serves.
-- JSON is stored as text; times as ISO-8601 UTC text.

CREATE TABLE graphmesh_task_outputs (
    task_type  TEXT NOT NULL,
    cache_key  TEXT NOT NULL,
    output     TEXT NOT NULL,
    saved_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (task_type, cache_key)
) WITHOUT ROWID;

CREATE TABLE graphmesh_task_graphs (
    graph_id   TEXT NOT NULL PRIMARY KEY,
    graph      TEXT NOT NULL,
    saved_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

CREATE TABLE graphmesh_models (
    name       TEXT NOT NULL PRIMARY KEY,
    provider   TEXT NOT NULL,
    info       TEXT NOT NULL,
    saved_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

-- Deleting a model deletes its links; linking an unknown model is refused
-- (connections turn on PRAGMA foreign_keys).
CREATE TABLE graphmesh_task_models (
    task_type  TEXT NOT NULL,
    model      TEXT NOT NULL REFERENCES graphmesh_models (name) ON DELETE CASCADE,
    PRIMARY KEY (task_type, model)
) WITHOUT ROWID;

CREATE INDEX graphmesh_task_models_model_idx ON graphmesh_task_models (model);

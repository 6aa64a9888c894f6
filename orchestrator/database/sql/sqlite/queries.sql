-- Named queries of the storage repositories and the migrator (sqlite3 named placeholders).
-- Text compares with BINARY collation (code point order), so ids list in the same order
-- as in every other backend.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS graphmesh_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- name: applied_migrations
SELECT version FROM graphmesh_migrations ORDER BY version;

-- name: record_migration
INSERT INTO graphmesh_migrations (version, name) VALUES (:version, :name);

-- name: get_output
SELECT output FROM graphmesh_task_outputs
WHERE task_type = :task_type AND cache_key = :cache_key;

-- name: save_output
INSERT INTO graphmesh_task_outputs (task_type, cache_key, output)
VALUES (:task_type, :cache_key, :output)
ON CONFLICT (task_type, cache_key)
DO UPDATE SET output = EXCLUDED.output, saved_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- name: clear_outputs
DELETE FROM graphmesh_task_outputs;

-- name: clear_outputs_of_type
DELETE FROM graphmesh_task_outputs WHERE task_type = :task_type;

-- name: count_outputs
SELECT count(*) FROM graphmesh_task_outputs;

-- name: save_graph
INSERT INTO graphmesh_task_graphs (graph_id, graph)
VALUES (:graph_id, :graph)
ON CONFLICT (graph_id)
DO UPDATE SET graph = EXCLUDED.graph, saved_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- name: get_graph
SELECT graph FROM graphmesh_task_graphs WHERE graph_id = :graph_id;

-- name: list_graphs
SELECT graph_id FROM graphmesh_task_graphs ORDER BY graph_id;

-- name: delete_graph
DELETE FROM graphmesh_task_graphs WHERE graph_id = :graph_id;

-- name: save_model
-- An upsert, not delete + insert: replacing a model's info keeps its task links.
INSERT INTO graphmesh_models (name, provider, info)
VALUES (:name, :provider, :info)
ON CONFLICT (name)
DO UPDATE SET
    provider = EXCLUDED.provider,
    info = EXCLUDED.info,
    saved_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- name: get_model
SELECT info FROM graphmesh_models WHERE name = :name;

-- name: list_models
SELECT info FROM graphmesh_models ORDER BY name;

-- name: delete_model
DELETE FROM graphmesh_models WHERE name = :name;

-- name: link_task
INSERT INTO graphmesh_task_models (task_type, model)
VALUES (:task_type, :model)
ON CONFLICT DO NOTHING;

-- name: models_for_task
SELECT m.info
FROM graphmesh_task_models AS l
JOIN graphmesh_models AS m ON m.name = l.model
WHERE l.task_type = :task_type
ORDER BY m.name;

-- name: tasks_for_model
SELECT task_type FROM graphmesh_task_models
WHERE model = :model
ORDER BY task_type;

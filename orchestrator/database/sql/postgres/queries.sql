-- Named queries of the storage repositories and the migrator (psycopg placeholders).
-- Ids sort with COLLATE "C" (code point order) so every backend lists in the same order.

-- name: lock_migrations
-- Held until the migrating transaction ends: concurrent migrators run one after the other.
SELECT pg_advisory_xact_lock(hashtextextended('graphmesh_migrations', 0));

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS graphmesh_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM graphmesh_migrations ORDER BY version;

-- name: record_migration
INSERT INTO graphmesh_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: get_output
SELECT output FROM graphmesh_task_outputs
WHERE task_type = %(task_type)s AND cache_key = %(cache_key)s;

-- name: save_output
INSERT INTO graphmesh_task_outputs (task_type, cache_key, output)
VALUES (%(task_type)s, %(cache_key)s, %(output)s::jsonb)
ON CONFLICT (task_type, cache_key)
DO UPDATE SET output = EXCLUDED.output, saved_at = now();

-- name: clear_outputs
DELETE FROM graphmesh_task_outputs;

-- name: clear_outputs_of_type
DELETE FROM graphmesh_task_outputs WHERE task_type = %(task_type)s;

-- name: count_outputs
SELECT count(*) FROM graphmesh_task_outputs;

-- name: save_graph
INSERT INTO graphmesh_task_graphs (graph_id, graph)
VALUES (%(graph_id)s, %(graph)s::jsonb)
ON CONFLICT (graph_id) DO UPDATE SET graph = EXCLUDED.graph, saved_at = now();

-- name: get_graph
SELECT graph FROM graphmesh_task_graphs WHERE graph_id = %(graph_id)s;

-- name: list_graphs
SELECT graph_id FROM graphmesh_task_graphs ORDER BY graph_id COLLATE "C";

-- name: delete_graph
DELETE FROM graphmesh_task_graphs WHERE graph_id = %(graph_id)s;

-- name: save_model
-- An upsert, not delete + insert: replacing a model's info keeps its task links.
INSERT INTO graphmesh_models (name, provider, info)
VALUES (%(name)s, %(provider)s, %(info)s::jsonb)
ON CONFLICT (name)
DO UPDATE SET provider = EXCLUDED.provider, info = EXCLUDED.info, saved_at = now();

-- name: get_model
SELECT info FROM graphmesh_models WHERE name = %(name)s;

-- name: list_models
SELECT info FROM graphmesh_models ORDER BY name COLLATE "C";

-- name: delete_model
DELETE FROM graphmesh_models WHERE name = %(name)s;

-- name: link_task
INSERT INTO graphmesh_task_models (task_type, model)
VALUES (%(task_type)s, %(model)s)
ON CONFLICT DO NOTHING;

-- name: models_for_task
SELECT m.info
FROM graphmesh_task_models AS l
JOIN graphmesh_models AS m ON m.name = l.model
WHERE l.task_type = %(task_type)s
ORDER BY m.name COLLATE "C";

-- name: tasks_for_model
SELECT task_type FROM graphmesh_task_models
WHERE model = %(model)s
ORDER BY task_type COLLATE "C";

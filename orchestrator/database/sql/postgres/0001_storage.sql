-- Task outputs (cache), saved graphs, models and the task types each model serves.

CREATE TABLE graphmesh_task_outputs (
    task_type  text        NOT NULL,
    cache_key  text        NOT NULL,
    output     jsonb       NOT NULL,
    saved_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_type, cache_key)
);

CREATE TABLE graphmesh_task_graphs (
    graph_id   text        PRIMARY KEY,
    graph      jsonb       NOT NULL,
    saved_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE graphmesh_models (
    name       text        PRIMARY KEY,
    provider   text        NOT NULL,
    info       jsonb       NOT NULL,
    saved_at   timestamptz NOT NULL DEFAULT now()
);

-- Deleting a model deletes its links; linking an unknown model is refused.
CREATE TABLE graphmesh_task_models (
    task_type  text        NOT NULL,
    model      text        NOT NULL REFERENCES graphmesh_models (name) ON DELETE CASCADE,
    PRIMARY KEY (task_type, model)
);

CREATE INDEX graphmesh_task_models_model_idx ON graphmesh_task_models (model);

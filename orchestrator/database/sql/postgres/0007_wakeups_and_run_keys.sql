-- Wake idle workers only for inserted jobs they can claim: a job inserted with its first
-- attempt started (eager dispatch, enqueue_started_jobs) already has its worker. (On
-- SQLite this migration adds an index its foreign key checks need; Postgres needs none.)
CREATE OR REPLACE FUNCTION graphmesh_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('graphmesh_jobs', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE status = 'pending') AS q;
    RETURN NULL;
END
$$;

-- Foreign key checks of run tasks and events look their run up by run_id. graphmesh_runs
-- is a WITHOUT ROWID table holding the run's graph inline, and a lookup through its own key
-- reads the whole row: inserting the 10,000 task rows of a big graph took seconds. A
-- separate index on the key answers those checks (2,000 rows against a 2.7 MB graph:
-- 315 ms -> 7 ms). Postgres needs no such index. (On Postgres this migration makes the
-- insert trigger wake workers only for pending jobs; SQLite wakes its workers in process.)
CREATE UNIQUE INDEX graphmesh_runs_id_idx ON graphmesh_runs (run_id);

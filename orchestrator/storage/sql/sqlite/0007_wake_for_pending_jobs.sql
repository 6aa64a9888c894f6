-- Nothing to change here: on Postgres this migration makes the insert trigger wake workers
-- only for pending jobs; SQLite wakes its workers in process (SqliteJobQueue.notify).
-- Both dialects keep the same migration versions.
SELECT 1;

-- Limiters (graphmesh.limits): per (limiter, key), the live permits and a retry-after
-- block. Rate and concurrency limits share these tables; see graphmesh/limits/store.py.
-- Times are POSIX seconds (REAL), not ISO text: the limiter does arithmetic on them.
-- Until the limiters had a history of their own, the engine's migration 0003 created these
-- very tables; every statement here leaves a database that has them as it is.

CREATE TABLE IF NOT EXISTS graphmesh_limiter_keys (
    limiter        TEXT NOT NULL,
    key            TEXT NOT NULL,
    -- Nothing is granted before this time (a provider's retry-after); NULL: no block.
    blocked_until  REAL,
    PRIMARY KEY (limiter, key)
) WITHOUT ROWID;

-- A permit is live until expires_at: a rate grant for one window, a concurrency holder
-- for its lease. Expired rows are deleted by the next take on the same key.
CREATE TABLE IF NOT EXISTS graphmesh_limiter_permits (
    token       TEXT NOT NULL PRIMARY KEY,
    limiter     TEXT NOT NULL,
    key         TEXT NOT NULL,
    granted_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS graphmesh_limiter_permits_key_idx
    ON graphmesh_limiter_permits (limiter, key, expires_at);

-- Named queries of the SQLite limit store (graphmesh/limits/sqlite.py) and of its
-- migrations. The store runs them inside BEGIN IMMEDIATE where it needs atomicity; times
-- are POSIX seconds.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS graphmesh_limiter_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- name: applied_migrations
SELECT version FROM graphmesh_limiter_migrations ORDER BY version;

-- name: record_migration
INSERT INTO graphmesh_limiter_migrations (version, name) VALUES (:version, :name);

-- name: limiter_blocked_until
SELECT blocked_until FROM graphmesh_limiter_keys WHERE limiter = :limiter AND key = :key;

-- name: limiter_drop_expired
DELETE FROM graphmesh_limiter_permits
WHERE limiter = :limiter AND key = :key AND expires_at <= :now;

-- name: limiter_full_until
-- Latest expiry first, the first live permit whose running cost leaves no room for :cost:
-- once it expires, with every permit after it, the rest leave room.
SELECT expires_at FROM (
    SELECT expires_at, sum(cost) OVER (ORDER BY expires_at DESC, token) AS heavier
    FROM graphmesh_limiter_permits
    WHERE limiter = :limiter AND key = :key AND expires_at > :now
)
WHERE heavier > :limit - :cost
ORDER BY expires_at DESC LIMIT 1;

-- name: limiter_insert_permit
INSERT INTO graphmesh_limiter_permits (token, limiter, key, granted_at, expires_at, cost)
VALUES (:token, :limiter, :key, :granted_at, :expires_at, :cost);

-- name: limiter_drop_permit
DELETE FROM graphmesh_limiter_permits
WHERE limiter = :limiter AND key = :key AND token = :token;

-- name: limiter_extend_permit
-- A permit that already expired stays lost, even before a take deletes its row.
UPDATE graphmesh_limiter_permits SET expires_at = :expires_at
WHERE limiter = :limiter AND key = :key AND token = :token AND expires_at > :now;

-- name: limiter_charge_permit
-- An expired permit counts no more, so its cost no longer matters.
UPDATE graphmesh_limiter_permits SET cost = :cost
WHERE limiter = :limiter AND key = :key AND token = :token AND expires_at > :now;

-- name: limiter_block
INSERT INTO graphmesh_limiter_keys (limiter, key, blocked_until)
VALUES (:limiter, :key, :until)
ON CONFLICT (limiter, key) DO UPDATE
SET blocked_until = max(coalesce(blocked_until, excluded.blocked_until), excluded.blocked_until);

-- name: limiter_clear_permits
DELETE FROM graphmesh_limiter_permits WHERE limiter = :limiter AND key = :key;

-- name: limiter_clear_key
DELETE FROM graphmesh_limiter_keys WHERE limiter = :limiter AND key = :key;

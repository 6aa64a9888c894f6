-- Named queries of the Postgres limit store (graphmesh/limits/postgres.py) and of its
-- migrations. Times cross the wire as POSIX seconds (float8); the database clock decides.

-- name: lock_migrations
-- Held until the migrating transaction ends: concurrent migrators run one after the other.
SELECT pg_advisory_xact_lock(hashtextextended('graphmesh_limiter_migrations', 0));

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS graphmesh_limiter_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM graphmesh_limiter_migrations ORDER BY version;

-- name: record_migration
INSERT INTO graphmesh_limiter_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: limiter_take
SELECT granted, decided_at, until_at
FROM graphmesh_limiter_take(
    %(limiter)s::text, %(key)s::text, %(limit)s::integer, %(hold)s::float8, %(token)s::text,
    %(cost)s::integer
);

-- name: limiter_drop_permit
DELETE FROM graphmesh_limiter_permits
WHERE limiter = %(limiter)s AND key = %(key)s AND token = %(token)s;

-- name: limiter_extend_permit
-- A permit that already expired stays lost, even before a take deletes its row.
UPDATE graphmesh_limiter_permits
SET expires_at = clock_timestamp() + make_interval(secs => %(hold)s::float8)
WHERE limiter = %(limiter)s AND key = %(key)s AND token = %(token)s
  AND expires_at > clock_timestamp()
RETURNING extract(epoch FROM expires_at)::float8;

-- name: limiter_charge_permit
-- An expired permit counts no more, so its cost no longer matters.
UPDATE graphmesh_limiter_permits SET cost = %(cost)s::integer
WHERE limiter = %(limiter)s AND key = %(key)s AND token = %(token)s
  AND expires_at > clock_timestamp()
RETURNING cost;

-- name: limiter_next_available
-- Latest expiry first, the first permit whose running cost reaches the limit: once it
-- expires, fewer than the limit's worth are live (a take of cost 1 fits).
SELECT extract(epoch FROM greatest(
    clock_timestamp(),
    (SELECT blocked_until FROM graphmesh_limiter_keys
     WHERE limiter = %(limiter)s AND key = %(key)s),
    (SELECT w.expires_at FROM (
        SELECT expires_at, sum(cost) OVER (ORDER BY expires_at DESC, token) AS heavier
        FROM graphmesh_limiter_permits
        WHERE limiter = %(limiter)s AND key = %(key)s AND expires_at > clock_timestamp()
     ) w
     WHERE w.heavier >= %(limit)s::integer
     ORDER BY w.expires_at DESC LIMIT 1)
))::float8;

-- name: limiter_block
INSERT INTO graphmesh_limiter_keys (limiter, key, blocked_until)
VALUES (%(limiter)s, %(key)s, to_timestamp(%(until)s::float8))
ON CONFLICT (limiter, key) DO UPDATE
SET blocked_until = greatest(graphmesh_limiter_keys.blocked_until, EXCLUDED.blocked_until);

-- name: limiter_unblock_key
-- Clearing updates the key row before deleting permits, taking locks in the order a take
-- does, so the two never deadlock. The row stays: a take locks it, and a row deleted under
-- a waiting take would leave that take holding no lock at all.
UPDATE graphmesh_limiter_keys SET blocked_until = NULL
WHERE limiter = %(limiter)s AND key = %(key)s;

-- name: limiter_clear_permits
DELETE FROM graphmesh_limiter_permits WHERE limiter = %(limiter)s AND key = %(key)s;

-- name: limiter_take_all
SELECT granted, decided_at, until_at
FROM graphmesh_limiter_take_all(
    %(key)s::text, %(limiters)s::text[], %(limits)s::integer[], %(holds)s::float8[],
    %(tokens)s::text[], %(costs)s::integer[]
);

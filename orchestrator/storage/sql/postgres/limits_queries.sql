-- Named queries of the Postgres limit store (orchestrator/limits/postgres.py).
-- Times cross the wire as POSIX seconds (float8); the database clock decides.

-- name: limiter_take
SELECT granted, decided_at, until_at
FROM graphmesh_limiter_take(
    %(limiter)s::text, %(key)s::text, %(limit)s::integer, %(hold)s::float8, %(token)s::text
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

-- name: limiter_next_available
-- The p_limit-th latest live expiry: once it passes, fewer than the limit are live.
SELECT extract(epoch FROM greatest(
    clock_timestamp(),
    (SELECT blocked_until FROM graphmesh_limiter_keys
     WHERE limiter = %(limiter)s AND key = %(key)s),
    (SELECT expires_at FROM graphmesh_limiter_permits
     WHERE limiter = %(limiter)s AND key = %(key)s AND expires_at > clock_timestamp()
     ORDER BY expires_at DESC OFFSET %(offset)s::integer LIMIT 1)
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

-- Named queries of the SQLite limit store (orchestrator/limits/sqlite.py). The store runs
-- them inside BEGIN IMMEDIATE where it needs atomicity; times are POSIX seconds.

-- name: limiter_blocked_until
SELECT blocked_until FROM graphmesh_limiter_keys WHERE limiter = :limiter AND key = :key;

-- name: limiter_drop_expired
DELETE FROM graphmesh_limiter_permits
WHERE limiter = :limiter AND key = :key AND expires_at <= :now;

-- name: limiter_nth_latest_expiry
-- Once the limit-th latest live expiry passes, fewer than the limit are live.
SELECT expires_at FROM graphmesh_limiter_permits
WHERE limiter = :limiter AND key = :key AND expires_at > :now
ORDER BY expires_at DESC LIMIT 1 OFFSET :offset;

-- name: limiter_insert_permit
INSERT INTO graphmesh_limiter_permits (token, limiter, key, granted_at, expires_at)
VALUES (:token, :limiter, :key, :granted_at, :expires_at);

-- name: limiter_drop_permit
DELETE FROM graphmesh_limiter_permits
WHERE limiter = :limiter AND key = :key AND token = :token;

-- name: limiter_extend_permit
-- A permit that already expired stays lost, even before a take deletes its row.
UPDATE graphmesh_limiter_permits SET expires_at = :expires_at
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

-- Limiters (graphmesh.limits): per (limiter, key), the live permits and a retry-after
-- block. Rate and concurrency limits share these tables; see graphmesh/limits/store.py.
-- Until the limiters had a history of their own, the engine's migration 0003 created these
-- very tables; every statement here leaves a database that has them as it is.

CREATE TABLE IF NOT EXISTS graphmesh_limiter_keys (
    limiter        text        NOT NULL,
    key            text        NOT NULL,
    -- Nothing is granted before this time (a provider's retry-after); NULL: no block.
    blocked_until  timestamptz,
    PRIMARY KEY (limiter, key)
);

-- A permit is live until expires_at: a rate grant for one window, a concurrency holder
-- for its lease. Expired rows are deleted by the next take on the same key.
CREATE TABLE IF NOT EXISTS graphmesh_limiter_permits (
    token       text        PRIMARY KEY,
    limiter     text        NOT NULL,
    key         text        NOT NULL,
    granted_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS graphmesh_limiter_permits_key_idx
    ON graphmesh_limiter_permits (limiter, key, expires_at);

-- Grant permit p_token for p_hold seconds if fewer than p_limit permits of the key are live
-- and the key is not blocked. One call is one statement: atomic per key because it first
-- locks the key's row, and it reads the clock only after that lock, so takes of one key
-- are serialised and their granted_at times ordered. Returns POSIX seconds by the database
-- clock: when granted, until_at is the permit's expiry; when refused, the next slot.
CREATE OR REPLACE FUNCTION graphmesh_limiter_take(
    p_limiter text, p_key text, p_limit integer, p_hold double precision, p_token text
) RETURNS TABLE (granted boolean, decided_at double precision, until_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_blocked timestamptz;
    v_now     timestamptz;
    v_full    timestamptz;
    v_next    timestamptz;
BEGIN
    -- Loop until the row is locked: a first take inserts it (a concurrent one waits on
    -- that insert, then finds the row), and a row deleted meanwhile is not locked at all.
    LOOP
        SELECT k.blocked_until INTO v_blocked FROM graphmesh_limiter_keys k
        WHERE k.limiter = p_limiter AND k.key = p_key FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO graphmesh_limiter_keys (limiter, key) VALUES (p_limiter, p_key)
        ON CONFLICT DO NOTHING;
    END LOOP;
    v_now := clock_timestamp();
    DELETE FROM graphmesh_limiter_permits p
    WHERE p.limiter = p_limiter AND p.key = p_key AND p.expires_at <= v_now;
    -- Once the p_limit-th latest expiry passes, fewer than p_limit permits are live.
    SELECT p.expires_at INTO v_full FROM graphmesh_limiter_permits p
    WHERE p.limiter = p_limiter AND p.key = p_key
    ORDER BY p.expires_at DESC OFFSET p_limit - 1 LIMIT 1;
    v_next := greatest(v_blocked, v_full);  -- greatest() skips NULLs
    IF v_next > v_now THEN
        RETURN QUERY SELECT false, extract(epoch FROM v_now)::float8,
                            extract(epoch FROM v_next)::float8;
        RETURN;
    END IF;
    v_next := v_now + make_interval(secs => p_hold);
    INSERT INTO graphmesh_limiter_permits (token, limiter, key, granted_at, expires_at)
    VALUES (p_token, p_limiter, p_key, v_now, v_next);
    RETURN QUERY SELECT true, extract(epoch FROM v_now)::float8,
                        extract(epoch FROM v_next)::float8;
END;
$$;

-- A permit's cost: how much of its limiter's limit it uses. Rate and concurrency limiters
-- charge 1 per permit; a token limiter charges the tokens a call is estimated to use and
-- corrects the estimate from the response (graphmesh/limits/stored.py). Composites take
-- all their permits in one call (graphmesh_limiter_take_all, below).
ALTER TABLE graphmesh_limiter_permits ADD COLUMN cost integer NOT NULL DEFAULT 1;

DROP FUNCTION graphmesh_limiter_take(text, text, integer, double precision, text);

-- Grant permit p_token of cost p_cost for p_hold seconds if the live permits of the key cost
-- at most p_limit - p_cost together and the key is not blocked. One call is one statement:
-- atomic per key because it first locks the key's row, and it reads the clock only after
-- that lock, so takes of one key are serialised and their granted_at times ordered. Returns
-- POSIX seconds by the database clock: when granted, until_at is the permit's expiry; when
-- refused, the next slot for this cost.
CREATE FUNCTION graphmesh_limiter_take(
    p_limiter text, p_key text, p_limit integer, p_hold double precision, p_token text,
    p_cost integer
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
    -- Latest expiry first, the first permit whose running cost leaves no room for p_cost:
    -- once it expires, with every permit after it, the rest leave room.
    SELECT w.expires_at INTO v_full FROM (
        SELECT p.expires_at, sum(p.cost) OVER (ORDER BY p.expires_at DESC, p.token) AS heavier
        FROM graphmesh_limiter_permits p
        WHERE p.limiter = p_limiter AND p.key = p_key
    ) w
    WHERE w.heavier > p_limit - p_cost
    ORDER BY w.expires_at DESC LIMIT 1;
    v_next := greatest(v_blocked, v_full);  -- greatest() skips NULLs
    IF v_next > v_now THEN
        RETURN QUERY SELECT false, extract(epoch FROM v_now)::float8,
                            extract(epoch FROM v_next)::float8;
        RETURN;
    END IF;
    v_next := v_now + make_interval(secs => p_hold);
    INSERT INTO graphmesh_limiter_permits (token, limiter, key, granted_at, expires_at, cost)
    VALUES (p_token, p_limiter, p_key, v_now, v_next, p_cost);
    RETURN QUERY SELECT true, extract(epoch FROM v_now)::float8,
                        extract(epoch FROM v_next)::float8;
END;
$$;

-- Permits of several limiters on one key (a composite limiter), all or none, in one call:
-- each is taken in turn as above (its key row locked in the order given), and at the first
-- refusal the permits this call took are deleted again and only that refusal is returned.
-- Otherwise one granted row per limiter, in order.
CREATE FUNCTION graphmesh_limiter_take_all(
    p_key text, p_limiters text[], p_limits integer[], p_holds double precision[],
    p_tokens text[], p_costs integer[]
) RETURNS TABLE (granted boolean, decided_at double precision, until_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_taken   record;
    v_at      double precision[] := '{}';
    v_until   double precision[] := '{}';
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_limiters, 1), 0) LOOP
        SELECT * INTO v_taken FROM graphmesh_limiter_take(
            p_limiters[i], p_key, p_limits[i], p_holds[i], p_tokens[i], p_costs[i]);
        IF NOT v_taken.granted THEN
            DELETE FROM graphmesh_limiter_permits
            WHERE key = p_key AND token = ANY (p_tokens[1:i - 1]);
            RETURN QUERY SELECT false, v_taken.decided_at, v_taken.until_at;
            RETURN;
        END IF;
        v_at := v_at || v_taken.decided_at;
        v_until := v_until || v_taken.until_at;
    END LOOP;
    RETURN QUERY SELECT true, a.taken_at, a.taken_until
        FROM unnest(v_at, v_until) WITH ORDINALITY AS a(taken_at, taken_until, n)
        ORDER BY a.n;
END;
$$;

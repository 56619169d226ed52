-- The request start of 000016 with the same signature, checks and errors
-- (AS001-AS004), in fewer statements (issue 11). Two changes:
--
-- * set_config by assignment rather than PERFORM: PL/pgSQL evaluates an
--   assignment's simple expression directly, where each PERFORM starts and
--   ends an executor of its own;
-- * the account and the session read in one statement of one SECURITY
--   DEFINER function (auth_viewer_role), instead of a SELECT on users as
--   the viewer followed by a definer call (auth_session_live) with a
--   statement of its own. The account is now read as app_auth, not under
--   the viewer's row-level security as 000013 did; it is the viewer's own
--   row either way (app.user_id), and only its role reaches the caller.
--
-- Measured with pgbench (8 clients, 2 cores, `BEGIN; SELECT
-- app_start_request(...)` then COMMIT, medians of 5 interleaved runs, done
-- twice): 32.7k and 30.6k starts/s before, 34.2k and 32.0k after, about
-- 3 µs less CPU per start; setting the four parameters alone runs 45k and
-- 42k. The account check itself (a definer call, two primary-key lookups)
-- is the other ~15 µs, whether called from PL/pgSQL or from the start's
-- SELECT list, with or without SET search_path. In `bench queries` the
-- difference is within the run-to-run noise (BENCHMARKS, stage 9).
CREATE OR REPLACE FUNCTION auth_viewer_role(p_session_id uuid)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_role text;
    v_active boolean;
    v_live boolean;
BEGIN
    SELECT u.role, u.is_active,
           p_session_id IS NULL OR EXISTS (SELECT 1 FROM sessions s WHERE s.id = p_session_id AND s.user_id = u.id)
      INTO v_role, v_active, v_live
      FROM users u
     WHERE u.id = NULLIF(current_setting('app.user_id', true), '')::uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this account no longer exists' USING ERRCODE = 'AS001';
    END IF;
    IF NOT v_active THEN
        RAISE EXCEPTION 'this account is deactivated' USING ERRCODE = 'AS002';
    END IF;
    IF NOT v_live THEN
        RAISE EXCEPTION 'this session has ended' USING ERRCODE = 'AS004';
    END IF;
    RETURN v_role;
END
$$;
COMMENT ON FUNCTION auth_viewer_role(uuid) IS
    'The viewer''s (app.user_id''s) role; raises AS001 (no such account), AS002 (deactivated) or AS004 (p_session_id, when given, is not a live session of the viewer). Keyed by app.user_id like auth_session_live was: a viewer learns nothing about other accounts.';
ALTER FUNCTION auth_viewer_role(uuid) OWNER TO app_auth;
REVOKE ALL ON FUNCTION auth_viewer_role(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_viewer_role(uuid) TO app_user, app_read, app_service, app_admin;

CREATE OR REPLACE FUNCTION app_start_request(
    p_role text,
    p_user_id uuid,
    p_claimed_role text,
    p_statement_timeout_ms integer,
    p_read_only boolean,
    p_session_id uuid
) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
    -- set_config's answer, unused: assigned so that the call is a simple
    -- expression (see above).
    v_set text;
    v_role text;
BEGIN
    IF p_read_only THEN
        v_set := pg_catalog.set_config('transaction_read_only', 'on', true);
    END IF;
    v_set := pg_catalog.set_config('role', p_role, true);
    v_set := pg_catalog.set_config('app.user_id', coalesce(p_user_id::text, ''), true);
    -- 0 keeps the server's own setting.
    IF p_statement_timeout_ms > 0 THEN
        v_set := pg_catalog.set_config('statement_timeout', p_statement_timeout_ms::text, true);
    END IF;
    IF p_user_id IS NULL THEN
        RETURN;
    END IF;
    -- As the viewer's role, set just above; it reads app.user_id.
    v_role := public.auth_viewer_role(p_session_id);
    IF v_role IS DISTINCT FROM p_claimed_role THEN
        RAISE EXCEPTION '%', v_role USING ERRCODE = 'AS003';
    END IF;
END
$$;

-- The request start was its only caller.
DROP FUNCTION IF EXISTS auth_session_live(uuid);

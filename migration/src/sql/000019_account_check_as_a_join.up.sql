-- The request start's account check (auth_viewer_role, 000018) as one
-- join, with the same signature, result and errors (AS001, AS002, AS004).
--
-- 000018 asked for the session with a correlated EXISTS. PostgreSQL planned
-- it as an alternative subplan, hashed: every request start set up a hash
-- table and the subplan's executor, scanned sessions into it and probed it
-- once. perf showed that as ~4 % of PostgreSQL's CPU in `bench queries`
-- (ExecInitSubPlan alone 1.3 %). As a LEFT JOIN the session is one more
-- scan in the same plan: through sessions_pkey or the account's sessions
-- (sessions_user_id_idx), or, while the table is a few pages, a scan of it.
--
-- pgbench, 8 clients, `BEGIN READ ONLY; SELECT app_start_request(...)`
-- then ROLLBACK, 256 sessions, 3 interleaved runs: 20.2k-23.3k starts/s
-- before, 24.3k-24.9k after.
CREATE OR REPLACE FUNCTION auth_viewer_role(p_session_id uuid)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_role text;
    v_active boolean;
    v_live boolean;
BEGIN
    SELECT u.role, u.is_active, p_session_id IS NULL OR s.id IS NOT NULL
      INTO v_role, v_active, v_live
      FROM users u LEFT JOIN sessions s ON s.id = p_session_id AND s.user_id = u.id
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

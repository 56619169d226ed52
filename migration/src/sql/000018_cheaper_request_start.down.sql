-- Back to 000016's request start and its session check.
CREATE OR REPLACE FUNCTION auth_session_live(p_session_id uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM sessions s WHERE s.id = p_session_id
                   AND s.user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
END
$$;
ALTER FUNCTION auth_session_live(uuid) OWNER TO app_auth;
REVOKE ALL ON FUNCTION auth_session_live(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_session_live(uuid) TO app_user, app_read, app_service, app_admin;

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
    v_role text;
    v_active boolean;
BEGIN
    IF p_read_only THEN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
    END IF;
    PERFORM pg_catalog.set_config('role', p_role, true),
            pg_catalog.set_config('app.user_id', coalesce(p_user_id::text, ''), true);
    IF p_statement_timeout_ms > 0 THEN
        PERFORM pg_catalog.set_config('statement_timeout', p_statement_timeout_ms::text, true);
    END IF;
    IF p_user_id IS NULL THEN
        RETURN;
    END IF;
    SELECT u.role, u.is_active INTO v_role, v_active FROM public.users u WHERE u.id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this account no longer exists' USING ERRCODE = 'AS001';
    END IF;
    IF NOT v_active THEN
        RAISE EXCEPTION 'this account is deactivated' USING ERRCODE = 'AS002';
    END IF;
    IF p_session_id IS NOT NULL AND NOT public.auth_session_live(p_session_id) THEN
        RAISE EXCEPTION 'this session has ended' USING ERRCODE = 'AS004';
    END IF;
    IF v_role IS DISTINCT FROM p_claimed_role THEN
        RAISE EXCEPTION '%', v_role USING ERRCODE = 'AS003';
    END IF;
END
$$;

DROP FUNCTION IF EXISTS auth_viewer_role(uuid);

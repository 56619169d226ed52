-- Back to 000013's request start (no session check), then the sessions go.
DROP FUNCTION IF EXISTS app_start_request(text, uuid, text, integer, boolean, uuid);
CREATE OR REPLACE FUNCTION app_start_request(
    p_role text,
    p_user_id uuid,
    p_claimed_role text,
    p_statement_timeout_ms integer,
    p_read_only boolean
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
    -- 0 keeps the server's own setting.
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
    IF v_role IS DISTINCT FROM p_claimed_role THEN
        RAISE EXCEPTION '%', v_role USING ERRCODE = 'AS003';
    END IF;
END
$$;

-- Every viewer role may call it (it does only what the caller could do
-- statement by statement); the request login calls it before switching.
REVOKE ALL ON FUNCTION app_start_request(text, uuid, text, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_start_request(text, uuid, text, integer, boolean)
    TO app_authenticator, app_anon, app_user, app_read, app_service, app_admin;

DROP TRIGGER IF EXISTS sessions_capture_delete ON sessions;
DROP FUNCTION IF EXISTS app_capture_sessions_delete();
DROP FUNCTION IF EXISTS auth_sign_out(uuid);
DROP FUNCTION IF EXISTS auth_session_live(uuid);
DROP FUNCTION IF EXISTS auth_delete_account(uuid);
DROP FUNCTION IF EXISTS auth_set_password(uuid, text, uuid);
DROP FUNCTION IF EXISTS auth_password_of(uuid);
DROP FUNCTION IF EXISTS auth_session_revoke(uuid);
DROP FUNCTION IF EXISTS auth_session_refresh(bytea, bytea, integer);
DROP FUNCTION IF EXISTS auth_session_start(uuid, bytea, integer);

DROP POLICY IF EXISTS users_self_profile ON users;
REVOKE UPDATE (full_name, username) ON users FROM app_read, app_service;
REVOKE UPDATE (username) ON users FROM app_user;
REVOKE UPDATE (password_hash) ON users FROM app_auth;
REVOKE DELETE ON users FROM app_auth;

DROP TABLE IF EXISTS refresh_tokens;
DROP TABLE IF EXISTS sessions;

-- Back to 000018's account check (the session by a correlated EXISTS).
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

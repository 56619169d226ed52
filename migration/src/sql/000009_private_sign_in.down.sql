-- Back to migration 000001's sign-up / sign-in functions, executable by
-- every viewer role. The role app_signin and its membership stay: roles are
-- cluster-wide, and other databases on the cluster may still use them.
DROP FUNCTION IF EXISTS auth_sign_up(text, text, text, text);
DROP FUNCTION IF EXISTS auth_signed_in(uuid);
DROP FUNCTION IF EXISTS auth_sign_in_lookup(text);

CREATE OR REPLACE FUNCTION auth_sign_up(p_email text, p_username text, p_password_hash text, p_full_name text)
RETURNS SETOF users
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO users (email, username, password_hash, full_name, role)
    VALUES (p_email, p_username, p_password_hash, p_full_name, 'user')
    RETURNING *;
$$;

CREATE OR REPLACE FUNCTION auth_find_login(p_login text)
RETURNS SETOF users
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM users
    WHERE lower(email) = lower(p_login) OR lower(username) = lower(p_login)
    LIMIT 1;
$$;

CREATE OR REPLACE FUNCTION auth_touch_login(p_id uuid)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE users SET last_login = now() WHERE id = p_id;
$$;

ALTER FUNCTION auth_sign_up(text, text, text, text) OWNER TO app_auth;
ALTER FUNCTION auth_find_login(text) OWNER TO app_auth;
ALTER FUNCTION auth_touch_login(uuid) OWNER TO app_auth;
REVOKE ALL ON FUNCTION auth_sign_up(text, text, text, text), auth_find_login(text), auth_touch_login(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_sign_up(text, text, text, text), auth_find_login(text), auth_touch_login(uuid)
    TO app_anon, app_user, app_read, app_service, app_admin;

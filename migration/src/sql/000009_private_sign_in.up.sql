-- Sign-in reads password hashes; nothing else may. Until now the sign-in
-- functions were executable by every viewer role: `auth_find_login(text)`
-- handed anyone (app_anon included) a whole users row, hash and email,
-- for any login; `auth_touch_login(uuid)` let anyone change anyone's
-- last_login; `auth_sign_up` returned the new row with its hash.
--
-- Now the functions that see hashes or act on an account by id are
-- executable by one role only, `app_signin` (NOLOGIN, no table privilege),
-- which only the request login is a member of. The sign-in resolver
-- switches to it (`SET LOCAL ROLE app_signin`) for its one statement and
-- back to the viewer's role at once, so no viewer role, however it got
-- SQL, can call them. Each returns only what its caller needs.

-- Cluster-wide and shared by every database on the cluster, so created
-- idempotently and kept by the down migration (as in 000001).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_signin') THEN
        CREATE ROLE app_signin NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
GRANT app_signin TO app_authenticator;

DROP FUNCTION auth_find_login(text);
DROP FUNCTION auth_touch_login(uuid);
DROP FUNCTION auth_sign_up(text, text, text, text);

-- What checking a password needs, and no more: no email, no name.
CREATE OR REPLACE FUNCTION auth_sign_in_lookup(p_login text)
RETURNS TABLE (id uuid, password_hash text, is_active boolean, role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.id, u.password_hash::text, u.is_active, u.role::text FROM users u
    WHERE lower(u.email) = lower(p_login) OR lower(u.username) = lower(p_login)
    LIMIT 1;
$$;

-- After the password matched: records the sign-in and returns the account
-- for the session (its owner's own row, without the hash).
CREATE OR REPLACE FUNCTION auth_signed_in(p_id uuid)
RETURNS TABLE (id uuid, email varchar, username varchar, full_name varchar, role varchar,
               is_active boolean, created_at timestamptz, last_login timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE users u SET last_login = now() WHERE u.id = p_id
    RETURNING u.id, u.email, u.username, u.full_name, u.role, u.is_active, u.created_at, u.last_login;
$$;

-- A new account with role user, returned without its hash.
CREATE FUNCTION auth_sign_up(p_email text, p_username text, p_password_hash text, p_full_name text)
RETURNS TABLE (id uuid, email varchar, username varchar, full_name varchar, role varchar,
               is_active boolean, created_at timestamptz, last_login timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO users AS u (email, username, password_hash, full_name, role)
    VALUES (p_email, p_username, p_password_hash, p_full_name, 'user')
    RETURNING u.id, u.email, u.username, u.full_name, u.role, u.is_active, u.created_at, u.last_login;
$$;

ALTER FUNCTION auth_sign_in_lookup(text) OWNER TO app_auth;
ALTER FUNCTION auth_signed_in(uuid) OWNER TO app_auth;
ALTER FUNCTION auth_sign_up(text, text, text, text) OWNER TO app_auth;
REVOKE ALL ON FUNCTION auth_sign_in_lookup(text), auth_signed_in(uuid), auth_sign_up(text, text, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_sign_in_lookup(text), auth_signed_in(uuid), auth_sign_up(text, text, text, text)
    TO app_signin;

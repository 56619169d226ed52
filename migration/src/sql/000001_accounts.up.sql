-- Roles are cluster-wide, so creating them must be idempotent: several
-- databases on one cluster (staging beside dev, or every test database) share
-- them. None of them can log in; none owns a table; none bypasses RLS.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['app_anon', 'app_user', 'app_read', 'app_service',
                             'app_admin', 'app_auth', 'app_authenticator'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS', r);
        END IF;
    END LOOP;
END
$$;

-- The request pool logs in as app_authenticator. NOINHERIT: it holds no
-- privilege of its own and must `SET LOCAL ROLE` to one viewer role before it
-- can touch a table, so a request that forgot to switch fails closed.
-- Changed only when not so already: ALTER ROLE rewrites the role's row even
-- when nothing changes, and two databases migrating at once on one cluster
-- then fail with "tuple concurrently updated".
DO $$
DECLARE
    r text;
BEGIN
    IF (SELECT rolinherit FROM pg_roles WHERE rolname = 'app_authenticator') THEN
        ALTER ROLE app_authenticator NOINHERIT;
    END IF;
    FOREACH r IN ARRAY ARRAY['app_anon', 'app_user', 'app_read', 'app_service', 'app_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_auth_members m
                       WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = r)
                         AND m.member = (SELECT oid FROM pg_roles WHERE rolname = 'app_authenticator')) THEN
            EXECUTE format('GRANT %I TO app_authenticator', r);
        END IF;
    END LOOP;
END
$$;

-- Kept by the database, not by the application, so every writer agrees.
CREATE OR REPLACE FUNCTION app_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         varchar(254) NOT NULL CONSTRAINT users_email_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    username      varchar(50)  NOT NULL CONSTRAINT users_username_check CHECK (username ~ '^[A-Za-z0-9_.-]{3,50}$'),
    password_hash varchar(255) NOT NULL,
    full_name     varchar(100) NOT NULL,
    role          varchar(20)  NOT NULL DEFAULT 'user'
                  CONSTRAINT users_role_check CHECK (role IN ('admin', 'service', 'reader', 'user')),
    is_active     boolean      NOT NULL DEFAULT true,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    last_login    timestamptz
);
-- Case-insensitive uniqueness: "Ada@x.io" and "ada@x.io" are one account.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;

-- The seed's rule: a user sees only their own row. An unset or empty
-- app.user_id (a pooled connection outside a request) is NULL, which matches
-- nobody, instead of failing the ::uuid cast.
CREATE POLICY users_self_select ON users FOR SELECT TO app_user
    USING (id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY users_self_update ON users FOR UPDATE TO app_user
    USING (id = NULLIF(current_setting('app.user_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY users_read_all ON users FOR SELECT TO app_read, app_service USING (true);
CREATE POLICY users_admin_all ON users FOR ALL TO app_admin USING (true) WITH CHECK (true);
-- Only the sign-up / sign-in functions below run as app_auth.
CREATE POLICY users_auth_all ON users FOR ALL TO app_auth USING (true) WITH CHECK (true);

GRANT SELECT ON users TO app_user, app_read, app_service, app_admin, app_auth;
GRANT UPDATE (full_name) ON users TO app_user;
GRANT INSERT, UPDATE, DELETE ON users TO app_admin;
GRANT INSERT, UPDATE (last_login) ON users TO app_auth;

-- Signing up and signing in happen before there is a viewer, so the anonymous
-- role may not read or write `users`. These SECURITY DEFINER functions are the
-- only door: they run as app_auth (not the table owner, so RLS still applies
-- to them) and a fixed search_path keeps callers from shadowing objects.
-- `api migrate fresh` drops the tables but not functions that outlive them:
-- a later migration's auth_sign_up (000009 returns no users row, so it does
-- not go with the table) would make CREATE OR REPLACE fail on the new
-- return type.
DROP FUNCTION IF EXISTS auth_sign_up(text, text, text, text);
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

-- The migration ledger is a table too: row security on it as on every other,
-- readable by the request login so /readyz can report pending migrations.
ALTER TABLE seaql_migrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE seaql_migrations FORCE ROW LEVEL SECURITY;
CREATE POLICY seaql_migrations_all ON seaql_migrations USING (true) WITH CHECK (true);
GRANT SELECT ON seaql_migrations TO app_authenticator;

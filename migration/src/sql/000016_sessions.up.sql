-- Sessions that can end (issue 14). An access token (a JWT, short-lived)
-- names its session in a `sid` claim; every request checks that the session
-- still exists as part of `app_start_request`, so signing out (deleting the
-- session) stops its access tokens at once, in the same statement the start
-- of a request already sends. A session is also a refresh-token family: each
-- refresh rotates the token, and presenting one that was already rotated
-- (a stolen copy, or the legitimate client after the thief) deletes the
-- session, so both holders are signed out.
--
-- Neither table is readable by any request role: tokens and other people's
-- sessions are nobody's business. As with the sign-in functions of 000009,
-- SECURITY DEFINER functions owned by app_auth are the only door; those that
-- act on any account by id are executable by app_signin only, those that act
-- on the viewer's own sessions (`app.user_id`) by the viewer roles.

CREATE TABLE sessions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_refreshed_at timestamptz NOT NULL DEFAULT now(),
    -- Refreshing is refused from then on; the session is pruned later.
    expires_at        timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Only SHA-256 hashes: a copy of the table signs nobody in. The tokens are
-- 256 random bits, so a plain hash (no salt, no stretching) is enough.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY CONSTRAINT refresh_tokens_hash_check CHECK (length(token_hash) = 32),
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the token was exchanged for the next one; using it again is reuse.
    rotated_at timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY sessions_auth_all ON sessions FOR ALL TO app_auth USING (true) WITH CHECK (true);
CREATE POLICY refresh_tokens_auth_all ON refresh_tokens FOR ALL TO app_auth USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, refresh_tokens TO app_auth;

-- deleteAccount and changePassword act as app_auth too (through the
-- functions below); the foreign keys' ON DELETE CASCADE remove the
-- account's rows in every domain.
GRANT DELETE ON users TO app_auth;
GRANT UPDATE (password_hash) ON users TO app_auth;

-- updateProfile: every signed-in viewer may rename themselves (and only
-- themselves: app_user's policy of 000001; readers and services get theirs
-- here). Email, role and activity stay with sign-up and admins.
GRANT UPDATE (full_name, username) ON users TO app_user, app_read, app_service;
CREATE POLICY users_self_profile ON users FOR UPDATE TO app_read, app_service
    USING (id = NULLIF(current_setting('app.user_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.user_id', true), '')::uuid);

-- A new session for an account whose password matched (or that was just
-- created), with its first refresh token. Also prunes the account's expired
-- sessions, so the table does not grow with abandoned ones.
CREATE OR REPLACE FUNCTION auth_session_start(p_user_id uuid, p_token_hash bytea, p_ttl_seconds integer)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    DELETE FROM sessions WHERE user_id = p_user_id AND expires_at <= now();
    INSERT INTO sessions (user_id, expires_at) VALUES (p_user_id, now() + make_interval(secs => p_ttl_seconds))
    RETURNING id INTO v_id;
    INSERT INTO refresh_tokens (token_hash, session_id) VALUES (p_token_hash, v_id);
    RETURN v_id;
END
$$;

-- Exchanges a refresh token for the next one. `outcome`:
--   'ok'      rotated: the session and its account as it is now (for the
--             new access token), without the hash
--   'reused'  the token had been rotated already: the caller must end the
--             session (auth_session_revoke, in a transaction of its own, as
--             this one is rolled back with the request's error)
--   'expired' the session's refresh lifetime is over
--   no row    unknown token (never issued, or its session has ended)
-- The conditional UPDATE is the lock: of two concurrent refreshes with one
-- token, the second waits for the first and then finds it rotated (reuse).
CREATE OR REPLACE FUNCTION auth_session_refresh(p_token_hash bytea, p_next_hash bytea, p_ttl_seconds integer)
RETURNS TABLE (outcome text, session_id uuid, id uuid, email varchar, username varchar, full_name varchar,
               role varchar, is_active boolean, created_at timestamptz, last_login timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_session uuid;
BEGIN
    UPDATE refresh_tokens t SET rotated_at = now()
    WHERE t.token_hash = p_token_hash AND t.rotated_at IS NULL
    RETURNING t.session_id INTO v_session;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'reused'::text, t.session_id, NULL::uuid, NULL::varchar, NULL::varchar, NULL::varchar,
                            NULL::varchar, NULL::boolean, NULL::timestamptz, NULL::timestamptz
            FROM refresh_tokens t WHERE t.token_hash = p_token_hash;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM sessions s WHERE s.id = v_session AND s.expires_at <= now()) THEN
        RETURN QUERY SELECT 'expired'::text, v_session, NULL::uuid, NULL::varchar, NULL::varchar, NULL::varchar,
                            NULL::varchar, NULL::boolean, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    INSERT INTO refresh_tokens (token_hash, session_id) VALUES (p_next_hash, v_session);
    -- A refresh extends the session: it ends after p_ttl_seconds of disuse.
    UPDATE sessions s SET last_refreshed_at = now(), expires_at = now() + make_interval(secs => p_ttl_seconds)
    WHERE s.id = v_session;
    RETURN QUERY SELECT 'ok'::text, s.id, u.id, u.email, u.username, u.full_name, u.role, u.is_active,
                        u.created_at, u.last_login
        FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = v_session;
END
$$;

-- Ends one session (a whole refresh-token family) of any account.
CREATE OR REPLACE FUNCTION auth_session_revoke(p_session_id uuid)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DELETE FROM sessions WHERE id = p_session_id;
$$;

-- The password hash of an account, to check before changing the password
-- or deleting the account.
CREATE OR REPLACE FUNCTION auth_password_of(p_user_id uuid)
RETURNS TABLE (password_hash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.password_hash::text FROM users u WHERE u.id = p_user_id;
$$;

-- A new password; every session but p_keep_session (the one that changed
-- it; NULL: none) ends.
CREATE OR REPLACE FUNCTION auth_set_password(p_user_id uuid, p_password_hash text, p_keep_session uuid)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE users SET password_hash = p_password_hash WHERE id = p_user_id;
    DELETE FROM sessions WHERE user_id = p_user_id AND id IS DISTINCT FROM p_keep_session;
$$;

-- Deletes an account; ON DELETE CASCADE removes its rows everywhere,
-- sessions included. Returns whether there was one.
CREATE OR REPLACE FUNCTION auth_delete_account(p_user_id uuid)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (DELETE FROM users WHERE id = p_user_id RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone);
$$;

ALTER FUNCTION auth_session_start(uuid, bytea, integer) OWNER TO app_auth;
ALTER FUNCTION auth_session_refresh(bytea, bytea, integer) OWNER TO app_auth;
ALTER FUNCTION auth_session_revoke(uuid) OWNER TO app_auth;
ALTER FUNCTION auth_password_of(uuid) OWNER TO app_auth;
ALTER FUNCTION auth_set_password(uuid, text, uuid) OWNER TO app_auth;
ALTER FUNCTION auth_delete_account(uuid) OWNER TO app_auth;
REVOKE ALL ON FUNCTION auth_session_start(uuid, bytea, integer), auth_session_refresh(bytea, bytea, integer),
    auth_session_revoke(uuid), auth_password_of(uuid), auth_set_password(uuid, text, uuid),
    auth_delete_account(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_session_start(uuid, bytea, integer), auth_session_refresh(bytea, bytea, integer),
    auth_session_revoke(uuid), auth_password_of(uuid), auth_set_password(uuid, text, uuid),
    auth_delete_account(uuid) TO app_signin;

-- The viewer's own sessions, for signOut / signOutEverywhere and the request
-- start: keyed by `app.user_id`, so a viewer can only ever see or end their
-- own, and learns nothing but whether a session id of theirs is live.
-- PL/pgSQL, not SQL, for the request start's sake: a SQL function that
-- cannot be inlined (SECURITY DEFINER) is planned again on every call,
-- which measured +0.12 ms per request start; PL/pgSQL keeps the plan for
-- the connection's life (+0.02 ms, within noise).
CREATE OR REPLACE FUNCTION auth_session_live(p_session_id uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM sessions s WHERE s.id = p_session_id
                   AND s.user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
END
$$;

-- Ends the viewer's sessions: p_session_id only, or (NULL) all of them.
-- Returns how many ended.
CREATE OR REPLACE FUNCTION auth_sign_out(p_session_id uuid)
RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (
        DELETE FROM sessions s WHERE s.user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
          AND (p_session_id IS NULL OR s.id = p_session_id)
        RETURNING 1)
    SELECT count(*)::integer FROM gone;
$$;

ALTER FUNCTION auth_session_live(uuid) OWNER TO app_auth;
ALTER FUNCTION auth_sign_out(uuid) OWNER TO app_auth;
REVOKE ALL ON FUNCTION auth_session_live(uuid), auth_sign_out(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_session_live(uuid) TO app_user, app_read, app_service, app_admin;
GRANT EXECUTE ON FUNCTION auth_sign_out(uuid) TO app_user, app_read, app_service, app_admin;

-- Open websockets of an ended session end at once: a session's deletion is
-- published in the change log (its id and account only), which every
-- server's listener reads; the listener tells the connections of that
-- session to close. Creation and refreshes are not published.
CREATE TRIGGER sessions_capture_delete AFTER DELETE ON sessions REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id', 'id,user_id');
SELECT app_capture_compile();

-- The request start of 000013, with the session check: p_session_id (the
-- access token's `sid`; NULL for a token without one) must name a live
-- session of the account, else AS004. Same single statement, one more
-- index lookup.
DROP FUNCTION IF EXISTS app_start_request(text, uuid, text, integer, boolean);
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

REVOKE ALL ON FUNCTION app_start_request(text, uuid, text, integer, boolean, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_start_request(text, uuid, text, integer, boolean, uuid)
    TO app_authenticator, app_anon, app_user, app_read, app_service, app_admin;

-- 000013's five-argument form stays for servers of the previous release
-- still running during a rolling deploy (they know no sessions): it is the
-- new start without a session check. A later migration drops it.
CREATE FUNCTION app_start_request(
    p_role text,
    p_user_id uuid,
    p_claimed_role text,
    p_statement_timeout_ms integer,
    p_read_only boolean
) RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER AS $$
    SELECT public.app_start_request(p_role, p_user_id, p_claimed_role, p_statement_timeout_ms, p_read_only, NULL::uuid)
$$;
REVOKE ALL ON FUNCTION app_start_request(text, uuid, text, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_start_request(text, uuid, text, integer, boolean)
    TO app_authenticator, app_anon, app_user, app_read, app_service, app_admin;

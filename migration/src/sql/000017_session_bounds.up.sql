-- Issue 14 leftovers on sessions.
--
-- 1. The account functions of 000016 that act on the signed-in account
--    (`auth_password_of`, `auth_set_password`, `auth_delete_account`) take
--    the account from `app.user_id`, as `auth_sign_out` does, instead of an
--    argument: the request start sets it to the token's account, so no
--    resolver (nor a bug in one) can name another account. They stay
--    executable by app_signin only (the resolvers switch to it for the one
--    statement; `app.user_id` is transaction-local and survives the switch).
--    The old signatures stay for servers of the previous release during a
--    rolling deploy (they call them); a later migration drops them.
--
-- 2. Pruning on a timer (`auth_prune_sessions`, called by every server's
--    listener next to the change log's pruning): expired sessions were
--    deleted only at their account's next sign-in, so an account that never
--    came back kept them, and every refresh token they had rotated, forever.
--    Bounded batches, so one call never holds many row locks or a long
--    transaction: a batch of the expired sessions' tokens first (a session
--    refreshed for months has thousands), then a batch of expired sessions
--    with no tokens left (their deletion is published, as a sign-out is).
--
--    Rotated tokens of a live session are kept, all of them: they are what
--    detects reuse (a stolen token presented after the legitimate client
--    rotated it, or the other way round, ends the whole family), and a
--    thief who keeps a session alive by refreshing it must still be caught
--    when the legitimate client comes back with its last token, however
--    long after. The cost is one row (~100 bytes) per refresh for the
--    session's life; a session ends SESSION_TTL_SECONDS after its last
--    refresh, so only sessions in steady use grow, by one row per access
--    token lifetime. Forgetting older rotated tokens would bound that, but
--    such a token would then be "unknown" (refused) instead of "reused"
--    (refused and the family ended): the thief's family would live on.

CREATE OR REPLACE FUNCTION auth_password_of()
RETURNS TABLE (password_hash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.password_hash::text FROM users u
    WHERE u.id = NULLIF(current_setting('app.user_id', true), '')::uuid;
$$;

-- A new password for the signed-in account; every session of it but
-- p_keep_session (the one that changed it; NULL: none) ends.
CREATE OR REPLACE FUNCTION auth_set_password(p_password_hash text, p_keep_session uuid)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE users SET password_hash = p_password_hash
    WHERE id = NULLIF(current_setting('app.user_id', true), '')::uuid;
    DELETE FROM sessions WHERE user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
      AND id IS DISTINCT FROM p_keep_session;
$$;

-- Deletes the signed-in account (ON DELETE CASCADE removes its rows
-- everywhere, sessions included). Returns whether there was one.
CREATE OR REPLACE FUNCTION auth_delete_account()
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (DELETE FROM users WHERE id = NULLIF(current_setting('app.user_id', true), '')::uuid RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone);
$$;

-- One bounded pruning step: at most p_batch refresh tokens of expired
-- sessions, then at most p_batch expired sessions that have no tokens left.
-- Returns how many of each went; the caller repeats while either is
-- p_batch. SKIP LOCKED: a session being refreshed or signed out right now
-- is left to the next pass.
CREATE OR REPLACE FUNCTION auth_prune_sessions(p_batch integer)
RETURNS TABLE (pruned_sessions integer, pruned_tokens integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tokens integer;
    v_sessions integer;
BEGIN
    WITH expired AS (
        SELECT t.token_hash FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
        WHERE s.expires_at <= now()
        LIMIT p_batch FOR UPDATE OF t SKIP LOCKED
    ), gone AS (
        DELETE FROM refresh_tokens t USING expired e WHERE t.token_hash = e.token_hash RETURNING 1
    )
    SELECT count(*)::integer INTO v_tokens FROM gone;
    WITH expired AS (
        SELECT s.id FROM sessions s
        WHERE s.expires_at <= now() AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id)
        LIMIT p_batch FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM sessions s USING expired e WHERE s.id = e.id RETURNING 1
    )
    SELECT count(*)::integer INTO v_sessions FROM gone;
    RETURN QUERY SELECT v_sessions, v_tokens;
END
$$;

-- Finds the expired sessions without reading every session.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

ALTER FUNCTION auth_password_of() OWNER TO app_auth;
ALTER FUNCTION auth_set_password(text, uuid) OWNER TO app_auth;
ALTER FUNCTION auth_delete_account() OWNER TO app_auth;
ALTER FUNCTION auth_prune_sessions(integer) OWNER TO app_auth;
REVOKE ALL ON FUNCTION auth_password_of(), auth_set_password(text, uuid), auth_delete_account(),
    auth_prune_sessions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_password_of(), auth_set_password(text, uuid), auth_delete_account() TO app_signin;
-- The listener prunes as the realtime role, as it prunes the change log.
GRANT EXECUTE ON FUNCTION auth_prune_sessions(integer) TO app_realtime;

COMMENT ON FUNCTION auth_password_of(uuid) IS
    'Superseded by auth_password_of() (000017); kept for the previous release during a rolling deploy; a later migration drops it.';
COMMENT ON FUNCTION auth_set_password(uuid, text, uuid) IS
    'Superseded by auth_set_password(text, uuid) (000017); kept for the previous release during a rolling deploy; a later migration drops it.';
COMMENT ON FUNCTION auth_delete_account(uuid) IS
    'Superseded by auth_delete_account() (000017); kept for the previous release during a rolling deploy; a later migration drops it.';

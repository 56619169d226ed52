-- The start of every request in one statement (issue 11). A request used to
-- start with BEGIN, then `SELECT set_config(role), set_config(app.user_id),
-- set_config(statement_timeout)`, then `SELECT role, is_active FROM users`,
-- and on a role change a second set_config: up to four round trips before
-- the first resolver ran. This function does all of it in one statement,
-- sent in one round trip after BEGIN.
--
-- SECURITY INVOKER on purpose: `role` cannot be set inside a SECURITY
-- DEFINER function, and the account is read *as the viewer*, after the
-- switch, so row-level security applies to this read as to every other (each
-- viewer role may read its own users row). No `SET` clause either: it would
-- confine the settings to the function, and they must last the transaction.
-- Names are schema-qualified instead, so the caller's search_path cannot
-- redirect them.
--
-- The account check answers only when it fails, with an error of its own
-- SQLSTATE (class AS, "account state"), so the common case returns nothing
-- and needs no result row read back:
--   AS001  the account no longer exists
--   AS002  the account is deactivated
--   AS003  the account's role is no longer p_claimed_role; the message is the
--          role it has now (the server starts the request again as that role)
-- Any of these aborts the transaction, which the server then rolls back.
--
-- p_read_only makes the transaction READ ONLY (query operations): turning it
-- on is allowed at any point of a transaction, unlike turning it off.
-- OR REPLACE: nothing depends on a table here, so `Migrator::fresh` (which
-- drops tables and types, not functions) leaves it behind for the re-run.
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

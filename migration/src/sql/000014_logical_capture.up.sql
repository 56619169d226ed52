-- Logical capture: writers append to the change log and nothing else; one
-- server at a time (the *sequencer*) reads the log's inserts from a logical
-- replication slot, in commit order, stamps many transactions in one
-- statement and sends one NOTIFY (api/src/realtime/sequencer.rs).
--
-- With the trigger capture of 000003/000012 every writing transaction takes
-- the commit-order advisory lock at commit and queues a NOTIFY, and holds
-- both until its commit record is flushed: every published write of the
-- database waits for the one before it. Logical decoding already delivers
-- transactions in commit order, without any lock in the writers.
--
-- The capture mode is the database's, not a server's: `change_capture.mode`
-- says which body the generated capture functions have, and
-- `app_capture_set_mode` regenerates them (CREATE OR REPLACE FUNCTION: the
-- next statement of every session runs the new body; no table lock).

-- The login the sequencer connects as: logical decoding needs REPLICATION,
-- which the request login must not have. Only a superuser may grant
-- REPLICATION (PostgreSQL 15); elsewhere the operator does (managed
-- PostgreSQL: its replication role), and until then servers fall back to
-- the trigger capture. LOGIN and a password are the operator's (the
-- embedded database sets them).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_sequencer') THEN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            CREATE ROLE app_sequencer NOLOGIN REPLICATION NOSUPERUSER NOBYPASSRLS;
        ELSE
            CREATE ROLE app_sequencer NOLOGIN NOSUPERUSER NOBYPASSRLS;
        END IF;
    END IF;
END
$$;
-- It stamps change_commit and reads the log as the realtime role does.
GRANT app_realtime TO app_sequencer;

-- What the slot decodes: inserts into the change log, nothing else (the
-- published tables' own rows are never sent to the sequencer).
--
-- Idempotent, as 000010: `migrate fresh` drops tables but not publications,
-- and restoring a backup from before this migration keeps what it does
-- not name, then runs the migration again.
DROP PUBLICATION IF EXISTS app_change_log;
CREATE PUBLICATION app_change_log FOR TABLE change_log WITH (publish = 'insert');

CREATE TABLE IF NOT EXISTS change_capture (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT change_capture_singleton CHECK (singleton),
    mode      text NOT NULL DEFAULT 'trigger' CONSTRAINT change_capture_mode_check CHECK (mode IN ('trigger', 'logical'))
);
INSERT INTO change_capture DEFAULT VALUES ON CONFLICT DO NOTHING;
ALTER TABLE change_capture ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_capture FORCE ROW LEVEL SECURITY;
-- Readable by whoever is granted SELECT (app_realtime); written through
-- app_capture_set_mode only (as the owner).
DROP POLICY IF EXISTS change_capture_read ON change_capture;
CREATE POLICY change_capture_read ON change_capture FOR SELECT TO PUBLIC USING (true);
DROP POLICY IF EXISTS change_capture_owner ON change_capture;
CREATE POLICY change_capture_owner ON change_capture FOR UPDATE TO PUBLIC USING (true) WITH CHECK (true);
GRANT SELECT ON change_capture TO app_realtime;

-- The sequencer inserts change_commit rows already stamped: the deferred
-- stamp of 000003 is for the trigger capture's unstamped rows only.
DROP TRIGGER IF EXISTS change_commit_stamp ON change_commit;
CREATE CONSTRAINT TRIGGER change_commit_stamp AFTER INSERT ON change_commit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.seq IS NULL) EXECUTE FUNCTION app_stamp_commit();

-- A transaction that registered under the trigger mode and commits after
-- the switch to logical is decoded like every other: the sequencer stamps
-- it in commit order. Stamping itself at commit would put it ahead of
-- logical-mode transactions that committed before it but are stamped
-- after (the sequencer's poll). The stamp lock serializes this check with
-- the switch (app_capture_set_mode takes it too).
CREATE OR REPLACE FUNCTION app_stamp_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- Held until the commit completes; the key is this feature's own.
    PERFORM pg_advisory_xact_lock(7262018542);
    IF (SELECT mode FROM change_capture) = 'logical' THEN
        RETURN NULL;
    END IF;
    UPDATE change_commit SET seq = nextval('change_commit_seq'), committed_at = clock_timestamp()
    WHERE txid = NEW.txid;
    RETURN NULL;
END
$$;

-- As in 000012, with the body chosen by change_capture.mode: `trigger`
-- registers the transaction for its commit stamp and notifies; `logical`
-- only appends to the log. Also recompiles triggers already compiled (the
-- body of a generated function is replaced; the trigger is untouched).
CREATE OR REPLACE FUNCTION app_capture_compile() RETURNS integer
LANGUAGE plpgsql SET search_path = public, pg_temp AS $compile$
DECLARE
    t        record;
    op       text;
    fn       text;
    args     text[];
    logical  boolean := (SELECT mode = 'logical' FROM change_capture);
    compiled integer := 0;
BEGIN
    FOR t IN
        SELECT tg.oid, tg.tgname, tg.tgtype, tg.tgnargs, tg.tgargs, tg.tgrelid, c.relname,
               tg.tgfoid = 'app_capture_changes()'::regprocedure AS generic
        FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_proc p ON p.oid = tg.tgfoid
        WHERE (tg.tgfoid = 'app_capture_changes()'::regprocedure
               OR p.proname = format('app_capture_%s_%s', c.relname,
                                     CASE WHEN tg.tgtype & 4 <> 0 THEN 'insert' WHEN tg.tgtype & 16 <> 0 THEN 'update' ELSE 'delete' END))
          AND NOT tg.tgisinternal
        ORDER BY c.relname, tg.tgname
    LOOP
        -- pg_trigger.tgtype bits: 4 INSERT, 8 DELETE, 16 UPDATE (one each here).
        op := CASE WHEN t.tgtype & 4 <> 0 THEN 'insert' WHEN t.tgtype & 16 <> 0 THEN 'update' ELSE 'delete' END;
        -- tgargs: the arguments, each followed by a zero byte.
        args := (string_to_array(encode(t.tgargs, 'escape'), '\000'))[1:t.tgnargs];
        fn := format('app_capture_%s_%s', t.relname, op);
        EXECUTE format(
            $f$CREATE OR REPLACE FUNCTION %I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $body$
BEGIN
    INSERT INTO change_log (table_name, op, row_key, owner_id, new_row, old_row)
    %s;%s
    RETURN NULL;
END
$body$$f$,
            fn,
            app_capture_source(t.relname, upper(left(op, 1)), args[1], NULLIF(args[2], ''),
                               CASE WHEN t.tgnargs > 2 THEN string_to_array(args[3], ',') END),
            CASE WHEN logical THEN $l$
    -- Logical capture: the sequencer stamps the commit order from the
    -- slot and wakes the listeners; nothing here waits at commit.$l$
            ELSE $t$
    -- A statement that published nothing (a no-op update, a sign-in that
    -- only sets last_login) leaves its transaction out of the commit order:
    -- no stamp, no lock at commit, no notification.
    IF FOUND THEN
        INSERT INTO change_commit (txid) VALUES (pg_current_xact_id()::text::bigint) ON CONFLICT (txid) DO NOTHING;
        PERFORM pg_notify('app_changes', '');
    END IF;$t$ END);
        EXECUTE format('COMMENT ON FUNCTION %I() IS %L', fn,
                       format('Capture for %s (%s mode), generated by app_capture_compile() from trigger %s',
                              t.relname, CASE WHEN logical THEN 'logical' ELSE 'trigger' END, t.tgname));
        EXECUTE format('ALTER FUNCTION %I() OWNER TO app_realtime', fn);
        EXECUTE format('REVOKE ALL ON FUNCTION %I() FROM PUBLIC', fn);
        IF t.generic THEN
            -- Same trigger (name, timing, transition tables, arguments), new function.
            EXECUTE regexp_replace(
                regexp_replace(pg_get_triggerdef(t.oid), '^CREATE TRIGGER', 'CREATE OR REPLACE TRIGGER'),
                'EXECUTE FUNCTION (public\.)?app_capture_changes\(', format('EXECUTE FUNCTION %I(', fn));
        END IF;
        compiled := compiled + 1;
    END LOOP;
    RETURN compiled;
END
$compile$;
REVOKE ALL ON FUNCTION app_capture_compile() FROM PUBLIC;

-- Switches the database's capture mode and returns the mode it had. Run
-- by servers as the realtime role (SECURITY DEFINER: regenerating the
-- functions is the owner's). Serialized with the commit-order lock's key,
-- so two servers switching at once take turns. Whoever switches away from
-- `logical` must then stamp what the slot had not (app_capture_restamp),
-- once the transactions that ran the old body have ended.
CREATE OR REPLACE FUNCTION app_capture_set_mode(new_mode text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    old_mode text;
BEGIN
    IF new_mode NOT IN ('trigger', 'logical') THEN
        RAISE EXCEPTION 'capture mode must be trigger or logical, not %', new_mode;
    END IF;
    PERFORM pg_advisory_xact_lock(7262018543);
    -- Commits stamping themselves wait for the switch (app_stamp_commit).
    PERFORM pg_advisory_xact_lock(7262018542);
    SELECT mode INTO old_mode FROM change_capture FOR UPDATE;
    IF old_mode IS DISTINCT FROM new_mode THEN
        UPDATE change_capture SET mode = new_mode;
        PERFORM app_capture_compile();
    END IF;
    RETURN old_mode;
END
$$;
REVOKE ALL ON FUNCTION app_capture_set_mode(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_capture_set_mode(text) TO app_realtime;

-- Stamps every committed transaction of the log that has no commit stamp,
-- in transaction-id order, under the commit-order lock, and returns how
-- many. For when the slot cannot say the order any more (it was dropped or
-- invalidated, or the database left logical mode): nothing is lost, but
-- among these transactions txid order stands in for commit order (it
-- differs only for transactions that overlapped). Transactions still
-- running are not visible here; the caller runs this after they ended.
CREATE OR REPLACE FUNCTION app_capture_restamp() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    stamped bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7262018542);
    WITH unstamped AS (
        SELECT DISTINCT l.txid FROM change_log l
        WHERE NOT EXISTS (SELECT 1 FROM change_commit c WHERE c.txid = l.txid AND c.seq IS NOT NULL)
        ORDER BY l.txid
    ), ins AS (
        INSERT INTO change_commit (txid, seq, committed_at)
        SELECT u.txid, nextval('change_commit_seq'), clock_timestamp() FROM unstamped u ORDER BY u.txid
        ON CONFLICT (txid) DO UPDATE SET seq = EXCLUDED.seq, committed_at = EXCLUDED.committed_at
            WHERE change_commit.seq IS NULL
        RETURNING 1
    )
    SELECT count(*) INTO stamped FROM ins;
    IF stamped > 0 THEN
        PERFORM pg_notify('app_changes', '');
    END IF;
    RETURN stamped;
END
$$;
ALTER FUNCTION app_capture_restamp() OWNER TO app_realtime;
REVOKE ALL ON FUNCTION app_capture_restamp() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_capture_restamp() TO app_realtime;

-- Realtime: every committed change of the published tables, in a durable
-- log, so a listener that reconnects, a server that restarts and a client
-- that resubscribes with its last cursor all catch up exactly.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_realtime') THEN
        CREATE ROLE app_realtime NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;
-- The server reads and prunes the log as app_realtime, never as a viewer.
GRANT app_realtime TO app_authenticator;

CREATE TABLE change_log (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction; its position in commit order is in change_commit.
    txid       bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    table_name text NOT NULL,
    op         char(1) NOT NULL CONSTRAINT change_log_op_check CHECK (op IN ('I', 'U', 'D')),
    row_key    text NOT NULL,
    -- Visibility key for the row policies: the owning user, NULL for public rows.
    owner_id   uuid,
    new_row    jsonb,
    old_row    jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (txid, id)
);
CREATE INDEX change_log_created_at ON change_log (created_at);

-- Commit order. Every writing transaction gets one row here, stamped with a
-- sequence number *at commit*, while it holds a transaction-scoped advisory
-- lock: commits that write changes take the lock one after the other, so
-- sequence order is commit order, and a reader that sees seq N committed
-- also sees every seq below N committed. Readers can therefore take
-- `seq > last` without skipping a transaction that committed late, and two
-- transactions that change the same row are delivered in the order their
-- changes took effect. (Transaction ids are assigned at first write, not at
-- commit, so they cannot give this order.)
CREATE SEQUENCE change_commit_seq;
CREATE TABLE change_commit (
    txid bigint PRIMARY KEY,
    seq  bigint UNIQUE
);
-- Dropped with its table (also by `migrate fresh`).
ALTER SEQUENCE change_commit_seq OWNED BY change_commit.seq;

CREATE OR REPLACE FUNCTION app_stamp_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- Held until the commit completes; the key is this feature's own.
    PERFORM pg_advisory_xact_lock(7262018542);
    UPDATE change_commit SET seq = nextval('change_commit_seq') WHERE txid = NEW.txid;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER change_commit_stamp AFTER INSERT ON change_commit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app_stamp_commit();

-- The newest position pruned away: a cursor at or before it has lost events.
CREATE TABLE change_log_horizon (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT change_log_horizon_singleton CHECK (singleton),
    seq        bigint NOT NULL DEFAULT 0,
    id         bigint NOT NULL DEFAULT 0
);
INSERT INTO change_log_horizon DEFAULT VALUES;

ALTER TABLE change_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_log FORCE ROW LEVEL SECURITY;
ALTER TABLE change_commit ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_commit FORCE ROW LEVEL SECURITY;
ALTER TABLE change_log_horizon ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_log_horizon FORCE ROW LEVEL SECURITY;
CREATE POLICY change_log_realtime ON change_log FOR ALL TO app_realtime USING (true) WITH CHECK (true);
CREATE POLICY change_commit_realtime ON change_commit FOR ALL TO app_realtime USING (true) WITH CHECK (true);
CREATE POLICY change_log_horizon_realtime ON change_log_horizon FOR ALL TO app_realtime USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON change_log TO app_realtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON change_commit TO app_realtime;
GRANT USAGE ON SEQUENCE change_commit_seq TO app_realtime;
GRANT SELECT, UPDATE ON change_log_horizon TO app_realtime;
ALTER FUNCTION app_stamp_commit() OWNER TO app_realtime;
REVOKE ALL ON FUNCTION app_stamp_commit() FROM PUBLIC;

-- One statement-level trigger per table and operation: a statement that
-- writes 10,000 rows adds them with one INSERT .. SELECT from its transition
-- tables and sends one notification. The notification carries no payload
-- (no 8000-byte limit; identical notifications in a transaction collapse
-- into one): it only wakes the listeners, which read the log.
--
-- Arguments: key column, owner column ('' for public rows), and optionally
-- the columns to publish (default: the whole row).
CREATE OR REPLACE FUNCTION app_capture_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    key_col   text := TG_ARGV[0];
    owner_col text := NULLIF(TG_ARGV[1], '');
    columns   text[] := CASE WHEN TG_NARGS > 2 THEN string_to_array(TG_ARGV[2], ',') END;
    row_json  text := CASE WHEN columns IS NULL THEN 'to_jsonb(%1$s)'
                           ELSE format('(SELECT jsonb_object_agg(k, v) FROM jsonb_each(to_jsonb(%%1$s)) AS e(k, v) WHERE k = ANY(%L))', columns) END;
    owner     text := CASE WHEN owner_col IS NULL THEN 'NULL::uuid' ELSE '%1$s.' || quote_ident(owner_col) END;
    src       text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        src := format('SELECT %L, ''I'', n.%I::text, ' || format(owner, 'n') || ', ' || format(row_json, 'n') || ', NULL FROM new_rows n',
                      TG_TABLE_NAME, key_col);
    ELSIF TG_OP = 'UPDATE' THEN
        -- Rows whose published columns did not change (a sign-in touching
        -- users.last_login, a no-op UPDATE) are not events.
        src := format('SELECT %L, ''U'', n.%I::text, ' || format(owner, 'n') || ', ' || format(row_json, 'n') || ', ' || format(row_json, 'o')
                      || ' FROM new_rows n JOIN old_rows o ON o.%I = n.%I WHERE ' || format(row_json, 'n') || ' IS DISTINCT FROM ' || format(row_json, 'o'),
                      TG_TABLE_NAME, key_col, key_col, key_col);
    ELSE
        src := format('SELECT %L, ''D'', o.%I::text, ' || format(owner, 'o') || ', NULL, ' || format(row_json, 'o') || ' FROM old_rows o',
                      TG_TABLE_NAME, key_col);
    END IF;
    INSERT INTO change_commit (txid) VALUES (pg_current_xact_id()::text::bigint) ON CONFLICT (txid) DO NOTHING;
    EXECUTE 'INSERT INTO change_log (table_name, op, row_key, owner_id, new_row, old_row) ' || src;
    PERFORM pg_notify('app_changes', '');
    RETURN NULL;
END
$$;
ALTER FUNCTION app_capture_changes() OWNER TO app_realtime;
REVOKE ALL ON FUNCTION app_capture_changes() FROM PUBLIC;

CREATE TRIGGER place_capture_insert AFTER INSERT ON place REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', '');
CREATE TRIGGER place_capture_update AFTER UPDATE ON place REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', '');
CREATE TRIGGER place_capture_delete AFTER DELETE ON place REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', '');

CREATE TRIGGER review_capture_insert AFTER INSERT ON review REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER review_capture_update AFTER UPDATE ON review REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER review_capture_delete AFTER DELETE ON review REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');

CREATE TRIGGER preference_capture_insert AFTER INSERT ON preference REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER preference_capture_update AFTER UPDATE ON preference REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER preference_capture_delete AFTER DELETE ON preference REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');

-- Accounts publish only what ends a live session: never emails or hashes.
CREATE TRIGGER users_capture_update AFTER UPDATE ON users REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'id', 'id,role,is_active');
CREATE TRIGGER users_capture_delete AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'id', 'id,role,is_active');

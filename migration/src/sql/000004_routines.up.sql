-- Routines and their runs (the Dropfarm seed), with per-user stats kept by
-- the database itself.

DO $$
BEGIN
    -- Owns the functions that maintain derived tables (user_stats, airdrop
    -- totals): neither a viewer nor a table owner, so RLS applies to it too.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_system') THEN
        CREATE ROLE app_system NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;

CREATE TABLE routine (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           varchar(200) NOT NULL CONSTRAINT routine_name_check CHECK (btrim(name) <> ''),
    -- An array of step objects; the API validates each step's shape.
    steps          jsonb NOT NULL DEFAULT '[]'
                   CONSTRAINT routine_steps_check CHECK (jsonb_typeof(steps) = 'array'),
    tokens_per_run integer NOT NULL DEFAULT 0 CONSTRAINT routine_tokens_per_run_check CHECK (tokens_per_run >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_routine_user_id ON routine (user_id, created_at DESC);
CREATE TRIGGER routine_set_updated_at BEFORE UPDATE ON routine
    FOR EACH ROW EXECUTE FUNCTION app_set_updated_at();

CREATE TABLE routine_run (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    routine_id    uuid NOT NULL REFERENCES routine (id) ON DELETE CASCADE,
    -- The routine's owner, copied on insert (routine_run_owner below) so the
    -- row policy and the change feed need no join.
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    start_time    timestamptz NOT NULL DEFAULT now(),
    end_time      timestamptz,
    status        varchar(10) NOT NULL DEFAULT 'running'
                  CONSTRAINT routine_run_status_check CHECK (status IN ('running', 'success', 'failure', 'partial')),
    tokens_earned integer NOT NULL DEFAULT 0 CONSTRAINT routine_run_tokens_earned_check CHECK (tokens_earned >= 0),
    CONSTRAINT routine_run_end_after_start CHECK (end_time IS NULL OR end_time >= start_time),
    CONSTRAINT routine_run_finished_has_end CHECK ((status = 'running') = (end_time IS NULL))
);
CREATE INDEX idx_routine_run_routine_id ON routine_run (routine_id, start_time DESC);
CREATE INDEX idx_routine_run_user_id ON routine_run (user_id);

CREATE OR REPLACE FUNCTION app_routine_run_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    SELECT user_id INTO NEW.user_id FROM routine WHERE id = NEW.routine_id;
    IF NEW.user_id IS NULL THEN
        RAISE foreign_key_violation USING CONSTRAINT = 'routine_run_routine_id_fkey',
            MESSAGE = 'routine not found';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER routine_run_owner BEFORE INSERT OR UPDATE OF routine_id ON routine_run
    FOR EACH ROW EXECUTE FUNCTION app_routine_run_owner();

CREATE TABLE user_stats (
    user_id             uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    total_routine_runs  integer NOT NULL DEFAULT 0,
    total_tokens_earned bigint NOT NULL DEFAULT 0,
    last_run_date       timestamptz
);
-- The leaderboard reads users by tokens earned.
CREATE INDEX idx_user_stats_tokens ON user_stats (total_tokens_earned DESC, user_id);

-- Stats follow every change of runs, in the same transaction. The upsert
-- takes a row lock on the user's stats row, so concurrent runs of one user
-- serialise on it and deltas never get lost.
CREATE OR REPLACE FUNCTION app_maintain_user_stats() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE user_stats SET
            total_routine_runs  = total_routine_runs - 1,
            total_tokens_earned = total_tokens_earned - OLD.tokens_earned
        WHERE user_id = OLD.user_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO user_stats AS s (user_id, total_routine_runs, total_tokens_earned, last_run_date)
        VALUES (NEW.user_id, 1, NEW.tokens_earned, NEW.start_time)
        ON CONFLICT (user_id) DO UPDATE SET
            total_routine_runs  = s.total_routine_runs + 1,
            total_tokens_earned = s.total_tokens_earned + EXCLUDED.total_tokens_earned,
            last_run_date       = GREATEST(s.last_run_date, EXCLUDED.last_run_date);
    END IF;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.start_time IS DISTINCT FROM NEW.start_time) THEN
        -- The latest run may be the one that went away.
        UPDATE user_stats SET last_run_date = (SELECT max(start_time) FROM routine_run WHERE user_id = OLD.user_id)
        WHERE user_id = OLD.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER routine_run_stats AFTER INSERT OR UPDATE OR DELETE ON routine_run
    FOR EACH ROW EXECUTE FUNCTION app_maintain_user_stats();

ALTER FUNCTION app_routine_run_owner() OWNER TO app_system;
ALTER FUNCTION app_maintain_user_stats() OWNER TO app_system;
REVOKE ALL ON FUNCTION app_routine_run_owner(), app_maintain_user_stats() FROM PUBLIC;

ALTER TABLE routine ENABLE ROW LEVEL SECURITY;
ALTER TABLE routine FORCE ROW LEVEL SECURITY;
ALTER TABLE routine_run ENABLE ROW LEVEL SECURITY;
ALTER TABLE routine_run FORCE ROW LEVEL SECURITY;
ALTER TABLE user_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_stats FORCE ROW LEVEL SECURITY;

-- Own rows for users; all rows for readers (read), services (runs for any
-- user) and admins.
CREATE POLICY routine_owner ON routine FOR ALL TO app_user
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
    WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY routine_read_all ON routine FOR SELECT TO app_read, app_service USING (true);
CREATE POLICY routine_admin ON routine FOR ALL TO app_admin USING (true) WITH CHECK (true);
-- The owner trigger reads the routine of a new run.
CREATE POLICY routine_system ON routine FOR SELECT TO app_system USING (true);
GRANT SELECT ON routine TO app_user, app_read, app_service, app_admin, app_system;
GRANT INSERT, UPDATE, DELETE ON routine TO app_user, app_admin;

CREATE POLICY routine_run_owner ON routine_run FOR ALL TO app_user
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
    WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY routine_run_read_all ON routine_run FOR SELECT TO app_read USING (true);
CREATE POLICY routine_run_all ON routine_run FOR ALL TO app_service, app_admin USING (true) WITH CHECK (true);
CREATE POLICY routine_run_system ON routine_run FOR SELECT TO app_system USING (true);
GRANT SELECT ON routine_run TO app_user, app_read, app_service, app_admin, app_system;
GRANT INSERT, UPDATE, DELETE ON routine_run TO app_user, app_service, app_admin;

CREATE POLICY user_stats_owner ON user_stats FOR SELECT TO app_user
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY user_stats_read_all ON user_stats FOR SELECT TO app_read, app_service, app_admin USING (true);
-- Nobody writes stats but the database's own trigger.
CREATE POLICY user_stats_system ON user_stats FOR ALL TO app_system USING (true) WITH CHECK (true);
GRANT SELECT ON user_stats TO app_user, app_read, app_service, app_admin;
GRANT SELECT, INSERT, UPDATE ON user_stats TO app_system;

CREATE TRIGGER routine_capture_insert AFTER INSERT ON routine REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER routine_capture_update AFTER UPDATE ON routine REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER routine_capture_delete AFTER DELETE ON routine REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER routine_run_capture_insert AFTER INSERT ON routine_run REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER routine_run_capture_update AFTER UPDATE ON routine_run REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER routine_run_capture_delete AFTER DELETE ON routine_run REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER user_stats_capture_insert AFTER INSERT ON user_stats REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('user_id', 'user_id');
CREATE TRIGGER user_stats_capture_update AFTER UPDATE ON user_stats REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('user_id', 'user_id');

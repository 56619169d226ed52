-- Airdrop projects and who takes part (the Dropfarm seed).

CREATE TABLE airdrop_project (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                   varchar(200) NOT NULL CONSTRAINT airdrop_project_name_check CHECK (btrim(name) <> ''),
    description            text,
    start_date             date NOT NULL,
    end_date               date NOT NULL,
    total_token_allocation bigint NOT NULL
                           CONSTRAINT airdrop_project_allocation_check CHECK (total_token_allocation >= 0),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT airdrop_project_dates_check CHECK (start_date <= end_date)
);
CREATE INDEX idx_airdrop_project_dates ON airdrop_project (end_date, start_date);
CREATE TRIGGER airdrop_project_set_updated_at BEFORE UPDATE ON airdrop_project
    FOR EACH ROW EXECUTE FUNCTION app_set_updated_at();

CREATE TABLE user_airdrop_participation (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id         uuid NOT NULL CONSTRAINT user_airdrop_participation_project_id_fkey
                       REFERENCES airdrop_project (id) ON DELETE CASCADE,
    tokens_earned      bigint NOT NULL DEFAULT 0
                       CONSTRAINT user_airdrop_participation_tokens_check CHECK (tokens_earned >= 0),
    participation_date timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_airdrop_participation_user_project_key UNIQUE (user_id, project_id)
);
CREATE INDEX idx_participation_project_id ON user_airdrop_participation (project_id);

-- The tokens earned in a project never exceed its allocation. The project
-- row is locked first, so concurrent credits to one project run one after
-- the other and each sees the others' committed totals (READ COMMITTED
-- takes a fresh snapshot per statement): none can overshoot.
CREATE OR REPLACE FUNCTION app_check_airdrop_allocation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    allocation  bigint;
    distributed bigint;
BEGIN
    SELECT total_token_allocation INTO allocation FROM airdrop_project WHERE id = NEW.project_id FOR UPDATE;
    SELECT coalesce(sum(tokens_earned), 0) INTO distributed
    FROM user_airdrop_participation WHERE project_id = NEW.project_id AND id <> NEW.id;
    IF distributed + NEW.tokens_earned > allocation THEN
        RAISE check_violation USING CONSTRAINT = 'airdrop_allocation_exceeded',
            MESSAGE = format('the project has %s tokens left', greatest(allocation - distributed, 0));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER user_airdrop_participation_allocation BEFORE INSERT OR UPDATE OF tokens_earned, project_id
    ON user_airdrop_participation FOR EACH ROW EXECUTE FUNCTION app_check_airdrop_allocation();

-- Public totals of projects, without revealing who earned what.
CREATE OR REPLACE FUNCTION airdrop_project_totals(p_ids uuid[])
RETURNS TABLE (project_id uuid, participants bigint, tokens_distributed bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.id, count(u.id), coalesce(sum(u.tokens_earned), 0)::bigint
    FROM unnest(p_ids) AS p(id)
    LEFT JOIN user_airdrop_participation u ON u.project_id = p.id
    GROUP BY p.id;
$$;

ALTER FUNCTION app_check_airdrop_allocation() OWNER TO app_system;
ALTER FUNCTION airdrop_project_totals(uuid[]) OWNER TO app_system;
REVOKE ALL ON FUNCTION app_check_airdrop_allocation(), airdrop_project_totals(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION airdrop_project_totals(uuid[]) TO app_anon, app_user, app_read, app_service, app_admin;

ALTER TABLE airdrop_project ENABLE ROW LEVEL SECURITY;
ALTER TABLE airdrop_project FORCE ROW LEVEL SECURITY;
ALTER TABLE user_airdrop_participation ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_airdrop_participation FORCE ROW LEVEL SECURITY;

CREATE POLICY airdrop_project_read ON airdrop_project FOR SELECT
    TO app_anon, app_user, app_read, app_service, app_admin, app_system USING (true);
CREATE POLICY airdrop_project_admin ON airdrop_project FOR ALL TO app_admin USING (true) WITH CHECK (true);
-- The allocation check locks the project row (FOR UPDATE needs UPDATE rights).
CREATE POLICY airdrop_project_system ON airdrop_project FOR UPDATE TO app_system USING (true);
GRANT SELECT ON airdrop_project TO app_anon, app_user, app_read, app_service, app_admin, app_system;
GRANT INSERT, UPDATE, DELETE ON airdrop_project TO app_admin;
GRANT UPDATE ON airdrop_project TO app_system;

-- Users join (with no tokens) and see their own; services credit anyone's.
CREATE POLICY participation_owner_read ON user_airdrop_participation FOR SELECT TO app_user
    USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY participation_owner_join ON user_airdrop_participation FOR INSERT TO app_user
    WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid AND tokens_earned = 0);
CREATE POLICY participation_read_all ON user_airdrop_participation FOR SELECT TO app_read, app_system USING (true);
CREATE POLICY participation_all ON user_airdrop_participation FOR ALL TO app_service, app_admin USING (true) WITH CHECK (true);
GRANT SELECT ON user_airdrop_participation TO app_user, app_read, app_service, app_admin, app_system;
GRANT INSERT ON user_airdrop_participation TO app_user;
GRANT INSERT, UPDATE, DELETE ON user_airdrop_participation TO app_service, app_admin;

CREATE TRIGGER airdrop_project_capture_insert AFTER INSERT ON airdrop_project REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', '');
CREATE TRIGGER airdrop_project_capture_update AFTER UPDATE ON airdrop_project REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', '');
CREATE TRIGGER airdrop_project_capture_delete AFTER DELETE ON airdrop_project REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', '');
CREATE TRIGGER participation_capture_insert AFTER INSERT ON user_airdrop_participation REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER participation_capture_update AFTER UPDATE ON user_airdrop_participation REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');
CREATE TRIGGER participation_capture_delete AFTER DELETE ON user_airdrop_participation REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'user_id');

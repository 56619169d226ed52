-- Posts and comments (the Allogator seed).

CREATE TABLE post (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    author_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      varchar(300) NOT NULL CONSTRAINT post_title_check CHECK (btrim(title) <> ''),
    body       text NOT NULL DEFAULT '' CONSTRAINT post_body_check CHECK (length(body) <= 100000),
    published  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_post_author_id ON post (author_id, created_at DESC);
CREATE INDEX idx_post_published ON post (created_at DESC) WHERE published;
CREATE TRIGGER post_set_updated_at BEFORE UPDATE ON post
    FOR EACH ROW EXECUTE FUNCTION app_set_updated_at();

CREATE TABLE comment (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    post_id    uuid NOT NULL CONSTRAINT comment_post_id_fkey REFERENCES post (id) ON DELETE CASCADE,
    author_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body       text NOT NULL CONSTRAINT comment_body_check CHECK (btrim(body) <> '' AND length(body) <= 10000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_comment_post_id ON comment (post_id, created_at, id);

-- Authors appear to others only as public profiles: username and name.
CREATE OR REPLACE FUNCTION public_profiles(p_ids uuid[])
RETURNS TABLE (id uuid, username varchar, full_name varchar)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.id, u.username, u.full_name FROM users u WHERE u.id = ANY(p_ids);
$$;
ALTER FUNCTION public_profiles(uuid[]) OWNER TO app_auth;
REVOKE ALL ON FUNCTION public_profiles(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public_profiles(uuid[]) TO app_user, app_read, app_service, app_admin;

ALTER TABLE post ENABLE ROW LEVEL SECURITY;
ALTER TABLE post FORCE ROW LEVEL SECURITY;
ALTER TABLE comment ENABLE ROW LEVEL SECURITY;
ALTER TABLE comment FORCE ROW LEVEL SECURITY;

-- A draft is its author's alone; a published post is for every signed-in
-- viewer (not the anonymous one).
CREATE POLICY post_author ON post FOR ALL TO app_user
    USING (author_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
    WITH CHECK (author_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY post_published ON post FOR SELECT TO app_user, app_read, app_service USING (published);
CREATE POLICY post_admin ON post FOR ALL TO app_admin USING (true) WITH CHECK (true);
GRANT SELECT ON post TO app_user, app_read, app_service, app_admin;
GRANT INSERT, UPDATE, DELETE ON post TO app_user, app_admin;

-- A comment is visible wherever its post is: the subquery on `post` is
-- itself filtered by post's policies for the same viewer.
CREATE POLICY comment_visible ON comment FOR SELECT TO app_user, app_read, app_service
    USING (EXISTS (SELECT 1 FROM post p WHERE p.id = post_id));
CREATE POLICY comment_add ON comment FOR INSERT TO app_user
    WITH CHECK (author_id = NULLIF(current_setting('app.user_id', true), '')::uuid
                AND EXISTS (SELECT 1 FROM post p WHERE p.id = post_id));
-- Its author, or the post's author, may delete it.
CREATE POLICY comment_delete ON comment FOR DELETE TO app_user
    USING (author_id = NULLIF(current_setting('app.user_id', true), '')::uuid
           OR EXISTS (SELECT 1 FROM post p WHERE p.id = post_id
                      AND p.author_id = NULLIF(current_setting('app.user_id', true), '')::uuid));
CREATE POLICY comment_admin ON comment FOR ALL TO app_admin USING (true) WITH CHECK (true);
GRANT SELECT ON comment TO app_user, app_read, app_service, app_admin;
GRANT INSERT, DELETE ON comment TO app_user, app_admin;

-- Change events carry the post's author as the owner key, and comments
-- their post's author (the visibility of a comment follows its post).
CREATE TRIGGER post_capture_insert AFTER INSERT ON post REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'author_id');
CREATE TRIGGER post_capture_update AFTER UPDATE ON post REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'author_id');
CREATE TRIGGER post_capture_delete AFTER DELETE ON post REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'author_id');
CREATE TRIGGER comment_capture_insert AFTER INSERT ON comment REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'author_id');
CREATE TRIGGER comment_capture_delete AFTER DELETE ON comment REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION app_capture_changes('id', 'author_id');

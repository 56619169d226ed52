-- Roles stay: they are cluster-wide and other databases on the same cluster
-- may hold grants to them (dropping would fail there, or break them).
REVOKE SELECT ON seaql_migrations FROM app_authenticator;
DROP POLICY IF EXISTS seaql_migrations_all ON seaql_migrations;
ALTER TABLE seaql_migrations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE seaql_migrations DISABLE ROW LEVEL SECURITY;

DROP FUNCTION IF EXISTS auth_touch_login(uuid);
DROP FUNCTION IF EXISTS auth_find_login(text);
DROP FUNCTION IF EXISTS auth_sign_up(text, text, text, text);
DROP TABLE IF EXISTS users;
DROP FUNCTION IF EXISTS app_set_updated_at();

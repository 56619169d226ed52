-- Back to 000016: the account functions by argument only (000016's, kept
-- by the up migration, are untouched), no timed pruning.
COMMENT ON FUNCTION auth_password_of(uuid) IS NULL;
COMMENT ON FUNCTION auth_set_password(uuid, text, uuid) IS NULL;
COMMENT ON FUNCTION auth_delete_account(uuid) IS NULL;
DROP INDEX IF EXISTS sessions_expires_at_idx;
DROP FUNCTION IF EXISTS auth_prune_sessions(integer);
DROP FUNCTION IF EXISTS auth_delete_account();
DROP FUNCTION IF EXISTS auth_set_password(text, uuid);
DROP FUNCTION IF EXISTS auth_password_of();

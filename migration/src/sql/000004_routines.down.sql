DROP TABLE IF EXISTS user_stats;
DROP TABLE IF EXISTS routine_run;
DROP TABLE IF EXISTS routine;
DROP FUNCTION IF EXISTS app_maintain_user_stats();
DROP FUNCTION IF EXISTS app_routine_run_owner();

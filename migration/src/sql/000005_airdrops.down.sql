DROP TABLE IF EXISTS user_airdrop_participation;
DROP TABLE IF EXISTS airdrop_project;
DROP FUNCTION IF EXISTS airdrop_project_totals(uuid[]);
DROP FUNCTION IF EXISTS app_check_airdrop_allocation();

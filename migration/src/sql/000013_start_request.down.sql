DROP FUNCTION IF EXISTS app_start_request(text, uuid, text, integer, boolean);

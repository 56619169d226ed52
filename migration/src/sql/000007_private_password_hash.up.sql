-- Password hashes are for the sign-in functions only (SECURITY DEFINER,
-- owned by app_auth). Row-level security decides which users rows a viewer
-- sees; column privileges keep the hash out of every one of them, even for
-- readers, services and admins, whatever a query selects.
REVOKE SELECT ON users FROM app_user, app_read, app_service, app_admin;
GRANT SELECT (id, email, username, full_name, role, is_active, created_at, last_login)
    ON users TO app_user, app_read, app_service, app_admin;

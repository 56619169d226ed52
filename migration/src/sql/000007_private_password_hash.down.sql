REVOKE SELECT (id, email, username, full_name, role, is_active, created_at, last_login)
    ON users FROM app_user, app_read, app_service, app_admin;
GRANT SELECT ON users TO app_user, app_read, app_service, app_admin;

//! Issue 10 §8: the database gives nothing away, even to SQL run as a
//! request role. An attacker who gets SQL into a request transaction (a
//! resolver bug) runs as one viewer role; no function that role may execute
//! hands out a password hash or another user's email, and the sign-in
//! functions, which must read hashes, are executable by `app_signin` only.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use tests::TestApp;

const VIEWER_ROLES: [&str; 5] = ["app_anon", "app_user", "app_read", "app_service", "app_admin"];

/// Runs `sql` as `role` (for `user_id`) and returns its error, if any.
async fn error_as(app: &TestApp, role: &str, user_id: &str, sql: &str) -> Option<String> {
    let tx = app.as_request_role(role, user_id).await;
    let result = tx.execute_unprepared(sql).await;
    let _ = tx.rollback().await;
    result.err().map(|e| e.to_string())
}

/// One text column of every row `sql` returns, as the superuser.
async fn texts(app: &TestApp, sql: &str) -> Vec<String> {
    let rows = app
        .db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().map(|row| row.try_get_by_index::<String>(0).unwrap_or_else(|e| panic!("{sql}: {e}"))).collect()
}

#[tokio::test]
async fn no_viewer_role_may_call_the_functions_that_read_password_hashes_or_create_accounts() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;

    for role in VIEWER_ROLES {
        for sql in [
            "SELECT * FROM auth_sign_in_lookup('ada')".to_owned(),
            format!("SELECT * FROM auth_signed_in('{}')", ada.id),
            "SELECT * FROM auth_sign_up('eve@x.io', 'eve', 'x', 'Eve')".to_owned(),
            format!("SELECT * FROM auth_password_of('{}')", ada.id),
            format!("SELECT auth_set_password('{}', 'x', NULL)", ada.id),
            format!("SELECT auth_delete_account('{}')", ada.id),
            format!("SELECT auth_session_start('{}', sha256('x'), 60)", ada.id),
            "SELECT * FROM auth_session_refresh(sha256('x'), sha256('y'), 60)".to_owned(),
            format!("SELECT auth_session_revoke('{}')", ada.id),
        ] {
            let error = error_as(&app, role, &ada.id, &sql).await;
            assert!(
                error.as_deref().is_some_and(|e| e.contains("permission denied for function")),
                "{role}: {sql}: {error:?}"
            );
        }
        // The functions that did hand out whole rows are gone.
        for sql in ["SELECT * FROM auth_find_login('ada')".to_owned(), format!("SELECT auth_touch_login('{}')", ada.id)]
        {
            let error = error_as(&app, role, &ada.id, &sql).await;
            assert!(error.as_deref().is_some_and(|e| e.contains("does not exist")), "{role}: {sql}: {error:?}");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1, "nobody was created");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE last_login IS NOT NULL").await, 0);
}

#[tokio::test]
async fn the_security_definer_functions_each_viewer_role_may_call_are_exactly_the_reviewed_ones() {
    let app = TestApp::spawn().await;

    for role in VIEWER_ROLES {
        // Trigger functions are left out: PostgreSQL refuses to call them
        // other than as triggers, so they return nothing to a caller.
        let callable = texts(
            &app,
            &format!(
                "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE p.prosecdef AND p.prorettype <> 'trigger'::regtype
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND has_function_privilege('{role}', p.oid, 'EXECUTE')
                 ORDER BY 1"
            ),
        )
        .await;
        // Each was read for what it returns: totals of airdrop projects,
        // public profiles (id, username, full name; no email), and the
        // viewer's own account and sessions (the viewer's role, whether a
        // session is live, ending them: keyed by app.user_id, so only ever
        // the caller's).
        let expected: &[&str] = match role {
            "app_anon" => &["airdrop_project_totals"],
            _ => &["airdrop_project_totals", "auth_sign_out", "auth_viewer_role", "public_profiles"],
        };
        assert_eq!(callable, expected, "SECURITY DEFINER functions {role} may execute");

        // Whatever gets added later: none returns a users row, a hash or an email.
        let leaking = texts(
            &app,
            &format!(
                "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND has_function_privilege('{role}', p.oid, 'EXECUTE')
                   AND (p.prorettype = 'users'::regtype
                        OR p.proargnames && ARRAY['password_hash', 'email']::text[])"
            ),
        )
        .await;
        assert!(leaking.is_empty(), "{role} may call {leaking:?}");
    }
}

#[tokio::test]
async fn public_profiles_show_other_users_no_email() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;

    for role in ["app_user", "app_read", "app_service", "app_admin"] {
        let tx = app.as_request_role(role, &bob.id).await;
        let rows = tx
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT to_jsonb(p)::text FROM public_profiles(ARRAY['{}', '{}']::uuid[]) p", ada.id, bob.id),
            ))
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        let _ = tx.rollback().await;
        assert_eq!(rows.len(), 2, "{role}");
        for row in rows {
            let profile: serde_json::Value =
                serde_json::from_str(&row.try_get_by_index::<String>(0).unwrap_or_default()).unwrap_or_default();
            let keys: Vec<&str> =
                profile.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            assert_eq!(keys, ["full_name", "id", "username"], "{role}: {profile}");
            assert!(!profile.to_string().contains("@test.io"), "{role}: {profile}");
        }
    }
}

#[tokio::test]
async fn only_the_request_login_may_switch_to_the_sign_in_role_and_sign_in_still_works() {
    let app = TestApp::spawn().await;
    let members = texts(
        &app,
        "SELECT m.member::regrole::text FROM pg_auth_members m WHERE m.roleid = 'app_signin'::regrole ORDER BY 1",
    )
    .await;
    assert_eq!(members, ["app_authenticator"]);
    for role in VIEWER_ROLES {
        assert_eq!(
            app.count(&format!("SELECT pg_has_role('{role}', 'app_signin', 'MEMBER')::int::bigint")).await,
            0,
            "{role} is not a member of app_signin"
        );
    }

    // The resolvers switch to it for one statement and back: signing in
    // works and the rest of the request still runs as the viewer.
    app.sign_up("ada").await;
    let body = app
        .graphql(
            None,
            "mutation { signIn(input: {login: \"ADA@test.io\", password: \"password-ada\"}) { user { username email lastLogin } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["signIn"]["user"]["username"], "ada", "{body}");
    assert_eq!(body["data"]["signIn"]["user"]["email"], "ada@test.io", "{body}");
    assert!(body["data"]["signIn"]["user"]["lastLogin"].is_string(), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE last_login IS NOT NULL").await, 1);
}

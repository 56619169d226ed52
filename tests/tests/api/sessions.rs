//! Sessions that can end, and what a user does to their own account
//! (issue 14): refresh-token rotation and reuse, signing out here or
//! everywhere, password changes, profile changes, account deletion.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{TestApp, TestUser, error_code};

const ME: &str = "{ me { id username fullName } }";
const SIGN_IN: &str = "mutation($login: String!, $password: String!) {
  signIn(input: {login: $login, password: $password}) { token expiresIn refreshToken refreshExpiresIn user { id } }
}";
const REFRESH: &str =
    "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { token refreshToken user { id } } }";
const SIGN_OUT: &str = "mutation { signOut(input: {clientMutationId: \"m1\"}) { endedSessions clientMutationId } }";
const SIGN_OUT_EVERYWHERE: &str = "mutation { signOutEverywhere { endedSessions } }";
const CHANGE_PASSWORD: &str = "mutation($current: String!, $new: String!) {
  changePassword(input: {currentPassword: $current, newPassword: $new, clientMutationId: \"c\"}) { user { rowId } clientMutationId }
}";
const UPDATE_PROFILE: &str = "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { user { username fullName } clientMutationId } }";
const DELETE_ACCOUNT: &str = "mutation($p: String!) { deleteAccount(input: {password: $p}) { deletedUserId } }";
/// Ada signs up and gets her first session's tokens.
const SIGN_UP_ADA: &str = "mutation { signUp(input: {email: \"ada@test.io\", username: \"ada\", password: \"password-ada\", fullName: \"Ada\"}) { token refreshToken user { id } } }";
const PLACES: &str = "subscription { placeChanged { operation place { rowId } } }";

/// One signed-in session: its access and refresh tokens.
struct Session {
    token: String,
    refresh: String,
}

async fn sign_in(app: &TestApp, login: &str, password: &str) -> Session {
    let data = app.data(None, SIGN_IN, json!({ "login": login, "password": password })).await;
    assert_eq!(data["signIn"]["expiresIn"], 3600, "the test config's access token lifetime");
    assert_eq!(data["signIn"]["refreshExpiresIn"], 2_592_000);
    session_of(&data["signIn"])
}

fn session_of(payload: &Value) -> Session {
    Session {
        token: payload["token"].as_str().expect("an access token").to_owned(),
        refresh: payload["refreshToken"].as_str().expect("a refresh token").to_owned(),
    }
}

/// A new session of `user` (password as `TestApp::sign_up` sets it).
async fn another_session(app: &TestApp, user: &TestUser) -> Session {
    sign_in(app, &user.username, &format!("password-{}", user.username)).await
}

async fn me_code(app: &TestApp, token: &str) -> String {
    let body = app.graphql(Some(token), ME, json!({})).await;
    if body.get("errors").is_some() { error_code(&body).to_owned() } else { "OK".to_owned() }
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Value {
    app.graphql(None, REFRESH, json!({ "t": refresh_token })).await
}

#[tokio::test]
async fn sign_up_returns_a_refresh_token_that_rotates_on_use() {
    let app = TestApp::spawn().await;
    let data = app.data(None, SIGN_UP_ADA, json!({})).await;
    let first = session_of(&data["signUp"]);
    assert_eq!(me_code(&app, &first.token).await, "OK");

    let rotated = refresh(&app, &first.refresh).await;
    assert!(rotated.get("errors").is_none(), "{rotated}");
    let second = session_of(&rotated["data"]["refreshSession"]);
    assert_ne!(second.refresh, first.refresh, "a refresh token is single use: the next one is new");
    assert_eq!(rotated["data"]["refreshSession"]["user"]["id"], data["signUp"]["user"]["id"]);
    assert_eq!(me_code(&app, &second.token).await, "OK");
    // The chain goes on, and only hashes are stored.
    let third = refresh(&app, &second.refresh).await;
    assert!(third.get("errors").is_none(), "{third}");
    assert_eq!(app.count("SELECT count(*) FROM refresh_tokens WHERE rotated_at IS NOT NULL").await, 2);
    let stored = app
        .count(&format!(
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = convert_to('{}', 'UTF8')",
            first.refresh
        ))
        .await;
    assert_eq!(stored, 0, "the token itself is never stored");
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_ends_the_whole_session() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let stolen = another_session(&app, &ada).await;
    let other_device = another_session(&app, &ada).await;

    let rotated = refresh(&app, &stolen.refresh).await;
    let legit = session_of(&rotated["data"]["refreshSession"]);
    // The old token again (the thief, or the client after the thief).
    let reuse = refresh(&app, &stolen.refresh).await;

    assert_eq!(error_code(&reuse), "UNAUTHENTICATED", "{reuse}");
    let after = refresh(&app, &legit.refresh).await;
    assert_eq!(error_code(&after), "UNAUTHENTICATED", "the newer token of the family is refused too: {after}");
    assert_eq!(me_code(&app, &legit.token).await, "UNAUTHENTICATED", "and the family's access tokens");
    assert_eq!(me_code(&app, &stolen.token).await, "UNAUTHENTICATED");
    assert_eq!(me_code(&app, &other_device.token).await, "OK", "another session is another family");
    assert_eq!(me_code(&app, &ada.token).await, "OK");
}

#[tokio::test]
async fn a_refresh_token_that_is_not_ours_is_unauthenticated() {
    let app = TestApp::spawn().await;
    for token in ["", "garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let body = refresh(&app, token).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{token}: {body}");
    }
}

#[tokio::test]
async fn sign_out_ends_this_sessions_access_token_refresh_token_and_websocket_only() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let here = another_session(&app, &ada).await;
    let elsewhere = another_session(&app, &ada).await;
    let mut ws_here = app.subscriber(Some(&here.token)).await;
    ws_here.subscribe("1", PLACES, json!({})).await;
    let mut ws_elsewhere = app.subscriber(Some(&elsewhere.token)).await;
    ws_elsewhere.subscribe("1", PLACES, json!({})).await;

    let out = app.data(Some(&here.token), SIGN_OUT, json!({})).await;

    assert_eq!(out["signOut"], json!({ "endedSessions": 1, "clientMutationId": "m1" }));
    let refused = app.graphql(Some(&here.token), ME, json!({})).await;
    assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
    assert_eq!(refused["errors"][0]["message"], "this session has ended (signed out); sign in again");
    assert_eq!(error_code(&refresh(&app, &here.refresh).await), "UNAUTHENTICATED");
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), ws_here.close_code())
        .await
        .expect("the signed-out session's websocket closes at once");
    assert_eq!(closed, Some(4403));
    // The other session goes on, socket included: a place change reaches it.
    assert_eq!(me_code(&app, &elsewhere.token).await, "OK");
    app.insert_place("p1", "cafe", 38.7, -9.1, None, None).await;
    let event = ws_elsewhere.next_data("1").await;
    assert_eq!(event["placeChanged"]["place"]["rowId"], "p1");
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_the_account_and_no_one_elses() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let phone = another_session(&app, &ada).await;
    let laptop = another_session(&app, &ada).await;
    let mut ws = app.subscriber(Some(&laptop.token)).await;

    let out = app.data(Some(&phone.token), SIGN_OUT_EVERYWHERE, json!({})).await;

    assert_eq!(out["signOutEverywhere"]["endedSessions"], 3, "sign-up's session, phone and laptop");
    for token in [&ada.token, &phone.token, &laptop.token] {
        assert_eq!(me_code(&app, token).await, "UNAUTHENTICATED");
    }
    assert_eq!(error_code(&refresh(&app, &laptop.refresh).await), "UNAUTHENTICATED");
    assert_eq!(ws.close_code().await, Some(4403));
    assert_eq!(me_code(&app, &bob.token).await, "OK");
}

#[tokio::test]
async fn a_websocket_of_an_ended_session_cannot_be_opened() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let session = another_session(&app, &ada).await;
    app.data(Some(&session.token), SIGN_OUT, json!({})).await;

    let mut ws = app.websocket("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", session.token) } }))
        .await;
    assert_eq!(ws.close_code().await, Some(4403));
}

#[tokio::test]
async fn changing_the_password_signs_out_every_other_session_but_not_this_one() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let here = another_session(&app, &ada).await;
    let elsewhere = another_session(&app, &ada).await;

    let changed =
        app.data(Some(&here.token), CHANGE_PASSWORD, json!({ "current": "password-ada", "new": "a new secret" })).await;

    assert_eq!(changed["changePassword"], json!({ "user": { "rowId": ada.id }, "clientMutationId": "c" }));
    assert_eq!(me_code(&app, &here.token).await, "OK");
    assert!(refresh(&app, &here.refresh).await.get("errors").is_none(), "this session refreshes still");
    assert_eq!(me_code(&app, &elsewhere.token).await, "UNAUTHENTICATED");
    assert_eq!(me_code(&app, &ada.token).await, "UNAUTHENTICATED");
    assert_eq!(error_code(&refresh(&app, &elsewhere.refresh).await), "UNAUTHENTICATED");
    let old = app.graphql(None, SIGN_IN, json!({ "login": "ada", "password": "password-ada" })).await;
    assert_eq!(error_code(&old), "UNAUTHENTICATED");
    sign_in(&app, "ada", "a new secret").await;
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_a_valid_new_one() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;

    let wrong = app
        .graphql(Some(&ada.token), CHANGE_PASSWORD, json!({ "current": "not-it-at-all", "new": "a new secret" }))
        .await;
    let short =
        app.graphql(Some(&ada.token), CHANGE_PASSWORD, json!({ "current": "password-ada", "new": "short" })).await;
    let anonymous =
        app.graphql(None, CHANGE_PASSWORD, json!({ "current": "password-ada", "new": "a new secret" })).await;

    assert_eq!(error_code(&wrong), "UNAUTHENTICATED", "{wrong}");
    assert_eq!(wrong["errors"][0]["message"], "wrong login or password", "as sign-in says it");
    assert_eq!(error_code(&short), "BAD_USER_INPUT");
    assert_eq!(short["errors"][0]["extensions"]["field"], "newPassword");
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert_eq!(me_code(&app, &ada.token).await, "OK", "nothing changed");
    sign_in(&app, "ada", "password-ada").await;
}

#[tokio::test]
async fn update_profile_changes_the_name_and_username_and_validates_both() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    app.sign_up("bob").await;
    let update = |input: Value| {
        let token = ada.token.clone();
        let app = &app;
        async move { app.graphql(Some(&token), UPDATE_PROFILE, json!({ "input": input })).await }
    };

    let taken = update(json!({ "username": "BOB" })).await;
    let bad_username = update(json!({ "username": "a b" })).await;
    let bad_name = update(json!({ "fullName": "" })).await;
    let changed = update(json!({ "username": "lovelace", "fullName": "Ada Lovelace", "clientMutationId": "u" })).await;
    let name_only = update(json!({ "fullName": "Countess" })).await;

    assert_eq!(error_code(&taken), "CONFLICT", "{taken}");
    assert_eq!(taken["errors"][0]["extensions"]["field"], "username");
    assert_eq!(error_code(&bad_username), "BAD_USER_INPUT");
    assert_eq!(bad_username["errors"][0]["extensions"]["field"], "username");
    assert_eq!(error_code(&bad_name), "BAD_USER_INPUT");
    assert_eq!(bad_name["errors"][0]["extensions"]["field"], "fullName");
    assert_eq!(
        changed["data"]["updateProfile"],
        json!({ "user": { "username": "lovelace", "fullName": "Ada Lovelace" }, "clientMutationId": "u" })
    );
    assert_eq!(name_only["data"]["updateProfile"]["user"], json!({ "username": "lovelace", "fullName": "Countess" }));
    sign_in(&app, "lovelace", "password-ada").await;
}

#[tokio::test]
async fn delete_account_removes_the_users_rows_and_sessions_and_leaves_others_untouched() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    app.insert_place("p1", "cafe", 38.7, -9.1, None, None).await;
    let review = "mutation($r: Float!) { createReview(input: {placeId: \"p1\", rating: $r}) { review { id } } }";
    let post = "mutation { createPost(input: {title: \"t\", body: \"b\", published: true}) { post { id } } }";
    app.data(Some(&ada.token), review, json!({ "r": 4.0 })).await;
    app.data(Some(&bob.token), review, json!({ "r": 5.0 })).await;
    app.data(Some(&ada.token), post, json!({})).await;
    let bobs_post = app.data(Some(&bob.token), post, json!({})).await["createPost"]["post"]["id"].clone();
    let comment = "mutation($p: ID!) { addComment(input: {postId: $p, body: \"hi\"}) { comment { id } } }";
    app.data(Some(&ada.token), comment, json!({ "p": bobs_post })).await;
    app.data(Some(&bob.token), comment, json!({ "p": bobs_post })).await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    let rows_of = |id: &str| {
        format!(
            "SELECT (SELECT count(*) FROM users WHERE id = '{id}') + (SELECT count(*) FROM review WHERE user_id = '{id}')
                  + (SELECT count(*) FROM post WHERE author_id = '{id}') + (SELECT count(*) FROM comment WHERE author_id = '{id}')
                  + (SELECT count(*) FROM sessions WHERE user_id = '{id}')"
        )
    };
    assert_eq!(app.count(&rows_of(&ada.id)).await, 5);
    let bob_before = app.count(&rows_of(&bob.id)).await;

    let wrong = app.graphql(Some(&ada.token), DELETE_ACCOUNT, json!({ "p": "not-her-password" })).await;
    assert_eq!(error_code(&wrong), "UNAUTHENTICATED");
    assert_eq!(app.count(&rows_of(&ada.id)).await, 5, "a wrong password deletes nothing");
    let deleted = app.data(Some(&ada.token), DELETE_ACCOUNT, json!({ "p": "password-ada" })).await;

    assert_eq!(deleted["deleteAccount"]["deletedUserId"], ada.id.as_str());
    assert_eq!(app.count(&rows_of(&ada.id)).await, 0);
    assert_eq!(app.count(&rows_of(&bob.id)).await, bob_before, "bob's rows, on ada's review place and his post, stay");
    assert_eq!(me_code(&app, &ada.token).await, "UNAUTHENTICATED");
    assert_eq!(ws.close_code().await, Some(4403));
    let again = app.graphql(None, SIGN_IN, json!({ "login": "ada", "password": "password-ada" })).await;
    assert_eq!(error_code(&again), "UNAUTHENTICATED");
}

#[tokio::test]
async fn request_roles_cannot_read_sessions_or_refresh_tokens() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    for role in ["app_anon", "app_user", "app_read", "app_service", "app_admin"] {
        for table in ["sessions", "refresh_tokens"] {
            let tx = app.as_request_role(role, &ada.id).await;
            let read = sea_orm::ConnectionTrait::execute_unprepared(&tx, &format!("SELECT * FROM {table}")).await;
            let error = read.expect_err("no request role may read it").to_string();
            assert!(error.contains("permission denied"), "{role} on {table}: {error}");
        }
    }
}

#[tokio::test]
async fn a_token_from_before_sessions_still_works_until_it_expires() {
    // Tokens without a `sid` (issued by an older server) are not refused:
    // deploying sessions signs nobody out.
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": ada.id, "role": "user", "iat": now, "exp": now + 600 });
    let legacy = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(tests::JWT_SECRET.as_bytes()),
    )
    .expect("signing a token");
    assert_eq!(me_code(&app, &legacy).await, "OK");
    let out = app.graphql(Some(&legacy), SIGN_OUT, json!({})).await;
    assert_eq!(error_code(&out), "BAD_USER_INPUT", "it has no session to end: {out}");
}

#[tokio::test]
async fn one_document_may_check_one_password_only() {
    // Aliases would make one request many password guesses (and argon2
    // hashes): refused before anything runs, as for signIn.
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let guesses = "mutation {
      a: changePassword(input: {currentPassword: \"guess-one-1\", newPassword: \"a new secret\"}) { user { id } }
      b: deleteAccount(input: {password: \"guess-two-22\"}) { deletedUserId }
    }";

    let body = app.graphql(Some(&ada.token), guesses, json!({})).await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(me_code(&app, &ada.token).await, "OK");
}

#[tokio::test]
async fn an_expired_session_or_a_deactivated_account_cannot_refresh() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let ada_session = another_session(&app, &ada).await;
    let bob_session = another_session(&app, &bob).await;
    app.db
        .execute_unprepared(&format!(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = '{}'",
            ada.id
        ))
        .await
        .expect("expiring ada's sessions");
    app.data(
        Some(&admin.token),
        "mutation($id: ID!) { setUserActive(input: {userId: $id, isActive: false}) { user { id } } }",
        json!({ "id": bob.id }),
    )
    .await;

    let expired = refresh(&app, &ada_session.refresh).await;
    let deactivated = refresh(&app, &bob_session.refresh).await;

    assert_eq!(error_code(&expired), "UNAUTHENTICATED", "{expired}");
    assert_eq!(expired["errors"][0]["message"], "this session has expired; sign in again");
    assert_eq!(error_code(&deactivated), "UNAUTHENTICATED", "{deactivated}");
    assert_eq!(deactivated["errors"][0]["message"], "this account is deactivated");
}

#[tokio::test]
async fn guessing_the_current_password_is_rate_limited_as_sign_in_is() {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.sign_in_per_login_per_minute = 2;
    let app = TestApp::spawn_with(config).await;
    let ada = app.sign_up("ada").await;

    let mut codes = Vec::new();
    for guess in ["guess-one-1", "guess-two-22", "password-ada"] {
        let body = app.graphql(Some(&ada.token), DELETE_ACCOUNT, json!({ "p": guess })).await;
        codes.push(error_code(&body).to_owned());
    }

    assert_eq!(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"], "even the right password, once limited");
    assert_eq!(app.count(&format!("SELECT count(*) FROM users WHERE id = '{}'", ada.id)).await, 1);
}

#[tokio::test]
async fn one_document_may_refresh_once_and_the_token_stays_usable_after_a_refused_double_refresh() {
    // Two refreshes of one token in one request: the second would find it
    // used and revoke the session on a second connection while the
    // request's own transaction holds the session's row (a wait until the
    // statement timeout, two pooled connections held). Refused up front.
    let app = TestApp::spawn().await;
    let data = app.data(None, SIGN_UP_ADA, json!({})).await;
    let first = session_of(&data["signUp"]);
    let twice = "mutation($t: String!) {
      a: refreshSession(input: {refreshToken: $t}) { token }
      b: refreshSession(input: {refreshToken: $t}) { token }
    }";

    let started = std::time::Instant::now();
    let body = app.graphql(None, twice, json!({ "t": first.refresh })).await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "refused at once");
    let rotated = refresh(&app, &first.refresh).await;
    assert!(rotated.get("errors").is_none(), "the token was not used by the refused request: {rotated}");
}

/// `app_start_request` as the request login calls it, in a transaction
/// rolled back after; the refusal's SQLSTATE, told by its message (which
/// the server maps to the same codes), or None when it started.
async fn start_refusal(app: &TestApp, user_id: &str, claimed: &str, session: &str) -> Option<String> {
    use sea_orm::TransactionTrait;
    let tx = app.db.begin().await.expect("beginning a transaction");
    let outcome = tx
        .execute_unprepared(&format!(
            "SET LOCAL ROLE app_authenticator; \
             SELECT app_start_request('app_user', '{user_id}', '{claimed}', 0, true, '{session}')"
        ))
        .await;
    let _ = tx.rollback().await;
    let err = outcome.err()?.to_string();
    let code = [
        ("this account no longer exists", "AS001"),
        ("this account is deactivated", "AS002"),
        ("this session has ended", "AS004"),
        ("error returned from database: user", "AS003"),
    ]
    .into_iter()
    .find(|(message, _)| err.contains(message));
    Some(code.map_or(err, |(_, code)| code.to_owned()))
}

#[tokio::test]
async fn the_request_start_refuses_for_the_first_failing_check_gone_deactivated_session_then_role() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let session_of = |id: &str| format!("SELECT id::text FROM sessions WHERE user_id = '{id}' LIMIT 1");
    let ada_session = app.text(&session_of(&ada.id)).await;
    let bob_session = app.text(&session_of(&bob.id)).await;
    let nobody = "00000000-0000-4000-8000-000000000000";

    assert_eq!(start_refusal(&app, &ada.id, "user", &ada_session).await, None, "a live session starts");
    assert_eq!(start_refusal(&app, nobody, "user", &ada_session).await.as_deref(), Some("AS001"));
    assert_eq!(
        start_refusal(&app, &ada.id, "user", &bob_session).await.as_deref(),
        Some("AS004"),
        "another account's session is not the viewer's"
    );
    assert_eq!(
        start_refusal(&app, &ada.id, "admin", &bob_session).await.as_deref(),
        Some("AS004"),
        "an ended session is refused before a changed role is looked at"
    );
    assert_eq!(start_refusal(&app, &ada.id, "admin", &ada_session).await.as_deref(), Some("AS003"));

    app.db
        .execute_unprepared(&format!("UPDATE users SET is_active = false WHERE id = '{}'", ada.id))
        .await
        .expect("deactivating ada");
    assert_eq!(
        start_refusal(&app, &ada.id, "user", &bob_session).await.as_deref(),
        Some("AS002"),
        "a deactivated account is refused before its session is looked at"
    );
}

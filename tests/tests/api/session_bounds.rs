//! Sessions everywhere and bounded (issue 14): a subscription reads as its
//! session and ends with it, expired sessions and their refresh tokens are
//! pruned on a timer, and the account functions act on the signed-in
//! account only (migration 000017).

use api::auth::{AccessSession, Role, Viewer};
use api::db::LoaderDb;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use tests::{Received, TestApp, TestUser, WsClient, error_code};

const SIGN_IN: &str = "mutation($login: String!, $password: String!) {
  signIn(input: {login: $login, password: $password}) { token refreshToken }
}";
const REFRESH: &str = "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { token refreshToken } }";
const SIGN_OUT: &str = "mutation { signOut { endedSessions } }";
/// `place` goes through the subscription's DataLoader: a read as the viewer.
const MY_REVIEWS: &str = "subscription { myReviewChanged { review { place { name } rating } operation } }";

/// A new session of `user`: its access token, refresh token and id (`sid`).
struct Session {
    token: String,
    refresh: String,
    id: uuid::Uuid,
}

fn sid(token: &str) -> uuid::Uuid {
    let key = jsonwebtoken::DecodingKey::from_secret(tests::JWT_SECRET.as_bytes());
    let claims = jsonwebtoken::decode::<Value>(token, &key, &jsonwebtoken::Validation::default())
        .expect("the server's token")
        .claims;
    claims["sid"].as_str().and_then(|s| s.parse().ok()).expect("a sid claim")
}

fn session(token: &str, refresh: &str) -> Session {
    Session { token: token.to_owned(), refresh: refresh.to_owned(), id: sid(token) }
}

async fn sign_in(app: &TestApp, user: &TestUser) -> Session {
    let login = json!({ "login": user.username, "password": format!("password-{}", user.username) });
    let data = app.data(None, SIGN_IN, login).await;
    let payload = &data["signIn"];
    session(payload["token"].as_str().unwrap_or_default(), payload["refreshToken"].as_str().unwrap_or_default())
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Value {
    app.graphql(None, REFRESH, json!({ "t": refresh_token })).await
}

async fn refreshed(app: &TestApp, from: &Session) -> Session {
    let body = refresh(app, &from.refresh).await;
    let payload = &body["data"]["refreshSession"];
    session(
        payload["token"].as_str().unwrap_or_else(|| panic!("{body}")),
        payload["refreshToken"].as_str().unwrap_or_default(),
    )
}

async fn insert_review(app: &TestApp, user: &TestUser, place: &str) {
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO review (user_id, place_id, rating) VALUES ('{}', '{place}', 4)",
            user.id
        ))
        .await
        .expect("inserting a review");
}

/// Every message until the server closes, and the close code.
async fn until_closed(ws: &mut WsClient) -> (Vec<Value>, Option<u16>) {
    let mut messages = Vec::new();
    loop {
        match ws.receive().await {
            Received::Message(message) => messages.push(message),
            Received::Closed(code) => return (messages, code),
        }
    }
}

/// A live `myReviewChanged` subscription of `session` (a first review has
/// arrived through it, its place read by the DataLoader).
async fn live_subscriber(app: &TestApp, ada: &TestUser, session: &Session) -> WsClient {
    let mut ws = app.subscriber(Some(&session.token)).await;
    ws.subscribe("1", MY_REVIEWS, json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    insert_review(app, ada, "p0").await;
    let first = ws.next_data("1").await;
    assert_eq!(first["myReviewChanged"]["review"]["place"]["name"], "Place p0");
    ws
}

#[tokio::test]
async fn a_signed_out_sessions_subscription_gets_no_event_after_the_sign_out_and_closes_with_4403() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    for place in ["p0", "p1"] {
        app.insert_place(place, "cafe", 38.7, -9.1, None, None).await;
    }
    let phone = sign_in(&app, &ada).await;
    let mut ws = live_subscriber(&app, &ada, &phone).await;

    // Signed out from another request; then a change the subscription
    // would have shown.
    let out = app.data(Some(&phone.token), SIGN_OUT, json!({})).await;
    assert_eq!(out["signOut"]["endedSessions"], 1);
    insert_review(&app, &ada, "p1").await;

    let (messages, code) = until_closed(&mut ws).await;
    assert!(messages.iter().all(|m| m["type"] != "next"), "nothing after the sign-out: {messages:?}");
    assert_eq!(code, Some(4403));
}

#[tokio::test]
async fn a_subscription_ends_at_its_sessions_deletion_even_when_a_change_commits_with_it() {
    // The session's deletion and a review in one transaction: the stream
    // sees the deletion first, in log order, and stops there, whichever of
    // the socket's tasks wakes first.
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    for place in ["p0", "p1"] {
        app.insert_place(place, "cafe", 38.7, -9.1, None, None).await;
    }
    let phone = sign_in(&app, &ada).await;
    let mut ws = live_subscriber(&app, &ada, &phone).await;

    app.db
        .execute_unprepared(&format!(
            "DELETE FROM sessions WHERE id = '{}'; INSERT INTO review (user_id, place_id, rating) VALUES ('{}', 'p1', 4)",
            phone.id, ada.id
        ))
        .await
        .expect("ending the session and writing in one transaction");

    let (messages, code) = until_closed(&mut ws).await;
    assert!(messages.iter().all(|m| m["type"] != "next"), "nothing after the session ended: {messages:?}");
    assert_eq!(code, Some(4403));
}

#[tokio::test]
async fn a_subscriptions_reads_are_refused_once_its_session_has_ended() {
    // What a subscription's DataLoader batches and replay checks start with:
    // a transaction of their own, checked against the session like a
    // request's start.
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    app.insert_place("p1", "cafe", 38.7, -9.1, None, None).await;
    let phone = sign_in(&app, &ada).await;
    let viewer = Viewer::User { id: ada.id.parse().expect("a uuid"), role: Role::User };
    let reader = LoaderDb::Pool(app.realtime.pool().clone(), AccessSession(Some(phone.id)));
    let read = || {
        reader.run(viewer, async |tx| {
            let row = tx
                .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT count(*) AS n FROM place"))
                .await?;
            Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or_default())
        })
    };
    assert_eq!(read().await.expect("a live session reads"), 1);

    app.data(Some(&phone.token), SIGN_OUT, json!({})).await;

    let refused = read().await.expect_err("an ended session reads nothing");
    assert_eq!(refused.code(), "UNAUTHENTICATED", "{}", refused.message());
}

#[tokio::test]
async fn one_prune_pass_removes_expired_sessions_with_their_tokens_and_keeps_live_sessions_reuse_detection() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    // An abandoned session with two rotations behind it, expired.
    let old = sign_in(&app, &ada).await;
    let old = refreshed(&app, &old).await;
    let old = refreshed(&app, &old).await;
    app.db
        .execute_unprepared(&format!(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = '{}'",
            old.id
        ))
        .await
        .expect("expiring a session");
    // A live session with one rotated token.
    let live = sign_in(&app, &bob).await;
    let live_next = refreshed(&app, &live).await;
    let sessions_before = app.count("SELECT count(*) FROM sessions").await;
    let tokens_before = app.count("SELECT count(*) FROM refresh_tokens").await;

    let pruned = api::accounts::prune_sessions(app.realtime.pool()).await.expect("pruning");

    assert_eq!(pruned, api::accounts::Pruned { sessions: 1, tokens: 3 });
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE id = '{}'", old.id)).await, 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM refresh_tokens WHERE session_id = '{}'", old.id)).await, 0);
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, sessions_before - 1);
    assert_eq!(app.count("SELECT count(*) FROM refresh_tokens").await, tokens_before - 3);
    // Nothing more to do: a second pass deletes nothing.
    let again = api::accounts::prune_sessions(app.realtime.pool()).await.expect("pruning again");
    assert_eq!(again, api::accounts::Pruned::default());
    // The live session's rotated token was kept: presenting it again is
    // still reuse, which ends the family (its newer token is refused).
    assert_eq!(error_code(&refresh(&app, &live.refresh).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&refresh(&app, &live_next.refresh).await), "UNAUTHENTICATED");
}

#[tokio::test]
async fn the_server_prunes_expired_sessions_on_its_own_timer() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let old = sign_in(&app, &ada).await;
    app.db
        .execute_unprepared(&format!(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = '{}'",
            old.id
        ))
        .await
        .expect("expiring a session");
    let database = app.database.clone();
    app.shut_down().await;

    // The listener prunes when it starts, then hourly.
    let app = TestApp::spawn_with(tests::test_config(&database)).await;

    let gone = format!("SELECT count(*) FROM sessions WHERE id = '{}'", old.id);
    tests::eventually("the expired session is pruned", async || app.count(&gone).await == 0).await;
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = '{}'", ada.id)).await,
        1,
        "sign-up's session lives"
    );
}

/// A transaction as the request login's `app_signin` switch leaves it:
/// `app.user_id` is `user`'s (the request start set it).
async fn as_signin_of(app: &TestApp, user: &TestUser) -> sea_orm::DatabaseTransaction {
    app.as_request_role("app_signin", &user.id).await
}

async fn password_hash(app: &TestApp, user: &TestUser) -> String {
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT password_hash::text AS h FROM users WHERE id = '{}'", user.id),
        ))
        .await
        .expect("reading a hash")
        .expect("the user exists");
    row.try_get("", "h").expect("a hash")
}

#[tokio::test]
async fn the_account_functions_act_on_the_signed_in_account_only() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let bobs_hash = password_hash(&app, &bob).await;

    let tx = as_signin_of(&app, &ada).await;
    let read = tx
        .query_all_raw(Statement::from_string(DbBackend::Postgres, "SELECT password_hash FROM auth_password_of()"))
        .await
        .expect("reading the own hash");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].try_get::<String>("", "password_hash").expect("a hash"), password_hash(&app, &ada).await);
    tx.execute_unprepared("SELECT auth_set_password('not-a-real-hash', NULL)").await.expect("setting the own password");
    tx.commit().await.expect("committing");

    assert_eq!(password_hash(&app, &ada).await, "not-a-real-hash");
    assert_eq!(password_hash(&app, &bob).await, bobs_hash, "bob's password is not reachable");
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = '{}'", bob.id)).await, 1);
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = '{}'", ada.id)).await, 0);

    let tx = as_signin_of(&app, &bob).await;
    tx.execute_unprepared("SELECT auth_delete_account()").await.expect("deleting the own account");
    tx.commit().await.expect("committing");
    assert_eq!(app.count(&format!("SELECT count(*) FROM users WHERE id = '{}'", bob.id)).await, 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM users WHERE id = '{}'", ada.id)).await, 1);

    // Only the sign-in role may call them, as before; the old signatures
    // stay for the previous release during a rolling deploy.
    let tx = app.as_request_role("app_user", &ada.id).await;
    let denied = tx.execute_unprepared("SELECT auth_set_password('x', NULL)").await.expect_err("a viewer role");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    drop(tx);
    let overloads = "SELECT count(*) FROM pg_proc WHERE proname IN ('auth_password_of', 'auth_set_password', 'auth_delete_account')";
    assert_eq!(app.count(overloads).await, 6);
}

//! Live authorization follows the account: a role change reaches every
//! open socket of the account the moment it commits. Running subscriptions
//! end with FORBIDDEN ("your role changed; resubscribe") before any event
//! the new role may not see, and new operations on the same socket run as
//! the new role.

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use tests::{TestApp, TestUser, WsClient};

const POSTS: &str = "subscription($a: String) { postChanged(after: $a) { operation post { title published } } }";
const COMMENTS: &str = "subscription($p: ID!) { commentAdded(postId: $p) { comment { body } } }";
const RUNS: &str = "subscription($a: String) { runChanged(after: $a) { operation run { userId } } }";

async fn post(app: &TestApp, user: &TestUser, title: &str, published: bool) -> String {
    let create = "mutation($t: String!, $p: Boolean) { createPost(input: {title: $t, published: $p}) { post { id } } }";
    let data = app.data(Some(&user.token), create, json!({ "t": title, "p": published })).await;
    data["createPost"]["post"]["id"].as_str().unwrap_or_default().to_owned()
}

/// Creates a routine for `user` and starts a run of it.
async fn run(app: &TestApp, user: &TestUser) {
    let create = "mutation { createRoutine(input: {name: \"farm\", steps: [], tokensPerRun: 1}) { routine { id } } }";
    let routine = app.data(Some(&user.token), create, json!({})).await["createRoutine"]["routine"]["id"].clone();
    app.data(
        Some(&user.token),
        "mutation($r: ID!) { startRun(input: {routineId: $r}) { run { id } } }",
        json!({ "r": routine }),
    )
    .await;
}

/// The next message of subscription `id` (skipping others').
async fn next_of(ws: &mut WsClient, id: &str) -> Value {
    loop {
        let message = ws.message().await;
        if message["id"] == id {
            return message;
        }
    }
}

fn title(message: &Value) -> &str {
    message["payload"]["data"]["postChanged"]["post"]["title"].as_str().unwrap_or("<no post>")
}

/// The end of a subscription: an `error` message with this code.
fn assert_ended_with(message: &Value, code: &str) {
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], code, "{message}");
}

#[tokio::test]
async fn a_demoted_admin_stops_seeing_other_users_drafts_on_old_and_new_subscriptions_of_the_same_socket() {
    let app = TestApp::spawn().await;
    let root = app.sign_up_as("root", "admin").await;
    let boss = app.sign_up_as("boss", "admin").await;
    let ada = app.sign_up("ada").await;
    let before = app.change_cursor_for(&boss).await;
    let mut ws = app.subscriber(Some(&boss.token)).await;
    ws.subscribe("old", POSTS, json!({ "a": before })).await;
    let first_draft = post(&app, &ada, "ada's first draft", false).await;
    assert_eq!(title(&next_of(&mut ws, "old").await), "ada's first draft", "an admin sees every draft");

    app.set_role(&root, &boss, "USER").await;
    post(&app, &ada, "ada's second draft", false).await;
    post(&app, &ada, "ada's published post", true).await;

    // The running subscription ends at the role change, before the draft.
    assert_ended_with(&next_of(&mut ws, "old").await, "FORBIDDEN");

    // A new subscription on the same socket, even replaying from before the
    // demotion, runs as a user: no draft of Ada's, only what is published.
    ws.subscribe("new", POSTS, json!({ "a": before })).await;
    let replayed = next_of(&mut ws, "new").await;
    assert_eq!(title(&replayed), "ada's published post", "{replayed}");
    post(&app, &ada, "ada's third draft", false).await;
    post(&app, &ada, "ada's marker", true).await;
    assert_eq!(title(&next_of(&mut ws, "new").await), "ada's marker");

    // And so does a query on the socket.
    ws.subscribe("query", "query($id: ID!) { post(id: $id) { title } }", json!({ "id": first_draft })).await;
    let answer = next_of(&mut ws, "query").await;
    assert_eq!(answer["payload"]["data"]["post"], Value::Null, "{answer}");
    assert!(answer["payload"]["errors"].is_null(), "{answer}");
}

#[tokio::test]
async fn a_demoted_reader_stops_seeing_other_users_runs_on_old_and_new_subscriptions_of_the_same_socket() {
    let app = TestApp::spawn().await;
    let root = app.sign_up_as("root", "admin").await;
    let rita = app.sign_up_as("rita", "reader").await;
    let ada = app.sign_up("ada").await;
    let before = app.change_cursor_for(&rita).await;
    let mut ws = app.subscriber(Some(&rita.token)).await;
    ws.subscribe("old", RUNS, json!({ "a": before })).await;
    run(&app, &ada).await;
    let seen = next_of(&mut ws, "old").await;
    assert_eq!(seen["payload"]["data"]["runChanged"]["run"]["userId"], ada.id.as_str(), "a reader sees every run");

    app.set_role(&root, &rita, "USER").await;
    run(&app, &ada).await;
    // Now a user, Rita may run routines of her own.
    run(&app, &rita).await;

    assert_ended_with(&next_of(&mut ws, "old").await, "FORBIDDEN");
    ws.subscribe("new", RUNS, json!({ "a": before })).await;
    let replayed = next_of(&mut ws, "new").await;
    assert_eq!(replayed["payload"]["data"]["runChanged"]["run"]["userId"], rita.id.as_str(), "{replayed}");
    run(&app, &ada).await;
    run(&app, &rita).await;
    let live = next_of(&mut ws, "new").await;
    assert_eq!(live["payload"]["data"]["runChanged"]["run"]["userId"], rita.id.as_str(), "{live}");
}

#[tokio::test]
async fn a_promotion_also_ends_running_subscriptions_so_they_restart_under_the_new_role() {
    let app = TestApp::spawn().await;
    let root = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("old", POSTS, json!({ "a": app.change_cursor_for(&ada).await })).await;
    post(&app, &ada, "ada's own draft", false).await;
    assert_eq!(title(&next_of(&mut ws, "old").await), "ada's own draft");

    app.set_role(&root, &ada, "ADMIN").await;
    assert_ended_with(&next_of(&mut ws, "old").await, "FORBIDDEN");
    ws.subscribe("new", POSTS, json!({ "a": app.change_cursor_for(&ada).await })).await;
    post(&app, &bob, "bob's draft", false).await;
    assert_eq!(title(&next_of(&mut ws, "new").await), "bob's draft", "an admin now");
}

#[tokio::test]
async fn a_subscription_whose_account_cannot_be_checked_is_refused_rather_than_run_with_a_stale_role() {
    let app = TestApp::spawn_with_one_connection().await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    let (blocker, slow) = app.hold_the_only_connection().await;

    ws.subscribe("1", POSTS, json!({})).await;
    let refused = next_of(&mut ws, "1").await;
    assert_ended_with(&refused, "SERVICE_UNAVAILABLE");

    blocker.rollback().await.expect("rolling back");
    assert_eq!(slow.await.ok().flatten(), Some(200));
}

/// Holds every read of `table` on a lock until the transaction returned
/// is rolled back. commentAdded reads the log's bounds and then its post
/// before its stream starts, so a subscription to it sent now is accepted
/// (its account checked) but its stream does not start while the lock on
/// `post` or `change_log_horizon` is held.
async fn hold_reads_of(app: &TestApp, table: &str) -> sea_orm::DatabaseTransaction {
    let lock = app.db.begin().await.expect("beginning a transaction");
    let sql = format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
    lock.execute_unprepared(&sql).await.expect("running the SQL");
    lock
}

/// Until a read of `table` waits on [`hold_reads_of`]'s lock.
async fn until_a_read_waits_on(app: &TestApp, table: &str) {
    let waiting = format!("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass");
    tests::eventually("the subscription's start waits on the lock", async || app.count(&waiting).await > 0).await;
}

/// Until the server's listener has broadcast everything committed.
async fn caught_up(app: &TestApp) {
    let committed = app.count("SELECT coalesce(max(seq), 0) FROM change_commit").await;
    tests::eventually("the listener has caught up", async || app.realtime.head().seq >= committed).await;
}

#[tokio::test]
async fn a_demotion_that_commits_while_a_subscription_is_starting_ends_it_instead_of_being_missed() {
    let app = TestApp::spawn().await;
    let root = app.sign_up_as("root", "admin").await;
    let boss = app.sign_up_as("boss", "admin").await;
    let ada = app.sign_up("ada").await;
    let post_id = post(&app, &ada, "ada's post", true).await;
    let mut ws = app.subscriber(Some(&boss.token)).await;

    // Accepted as an admin, its stream not started yet...
    let lock = hold_reads_of(&app, "post").await;
    ws.subscribe("1", COMMENTS, json!({ "p": post_id })).await;
    until_a_read_waits_on(&app, "post").await;
    // ...when the demotion commits and is broadcast.
    app.set_role(&root, &boss, "USER").await;
    caught_up(&app).await;
    lock.rollback().await.expect("rolling back");

    // It still ends the subscription: it never runs as an admin, who would
    // be shown a comment on Ada's post once it is a draft.
    let unpublish = "mutation($id: ID!) { publishPost(input: {id: $id, published: false}) { post { id } } }";
    app.data(Some(&ada.token), unpublish, json!({ "id": post_id })).await;
    let add = "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id } } }";
    app.data(Some(&ada.token), add, json!({ "p": post_id, "b": "on a draft now" })).await;
    assert_ended_with(&next_of(&mut ws, "1").await, "FORBIDDEN");
}

#[tokio::test]
async fn events_that_commit_while_a_subscription_is_starting_are_delivered_as_live_ones() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let post_id = post(&app, &ada, "ada's post", true).await;
    let mut ws = app.subscriber(Some(&bob.token)).await;

    // Not `post`, which adding a comment reads too.
    let lock = hold_reads_of(&app, "change_log_horizon").await;
    ws.subscribe("1", COMMENTS, json!({ "p": post_id })).await;
    until_a_read_waits_on(&app, "change_log_horizon").await;
    let add = "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id } } }";
    app.data(Some(&ada.token), add, json!({ "p": post_id, "b": "while Bob's subscription starts" })).await;
    caught_up(&app).await;
    lock.rollback().await.expect("rolling back");
    app.data(Some(&ada.token), add, json!({ "p": post_id, "b": "after" })).await;

    // The stream starts where Bob's subscribe was accepted, not later.
    let first = next_of(&mut ws, "1").await;
    assert_eq!(
        first["payload"]["data"]["commentAdded"]["comment"]["body"], "while Bob's subscription starts",
        "{first}"
    );
    let second = next_of(&mut ws, "1").await;
    assert_eq!(second["payload"]["data"]["commentAdded"]["comment"]["body"], "after", "{second}");
}

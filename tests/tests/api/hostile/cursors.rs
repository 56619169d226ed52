//! Replay cursors cannot be forged, carried to another account or database,
//! or silently lose events; a replay shows only what the viewer may see now.
//!
//! Each subscription here asks for `after` and is answered either with an
//! `error` (CURSOR_INVALID) or with events; the old, unsigned cursors were
//! accepted and then replayed the log, or nothing at all.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{TestApp, TestUser, WsClient};

const POSTS: &str = "subscription($a: String) { postChanged(after: $a) { operation cursor post { title } } }";
const PLACES: &str = "subscription($a: String) { placeChanged(after: $a) { operation cursor place { rowId } } }";
const COMMENTS: &str = "subscription($p: ID!, $a: String) { commentAdded(postId: $p, after: $a) { comment { body } } }";

async fn post(app: &TestApp, user: &TestUser, title: &str, published: bool) -> String {
    let create = "mutation($t: String!, $p: Boolean) { createPost(input: {title: $t, published: $p}) { post { id } } }";
    let data = app.data(Some(&user.token), create, json!({ "t": title, "p": published })).await;
    data["createPost"]["post"]["id"].as_str().unwrap_or_default().to_owned()
}

async fn publish(app: &TestApp, user: &TestUser, id: &str, published: bool) {
    let publish = "mutation($id: ID!, $p: Boolean) { publishPost(input: {id: $id, published: $p}) { post { id } } }";
    app.data(Some(&user.token), publish, json!({ "id": id, "p": published })).await;
}

/// Until the server's listener has broadcast everything committed, so a
/// subscription started now replays all of it as history.
async fn caught_up(app: &TestApp) {
    // In the logical capture mode the sequencer stamps a moment after the
    // commit: settle first.
    app.realtime.settled_head().await;
    let committed = app.count("SELECT coalesce(max(seq), 0) FROM change_commit").await;
    tests::eventually("the listener has caught up", async || app.realtime.head().seq >= committed).await;
}

/// The first answer to subscription "1": it must be CURSOR_INVALID.
async fn assert_cursor_invalid(ws: &mut WsClient) {
    let message = ws.message().await;
    assert_eq!(message["type"], "error", "accepted: {message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], "CURSOR_INVALID", "{message}");
    let text = message["payload"][0]["message"].as_str().unwrap_or_default();
    assert!(text.contains("subscribe without `after`"), "says what to do: {text}");
}

fn event_of(message: &Value) -> (String, String) {
    let event = &message["payload"]["data"]["postChanged"];
    (
        event["operation"].as_str().unwrap_or_default().to_owned(),
        event["post"]["title"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_new_account_replaying_from_a_forged_zero_cursor_gets_cursor_invalid_not_the_log() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let secret = post(&app, &ada, "published, then hidden", true).await;
    publish(&app, &ada, &secret, false).await;
    let mallory = app.sign_up("mallory").await;

    // `c:0:0` and `c:9000000000:0`, the unsigned format.
    for forged in ["YzowOjA", "Yzo5MDAwMDAwMDAwOjA"] {
        let mut ws = app.subscriber(Some(&mallory.token)).await;
        ws.subscribe("1", POSTS, json!({ "a": forged })).await;
        assert_cursor_invalid(&mut ws).await;
    }
}

#[tokio::test]
async fn a_tampered_cursor_is_refused() {
    let app = TestApp::spawn().await;
    let mallory = app.sign_up("mallory").await;
    let cursor = app.change_cursor_for(&mallory).await;
    // Flip one character of the position: still well-formed, no longer signed.
    let mut chars: Vec<char> = cursor.chars().collect();
    chars[6] = if chars[6] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();

    let mut ws = app.subscriber(Some(&mallory.token)).await;
    ws.subscribe("1", POSTS, json!({ "a": tampered })).await;
    post(&app, &mallory, "to be sure something happens", true).await;
    assert_cursor_invalid(&mut ws).await;
}

#[tokio::test]
async fn a_cursor_issued_to_one_viewer_is_refused_to_any_other() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let adas = app.change_cursor_for(&ada).await;

    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", PLACES, json!({ "a": adas })).await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    assert_cursor_invalid(&mut ws).await;

    let mut anonymous = app.subscriber(None).await;
    anonymous.subscribe("1", PLACES, json!({ "a": adas })).await;
    assert_cursor_invalid(&mut anonymous).await;

    // Nor does an anonymous cursor work for an account.
    let mut signed_in = app.subscriber(Some(&bob.token)).await;
    signed_in.subscribe("1", PLACES, json!({ "a": app.change_cursor().await })).await;
    assert_cursor_invalid(&mut signed_in).await;

    // Her own cursor works for Ada, and her events' cursors are hers too.
    let mut own = app.subscriber(Some(&ada.token)).await;
    own.subscribe("1", PLACES, json!({ "a": adas })).await;
    let event = own.next_data("1").await["placeChanged"].clone();
    assert_eq!(event["place"]["rowId"], "p1");
    let mut elsewhere = app.subscriber(Some(&bob.token)).await;
    elsewhere.subscribe("1", PLACES, json!({ "a": event["cursor"] })).await;
    assert_cursor_invalid(&mut elsewhere).await;
}

#[tokio::test]
async fn a_cursor_ahead_of_the_log_is_refused_not_silently_accepted() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", PLACES, json!({ "a": app.change_cursor_for(&ada).await })).await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    let cursor = ws.next_data("1").await["placeChanged"]["cursor"].as_str().unwrap_or_default().to_owned();

    // The log loses its newest entries, as after a point-in-time recovery
    // to a moment before them: the cursor now points past the log's end.
    app.db
        .execute_unprepared("DELETE FROM change_log; DELETE FROM change_commit")
        .await
        .expect("emptying the change log");

    let mut again = app.subscriber(Some(&ada.token)).await;
    again.subscribe("1", PLACES, json!({ "a": cursor })).await;
    assert_cursor_invalid(&mut again).await;
}

#[tokio::test]
async fn a_cursor_from_another_database_is_refused() {
    let one = TestApp::spawn().await;
    let two = TestApp::spawn().await;
    // Without signing in: a cursor bound to no account, only to its database.
    let from_one = one.change_cursor().await;

    let mut ws = two.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "a": from_one })).await;
    two.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    assert_cursor_invalid(&mut ws).await;

    let mut home = one.subscriber(None).await;
    home.subscribe("1", PLACES, json!({ "a": from_one })).await;
    one.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    assert_eq!(home.next_data("1").await["placeChanged"]["place"]["rowId"], "p1", "at home it works");
}

#[tokio::test]
async fn a_replay_shows_others_no_history_of_posts_hidden_since_only_their_removal() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let held = post(&app, &ada, "public when Bob took his cursor", true).await;
    let cursor = app.change_cursor_for(&bob).await;

    // All after Bob's cursor, all before he subscribes.
    let unpublished = post(&app, &ada, "published, then unpublished", true).await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { updatePost(input: {id: $id, title: \"edited, then unpublished\"}) { post { id } } }",
        json!({ "id": unpublished }),
    )
    .await;
    publish(&app, &ada, &unpublished, false).await;
    let deleted = post(&app, &ada, "published, then deleted", true).await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { deletePost(input: {id: $id}) { post { id } } }",
        json!({ "id": deleted }),
    )
    .await;
    publish(&app, &ada, &held, false).await;
    post(&app, &ada, "still public", true).await;
    caught_up(&app).await;

    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", POSTS, json!({ "a": cursor })).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(event_of(&ws.message().await));
    }
    let seen: Vec<(&str, &str)> = seen.iter().map(|(op, title)| (op.as_str(), title.as_str())).collect();
    assert_eq!(
        seen,
        [("DELETED", ""), ("DELETED", ""), ("DELETED", ""), ("INSERTED", "still public")],
        "no creation or edit of what Bob may not see now: only removals (tombstones without a title), which he \
         must apply to what he fetched"
    );

    // The author replays her own history in full.
    let mut adas = app.subscriber(Some(&ada.token)).await;
    adas.subscribe("1", POSTS, json!({ "a": app.change_cursor_for(&ada).await })).await;
    post(&app, &ada, "marker", true).await;
    assert_eq!(event_of(&adas.message().await).1, "marker");
}

#[tokio::test]
async fn a_replayed_removal_of_a_post_hidden_since_names_the_post_but_carries_none_of_its_content() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let cursor = app.change_cursor_for(&bob).await;
    let create = "mutation($t: String!, $b: String!) { createPost(input: {title: $t, body: $b, published: true}) { post { id } } }";
    let mut ids = Vec::new();
    for title in ["unpublished since", "deleted since", "unpublished, then published again"] {
        let data = app.data(Some(&ada.token), create, json!({ "t": title, "b": format!("body of {title}") })).await;
        ids.push(data["createPost"]["post"]["id"].as_str().unwrap_or_default().to_owned());
    }
    // The cursor is the broadcast position: past the three creations.
    caught_up(&app).await;
    let cursor_after_creation = app.change_cursor_for(&bob).await;
    publish(&app, &ada, &ids[0], false).await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { deletePost(input: {id: $id}) { post { id } } }",
        json!({ "id": ids[1] }),
    )
    .await;
    publish(&app, &ada, &ids[2], false).await;
    publish(&app, &ada, &ids[2], true).await;
    caught_up(&app).await;

    let full = "subscription($a: String) { postChanged(after: $a) { operation post { id title body published } } }";
    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", full, json!({ "a": cursor_after_creation })).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(ws.next_data("1").await["postChanged"].clone());
    }
    let tombstone =
        |id: &str| json!({ "operation": "DELETED", "post": { "id": id, "title": "", "body": "", "published": false } });
    assert_eq!(seen[0], tombstone(&ids[0]), "the id to drop it by, nothing of what it said");
    assert_eq!(seen[1], tombstone(&ids[1]));
    // Visible again now: its removal and return are replayed whole.
    assert_eq!(seen[2]["post"]["body"], "body of unpublished, then published again", "{seen:?}");
    assert_eq!(seen[2]["operation"], "DELETED");

    // From before their creation nothing at all is replayed of the two.
    let mut earlier = app.subscriber(Some(&bob.token)).await;
    earlier.subscribe("1", full, json!({ "a": cursor })).await;
    let first = earlier.next_data("1").await["postChanged"].clone();
    assert_eq!(first["post"]["title"], "unpublished, then published again", "{first}");
}

#[tokio::test]
async fn cursors_from_before_a_restore_are_refused() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    app.insert_place("p1", "cafe", 0.0, 0.0, None, None).await;
    let before = app.change_cursor_for(&ada).await;
    // Backed up once the logical capture's sequencer has stamped these
    // events: it would stamp one the archive holds unstamped right after
    // the restore, and the restore's check would see that table differ.
    caught_up(&app).await;

    let url = tests::superuser_url(&app.database);
    let tools = api::ops::backup::Tools::find(None).expect("finding pg_dump and pg_restore");
    let dir = std::env::temp_dir().join(format!("apibackup-cursors-{}", std::process::id()));
    let source = sea_orm::Database::connect(url.as_str()).await.expect("connecting to the database");
    let (file, _, _) = api::ops::backup::take(&tools, &source, &url, &dir).await.expect("taking a backup");
    // `api restore FILE --yes`, as an operator runs it.
    let mut config = tests::test_config(&app.database);
    config.database_url = Some(url.into());
    api::commands::restore(&config, &file, true).await.expect("restoring through the CLI");
    let _ = std::fs::remove_dir_all(dir);

    // A server left running through the restore refuses to replay (its
    // keys are of the old epoch, and it says it needs a restart)...
    let mut stale = app.subscriber(Some(&ada.token)).await;
    stale.subscribe("1", PLACES, json!({ "a": before })).await;
    assert_cursor_invalid(&mut stale).await;

    // ...and a restarted one refuses cursors from before the restore.
    let restarted = TestApp::spawn_with(tests::test_config(&app.database)).await;
    let mut ws = restarted.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", PLACES, json!({ "a": before })).await;
    assert_cursor_invalid(&mut ws).await;

    let mut fresh = restarted.subscriber(Some(&ada.token)).await;
    fresh.subscribe("1", PLACES, json!({ "a": restarted.change_cursor_for(&ada).await })).await;
    restarted.insert_place("p3", "cafe", 0.0, 0.0, None, None).await;
    assert_eq!(fresh.next_data("1").await["placeChanged"]["place"]["rowId"], "p3", "new cursors work");
}

#[tokio::test]
async fn comment_added_replayed_from_before_its_post_was_published_streams_its_comments_instead_of_ending() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let cursor = app.change_cursor_for(&bob).await;
    let draft = post(&app, &ada, "a draft for now", false).await;
    let add = "mutation($p: ID!, $b: String!) { addComment(input: {postId: $p, body: $b}) { comment { id } } }";
    app.data(Some(&ada.token), add, json!({ "p": draft, "b": "a note on the draft" })).await;
    publish(&app, &ada, &draft, true).await;
    caught_up(&app).await;

    let mut ws = app.subscriber(Some(&bob.token)).await;
    ws.subscribe("1", COMMENTS, json!({ "p": draft, "a": cursor })).await;
    let replayed = ws.message().await;
    assert_eq!(replayed["type"], "next", "the post is visible now: {replayed}");
    assert_eq!(replayed["payload"]["data"]["commentAdded"]["comment"]["body"], "a note on the draft");
    app.data(Some(&bob.token), add, json!({ "p": draft, "b": "live" })).await;
    assert_eq!(ws.next_data("1").await["commentAdded"]["comment"]["body"], "live");

    // Unpublished now: that still ends the stream.
    publish(&app, &ada, &draft, false).await;
    let ended = ws.message().await;
    assert_eq!(ended["type"], "error", "{ended}");
    assert_eq!(ended["payload"][0]["extensions"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn preference_and_stats_subscriptions_replay_from_a_cursor_too() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let cursor = app.change_cursor_for(&ada).await;
    let set = "mutation { setPreference(input: {category: \"cafe\", rating: 3}) { preference { category } } }";
    app.data(Some(&ada.token), set, json!({})).await;
    let create = "mutation { createRoutine(input: {name: \"farm\", steps: [], tokensPerRun: 1}) { routine { id } } }";
    let routine = app.data(Some(&ada.token), create, json!({})).await["createRoutine"]["routine"]["id"].clone();
    app.data(
        Some(&ada.token),
        "mutation($r: ID!) { startRun(input: {routineId: $r}) { run { id } } }",
        json!({ "r": routine }),
    )
    .await;
    caught_up(&app).await;

    let mut ws = app.subscriber(Some(&ada.token)).await;
    let preferences = "subscription($a: String) { myPreferenceChanged(after: $a) { preference { category } } }";
    ws.subscribe("1", preferences, json!({ "a": cursor })).await;
    assert_eq!(ws.next_data("1").await["myPreferenceChanged"]["preference"]["category"], "cafe");
    let stats = "subscription($a: String) { myStatsChanged(after: $a) { stats { totalRoutineRuns } } }";
    ws.subscribe("2", stats, json!({ "a": cursor })).await;
    assert_eq!(ws.next_data("2").await["myStatsChanged"]["stats"]["totalRoutineRuns"], 1);
}

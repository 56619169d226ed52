//! Foreign keys as objects beside their raw ids (issue 14): every `xxxId`
//! has its object (`Review.user`, `RoutineRun.routine`, `Comment.post`,
//! ...), read through the viewer's row-level security by one loader for
//! every table, batched per response and per subscription event.
//!
//! Fixtures are written as the superuser so these tests do not depend on
//! the mutations' shapes; reads go through the API.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{TestApp, TestUser};

use crate::request_path::{app_with_a_separate_feed_login, calls_matching, request_statements, reset_statements};

async fn review(app: &TestApp, user: &TestUser, place: &str) -> String {
    app.text(&format!(
        "INSERT INTO review (user_id, place_id, rating) VALUES ('{}', '{place}', 4) RETURNING id::text",
        user.id
    ))
    .await
}

async fn routine(app: &TestApp, user: &TestUser, name: &str) -> String {
    app.text(
        &format!(
            "INSERT INTO routine (user_id, name, steps, tokens_per_run) VALUES ('{}', '{name}', '[]', 1) RETURNING id::text",
            user.id
        ),
    )
    .await
}

async fn run(app: &TestApp, routine: &str) -> String {
    app.text(&format!("INSERT INTO routine_run (routine_id) VALUES ('{routine}') RETURNING id::text")).await
}

async fn project(app: &TestApp, name: &str) -> String {
    app.text(&format!(
        "INSERT INTO airdrop_project (name, start_date, end_date, total_token_allocation)
             VALUES ('{name}', '2026-01-01', '2026-12-31', 1000) RETURNING id::text"
    ))
    .await
}

async fn participation(app: &TestApp, user: &TestUser, project: &str, tokens: i64) -> String {
    app.text(&format!(
        "INSERT INTO user_airdrop_participation (user_id, project_id, tokens_earned)
             VALUES ('{}', '{project}', {tokens}) RETURNING id::text",
        user.id
    ))
    .await
}

async fn post(app: &TestApp, author: &TestUser, title: &str) -> String {
    app.text(&format!(
        "INSERT INTO post (author_id, title, published) VALUES ('{}', '{title}', true) RETURNING id::text",
        author.id
    ))
    .await
}

async fn comment(app: &TestApp, author: &TestUser, post: &str, body: &str) -> String {
    app.text(&format!(
        "INSERT INTO comment (post_id, author_id, body) VALUES ('{post}', '{}', '{body}') RETURNING id::text",
        author.id
    ))
    .await
}

const EVERY_FOREIGN_KEY: &str = "{
  myReviews(first: 5) { nodes { userId placeId user { username } place { name } } }
  myPreferences { userId user { username } }
  myRoutines(first: 5) { nodes { userId user { username } } }
  myStats { userId user { username } }
  myParticipations { userId projectId user { username } project { name stats { participants tokensDistributed } } }
  posts(first: 5) { nodes { authorId author { username } comments(first: 5) { nodes { postId authorId author { username } post { title } } } } }
}";

#[tokio::test]
async fn every_foreign_key_resolves_to_its_object_beside_its_raw_id() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 1.0, 1.0, None, None).await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    review(&app, &ada, "p1").await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO preference (user_id, category, rating) VALUES ('{}', 'cafe', 5)",
            ada.id
        ))
        .await
        .unwrap();
    let morning = routine(&app, &ada, "Morning").await;
    let started = run(&app, &morning).await;
    let drop = project(&app, "Drop").await;
    participation(&app, &ada, &drop, 7).await;
    participation(&app, &bob, &drop, 5).await;
    let hello = post(&app, &bob, "Hello").await;
    comment(&app, &ada, &hello, "Hi Bob").await;

    let data = app.data(Some(&ada.token), EVERY_FOREIGN_KEY, json!({})).await;
    let review = &data["myReviews"]["nodes"][0];
    assert_eq!(review["userId"], ada.id.as_str());
    assert_eq!(review["placeId"], "p1");
    assert_eq!(review["user"]["username"], "ada");
    assert_eq!(review["place"]["name"], "Place p1");
    assert_eq!(data["myPreferences"][0]["userId"], ada.id.as_str());
    assert_eq!(data["myPreferences"][0]["user"]["username"], "ada");
    assert_eq!(data["myRoutines"]["nodes"][0]["user"]["username"], "ada");
    assert_eq!(data["myStats"]["user"]["username"], "ada");
    let joined = &data["myParticipations"][0];
    assert_eq!((&joined["userId"], &joined["projectId"]), (&json!(ada.id), &json!(drop)));
    assert_eq!(joined["user"]["username"], "ada");
    assert_eq!(joined["project"]["name"], "Drop");
    // The project comes with its public totals, as `airdropProject` has them.
    assert_eq!(joined["project"]["stats"], json!({ "participants": 2, "tokensDistributed": "12" }));
    let post = &data["posts"]["nodes"][0];
    assert_eq!((&post["authorId"], &post["author"]["username"]), (&json!(bob.id), &json!("bob")));
    let comment = &post["comments"]["nodes"][0];
    assert_eq!(comment["postId"], hello.as_str());
    assert_eq!((&comment["authorId"], &comment["author"]["username"]), (&json!(ada.id), &json!("ada")));
    assert_eq!(comment["post"]["title"], "Hello");

    let runs = app
        .data(
            Some(&ada.token),
            "query($r: ID!) { runs(routineId: $r, first: 5) { nodes { routineId userId routine { name } user { username } } } }",
            json!({ "r": morning }),
        )
        .await;
    let run = &runs["runs"]["nodes"][0];
    assert_eq!((&run["routineId"], &run["userId"]), (&json!(morning), &json!(ada.id)));
    assert_eq!((&run["routine"]["name"], &run["user"]["username"]), (&json!("Morning"), &json!("ada")));
    assert!(!started.is_empty());
}

/// What one request for `query` ran, summed over statements.
async fn statements_for(app: &TestApp, token: &str, query: &str) -> (i64, Vec<(String, i64)>) {
    reset_statements(app).await;
    app.data(Some(token), query, json!({})).await;
    let statements = request_statements(app).await;
    (statements.iter().map(|(_, calls)| calls).sum(), statements)
}

#[tokio::test]
async fn a_page_of_twenty_reviews_with_user_and_place_costs_the_statements_of_a_page_of_one() {
    let app = app_with_a_separate_feed_login().await;
    let ada = app.sign_up("ada").await;
    for n in 0..20 {
        app.insert_place(&format!("p{n}"), "cafe", 1.0, 1.0, None, None).await;
        review(&app, &ada, &format!("p{n}")).await;
        let drop = project(&app, &format!("Drop {n}")).await;
        participation(&app, &ada, &drop, n).await;
    }
    // Each list on its own: two lists in one document may load their
    // users in one batch or two, depending on which resolves first.
    let reviews =
        |size: usize| format!("{{ myReviews(first: {size}) {{ nodes {{ user {{ username }} place {{ name }} }} }} }}");
    let (one, _) = statements_for(&app, &ada.token, &reviews(1)).await;
    let (twenty, statements) = statements_for(&app, &ada.token, &reviews(20)).await;
    assert_eq!(twenty, one, "20 reviews cost what 1 does: {statements:#?}");
    // One read of `users` for every `user` field of the page.
    assert_eq!(calls_matching(&statements, "FROM \"users\""), 1, "{statements:#?}");

    // Every participation (no page size: all twenty), with one read of
    // the users, one of the projects and one of their totals.
    let participations = "{ myParticipations { user { username } project { name stats { participants } } } }";
    let (_, statements) = statements_for(&app, &ada.token, participations).await;
    assert_eq!(calls_matching(&statements, "FROM \"users\""), 1, "{statements:#?}");
    assert_eq!(calls_matching(&statements, "FROM \"airdrop_project\""), 1, "{statements:#?}");
    assert_eq!(calls_matching(&statements, "airdrop_project_totals"), 1, "{statements:#?}");
}

const RUNS: &str = "subscription($after: String) {
  runChanged(after: $after) { operation run { rowId routineId routine { name } user { username } } }
}";

/// The next `runChanged` event of `ws`, with no error beside it.
async fn next_run(ws: &mut tests::WsClient) -> Value {
    let message = ws.message().await;
    assert_eq!(message["type"], "next", "{message}");
    assert!(message["payload"].get("errors").is_none(), "a missing routine is null, not an error: {message}");
    message["payload"]["data"]["runChanged"].clone()
}

#[tokio::test]
async fn a_routine_the_viewer_may_not_see_is_null_in_its_run_not_an_error() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let morning = routine(&app, &ada, "Morning").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", RUNS, json!({ "after": app.change_cursor_for(&ada).await })).await;
    let started = run(&app, &morning).await;
    let event = next_run(&mut ws).await;
    assert_eq!((&event["operation"], &event["run"]["routine"]["name"]), (&json!("INSERTED"), &json!("Morning")));
    assert_eq!(event["run"]["user"]["username"], "ada");

    // The routine passes to Bob; the run still names Ada (its owner is
    // copied on insert), so Ada sees the run and not its routine.
    app.db
        .execute_unprepared(&format!("UPDATE routine SET user_id = '{}' WHERE id = '{morning}'", bob.id))
        .await
        .unwrap();
    app.db
        .execute_unprepared(&format!(
            "UPDATE routine_run SET status = 'success', end_time = now() WHERE id = '{started}'"
        ))
        .await
        .unwrap();
    let event = next_run(&mut ws).await;
    assert_eq!(event["operation"], "UPDATED");
    assert_eq!(event["run"]["routineId"], morning.as_str(), "the raw id stays");
    assert_eq!(event["run"]["routine"], Value::Null);
    assert_eq!(event["run"]["user"]["username"], "ada");
}

#[tokio::test]
async fn a_run_deleted_with_its_routine_arrives_with_its_routine_null() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let morning = routine(&app, &ada, "Morning").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", RUNS, json!({ "after": app.change_cursor_for(&ada).await })).await;
    let started = run(&app, &morning).await;
    assert_eq!(next_run(&mut ws).await["run"]["routine"]["name"], "Morning");

    app.db.execute_unprepared(&format!("DELETE FROM routine WHERE id = '{morning}'")).await.unwrap();
    let event = next_run(&mut ws).await;
    assert_eq!((&event["operation"], &event["run"]["rowId"]), (&json!("DELETED"), &json!(started)));
    assert_eq!(event["run"]["routine"], Value::Null);
}

#[tokio::test]
async fn foreign_key_objects_resolve_inside_subscription_events() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 1.0, 1.0, None, None).await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let hello = post(&app, &bob, "Hello").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe(
        "1",
        "subscription($after: String) { myReviewChanged(after: $after) { review { user { username } place { name } } } }",
        json!({ "after": app.change_cursor_for(&ada).await }),
    )
    .await;
    ws.subscribe(
        "2",
        "subscription($post: ID!) { commentAdded(postId: $post) { comment { authorId author { username } post { title } } } }",
        json!({ "post": hello }),
    )
    .await;
    // Live before the writes: a replay would show only what is visible now.
    review(&app, &ada, "p1").await;
    let event = ws.next_data("1").await;
    assert_eq!(
        event["myReviewChanged"]["review"],
        json!({ "user": { "username": "ada" }, "place": { "name": "Place p1" } })
    );

    comment(&app, &ada, &hello, "Hi Bob").await;
    let event = ws.next_data("2").await;
    assert_eq!(
        event["commentAdded"]["comment"],
        json!({ "authorId": ada.id, "author": { "username": "ada" }, "post": { "title": "Hello" } })
    );
}

#[tokio::test]
async fn a_review_deleted_with_its_place_arrives_with_its_place_null_and_the_subscription_goes_on() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 1.0, 1.0, None, None).await;
    app.insert_place("p2", "cafe", 1.0, 1.0, None, None).await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe(
        "1",
        "subscription($after: String) { myReviewChanged(after: $after) { operation review { placeId place { name } } } }",
        json!({ "after": app.change_cursor_for(&ada).await }),
    )
    .await;
    review(&app, &ada, "p1").await;
    assert_eq!(ws.next_data("1").await["myReviewChanged"]["review"]["place"]["name"], "Place p1");

    // The place's reviews go with it (the foreign key cascades).
    app.db.execute_unprepared("DELETE FROM place WHERE id = 'p1'").await.expect("deleting the place");
    let event = ws.next_data("1").await;
    assert_eq!(
        event["myReviewChanged"],
        json!({ "operation": "DELETED", "review": { "placeId": "p1", "place": null } }),
        "the place is gone, the event is not"
    );
    review(&app, &ada, "p2").await;
    assert_eq!(ws.next_data("1").await["myReviewChanged"]["review"]["place"]["name"], "Place p2");
}

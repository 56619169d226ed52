//! Live changes: capture, order, catch-up, policies.

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use tests::{TestApp, WsClient};

const MY_REVIEWS: &str = "subscription($after: String) {
  myReviewChanged(after: $after) { operation cursor review { id userId rating place { name } } }
}";
const PLACES: &str = "subscription($after: String, $category: String, $near: NearInput) {
  placeChanged(after: $after, category: $category, near: $near) { operation cursor place { rowId category } }
}";

async fn create_review(app: &TestApp, token: &str, place: &str, rating: f64) -> String {
    let data = app
        .data(
            Some(token),
            "mutation($p: ID!, $r: Float!) { createReview(input: {placeId: $p, rating: $r}) { review { id } } }",
            json!({ "p": place, "r": rating }),
        )
        .await;
    data["createReview"]["review"]["id"].as_str().unwrap_or_default().to_owned()
}

async fn next_place(ws: &mut WsClient, id: &str) -> (String, String) {
    let data = ws.next_data(id).await;
    let event = &data["placeChanged"];
    (
        event["operation"].as_str().unwrap_or_default().to_owned(),
        event["place"]["rowId"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_subscriber_receives_its_own_review_changes_and_nothing_of_another_users() {
    let app = TestApp::spawn().await;
    app.insert_place("p1", "cafe", 1.0, 1.0, None, None).await;
    app.insert_place("p2", "cafe", 1.0, 1.0, None, None).await;
    app.insert_place("p3", "cafe", 1.0, 1.0, None, None).await;
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", MY_REVIEWS, json!({ "after": app.change_cursor_for(&ada).await })).await;
    // Live before the writes below: a replay shows only rows the viewer may
    // see now, so a review created and deleted before the subscription has
    // caught up would be replayed as its deletion alone (by design). With
    // the logical capture the stamps come a little later, which made that
    // window wide enough to hit.
    let warm_up = create_review(&app, &ada.token, "p3", 3.0).await;
    assert_eq!(ws.next_data("1").await["myReviewChanged"]["review"]["id"], warm_up.as_str());

    create_review(&app, &bob.token, "p1", 1.0).await;
    let review = create_review(&app, &ada.token, "p1", 4.0).await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { updateReview(input: {id: $id, rating: 5}) { review { id } } }",
        json!({ "id": review }),
    )
    .await;
    create_review(&app, &bob.token, "p2", 2.0).await;
    app.data(
        Some(&ada.token),
        "mutation($id: ID!) { deleteReview(input: {id: $id}) { review { id } } }",
        json!({ "id": review }),
    )
    .await;
    let marker = create_review(&app, &ada.token, "p2", 3.0).await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = ws.next_data("1").await["myReviewChanged"].clone();
        assert_eq!(event["review"]["userId"], ada.id.as_str(), "only Ada's reviews: {event}");
        assert_eq!(event["review"]["place"]["name"].as_str().map(|n| n.starts_with("Place")), Some(true));
        seen.push((
            event["operation"].as_str().unwrap_or_default().to_owned(),
            event["review"]["id"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    assert_eq!(
        seen,
        [
            ("INSERTED".to_owned(), review.clone()),
            ("UPDATED".to_owned(), review.clone()),
            ("DELETED".to_owned(), review),
            ("INSERTED".to_owned(), marker)
        ]
    );
}

#[tokio::test]
async fn subscribing_to_my_reviews_needs_a_signed_in_user() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", MY_REVIEWS, json!({})).await;
    let message = ws.message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_anonymous_socket_receives_public_place_changes_filtered_by_category_and_distance() {
    let app = TestApp::spawn().await;
    let service = app.sign_up_as("importer", "service").await;
    let mut ws = app.subscriber(None).await;
    let after = app.change_cursor().await;
    ws.subscribe("cafes", PLACES, json!({ "after": after, "category": "cafe" })).await;
    ws.subscribe("near", PLACES, json!({ "after": after, "near": { "lat": 0.0, "lng": 0.0, "radiusKm": 2.0 } })).await;

    let create = "mutation($input: CreatePlaceInput!) { createPlace(input: $input) { place { id } } }";
    for (id, category, lat) in [("far-bar", "bar", 1.0), ("near-bar", "bar", 0.01), ("far-cafe", "cafe", 1.0)] {
        app.data(
            Some(&service.token),
            create,
            json!({ "input": { "id": id, "name": id, "lat": lat, "lng": 0.0, "category": category } }),
        )
        .await;
    }

    let mut cafes = Vec::new();
    let mut near = Vec::new();
    for _ in 0..2 {
        let message = ws.message().await;
        let id = message["payload"]["data"]["placeChanged"]["place"]["rowId"].as_str().unwrap_or_default().to_owned();
        match message["id"].as_str() {
            Some("cafes") => cafes.push(id),
            Some("near") => near.push(id),
            _ => panic!("{message}"),
        }
    }
    assert_eq!(cafes, ["far-cafe"]);
    assert_eq!(near, ["near-bar"]);
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_delivered_not_skipped() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": app.change_cursor().await })).await;

    // The first transaction takes its id first, then stays open...
    let first = app.db.begin().await.expect("beginning a transaction");
    first
        .execute_unprepared("INSERT INTO place (id, name, lat, lng) VALUES ('early', 'early', 0, 0)")
        .await
        .expect("running INSERT INTO place");
    // ...while a second one commits.
    app.insert_place("late", "cafe", 0.0, 0.0, None, None).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    first.commit().await.expect("committing");

    // Both arrive, in commit order: the second transaction committed first.
    assert_eq!(next_place(&mut ws, "1").await, ("INSERTED".to_owned(), "late".to_owned()));
    assert_eq!(next_place(&mut ws, "1").await, ("INSERTED".to_owned(), "early".to_owned()));
}

#[tokio::test]
async fn changes_to_one_row_arrive_in_the_order_they_took_effect() {
    let app = TestApp::spawn().await;
    app.insert_place("p", "cafe", 0.0, 0.0, Some(1.0), None).await;
    let mut ws = app.subscriber(None).await;
    let query = "subscription($a: String) { placeChanged(after: $a) { place { rowId rating } } }";
    ws.subscribe("1", query, json!({ "a": app.change_cursor().await })).await;

    // The first transaction takes its id by writing another row, then waits;
    // the second changes the place and commits; then the first changes the
    // same place (after the second: its change is the one that stays).
    let first = app.db.begin().await.expect("beginning a transaction");
    first
        .execute_unprepared("INSERT INTO place (id, name, lat, lng) VALUES ('other', 'o', 0, 0)")
        .await
        .expect("running INSERT INTO place");
    app.db.execute_unprepared("UPDATE place SET rating = 2 WHERE id = 'p'").await.expect("running UPDATE place");
    first.execute_unprepared("UPDATE place SET rating = 3 WHERE id = 'p'").await.expect("running UPDATE place");
    first.commit().await.expect("committing");

    // Read until both updates of `p` arrived (the setup's own insert may
    // come first), then check their order.
    let mut ratings = Vec::new();
    while !(ratings.contains(&2.0) && ratings.contains(&3.0)) {
        let place = ws.next_data("1").await["placeChanged"]["place"].clone();
        if let Some(rating) = place["rating"].as_f64() {
            ratings.push(rating);
        }
        assert!(ratings.len() <= 4, "{ratings:?}");
    }
    assert_eq!(ratings.last().copied(), Some(3.0), "the last event is the row as it is now: {ratings:?}");
    assert_eq!(app.count("SELECT rating::bigint FROM place WHERE id = 'p'").await, 3);
}

#[tokio::test]
async fn a_killed_listener_reconnects_and_every_event_arrives_once_in_order() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": app.change_cursor().await })).await;

    for i in 0..30 {
        app.insert_place(&format!("p{i:02}"), "cafe", 0.0, 0.0, None, None).await;
        if i == 10 || i == 20 {
            // Wait until the listener is (back) on its connection, then kill it.
            let listening = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND query ILIKE 'listen%'",
                app.database
            );
            let mut back = false;
            for _ in 0..100 {
                if app.count(&listening).await == 1 {
                    back = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(back, "the listener reconnects");
            let killed = app
                .count(&format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND query ILIKE 'listen%'",
                    app.database
                ))
                .await;
            assert_eq!(killed, 1, "exactly one listener connection per server");
        }
    }

    for i in 0..30 {
        assert_eq!(next_place(&mut ws, "1").await.1, format!("p{i:02}"));
    }
}

#[tokio::test]
async fn a_lagging_subscriber_catches_up_from_the_log_without_slowing_others() {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.realtime_buffer = 16;
    let app = TestApp::spawn_with(config).await;
    let after = app.change_cursor().await;
    let mut slow = app.subscriber(None).await;
    slow.subscribe("1", PLACES, json!({ "after": after })).await;
    let mut fast = app.subscriber(None).await;
    fast.subscribe("1", PLACES, json!({ "after": after })).await;

    // 500 rows in one statement: the listener publishes them in one burst,
    // far past the 16-event buffer.
    app.db
        .execute_unprepared("INSERT INTO place (id, name, lat, lng) SELECT 'p' || lpad(g::text, 4, '0'), 'n', 0, 0 FROM generate_series(1, 500) g")
        .await
        .expect("running INSERT INTO place");

    for i in 1..=500 {
        assert_eq!(next_place(&mut fast, "1").await.1, format!("p{i:04}"));
    }
    for i in 1..=500 {
        assert_eq!(next_place(&mut slow, "1").await.1, format!("p{i:04}"), "every event once, in order");
    }
    assert!(app.realtime.lag_recoveries() > 0, "the burst outran the buffer and was caught up from the log");
}

#[tokio::test]
async fn resubscribing_with_the_last_cursor_replays_exactly_what_was_missed() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": app.change_cursor().await })).await;
    app.insert_place("a", "cafe", 0.0, 0.0, None, None).await;
    app.insert_place("b", "cafe", 0.0, 0.0, None, None).await;
    next_place(&mut ws, "1").await;
    let last = ws.next_data("1").await["placeChanged"]["cursor"].as_str().unwrap_or_default().to_owned();
    drop(ws);

    app.insert_place("c", "cafe", 0.0, 0.0, None, None).await;
    app.insert_place("d", "cafe", 0.0, 0.0, None, None).await;
    let mut again = app.subscriber(None).await;
    again.subscribe("1", PLACES, json!({ "after": last })).await;
    assert_eq!(next_place(&mut again, "1").await.1, "c");
    assert_eq!(next_place(&mut again, "1").await.1, "d");
    app.insert_place("e", "cafe", 0.0, 0.0, None, None).await;
    assert_eq!(next_place(&mut again, "1").await.1, "e", "live after the replay, no duplicate at the seam");
}

#[tokio::test]
async fn a_cursor_older_than_retention_is_refused_with_a_clear_error() {
    let app = TestApp::spawn().await;
    let old = app.change_cursor().await;
    app.insert_place("a", "cafe", 0.0, 0.0, None, None).await;
    // Pruning removes only stamped events (in the logical capture mode the
    // sequencer stamps a moment after the commit).
    app.realtime.settled_head().await;
    // Age the event past retention, and let a new server prune at start.
    app.db
        .execute_unprepared("UPDATE change_log SET created_at = now() - interval '2 days'")
        .await
        .expect("running UPDATE change_log");
    let second = TestApp::spawn_with(tests::test_config(&app.database)).await;
    let mut pruned = false;
    for _ in 0..50 {
        if app.count("SELECT count(*) FROM change_log").await == 0 {
            pruned = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(pruned, "the listener prunes events past retention");

    let mut ws = second.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": old })).await;
    let message = ws.message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], "CURSOR_EXPIRED", "{message}");
}

#[tokio::test]
async fn a_malformed_cursor_is_bad_input() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": "nonsense" })).await;
    let message = ws.message().await;
    assert_eq!(message["type"], "error");
    assert_eq!(message["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[tokio::test]
async fn an_expiring_token_ends_its_subscriptions_with_unauthenticated() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let now = chrono::Utc::now().timestamp();
    let short = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": ada.id, "role": "user", "iat": now, "exp": now + 2 }),
        &jsonwebtoken::EncodingKey::from_secret(tests::JWT_SECRET.as_bytes()),
    )
    .unwrap_or_default();
    let mut ws = app.subscriber(Some(&short)).await;
    ws.subscribe("1", MY_REVIEWS, json!({})).await;

    let message = ws.message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], "UNAUTHENTICATED");
    // New subscriptions on the same socket are refused.
    ws.subscribe("2", MY_REVIEWS, json!({})).await;
    assert_eq!(ws.close_code().await, Some(4403));
}

#[tokio::test]
async fn deactivating_a_user_ends_their_live_subscriptions() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", MY_REVIEWS, json!({ "after": app.change_cursor_for(&ada).await })).await;

    app.data(
        Some(&admin.token),
        "mutation($id: ID!) { setUserActive(input: {userId: $id, isActive: false}) { user { id } } }",
        json!({ "id": ada.id }),
    )
    .await;

    let message = ws.message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], "UNAUTHENTICATED", "{message}");
}

#[tokio::test]
async fn two_servers_on_one_database_each_deliver_every_event() {
    let one = TestApp::spawn().await;
    let two = TestApp::spawn_with(tests::test_config(&one.database)).await;
    let service = one.sign_up_as("importer", "service").await;
    let after = one.change_cursor().await;
    let mut on_one = one.subscriber(None).await;
    on_one.subscribe("1", PLACES, json!({ "after": after })).await;
    let mut on_two = two.subscriber(None).await;
    on_two.subscribe("1", PLACES, json!({ "after": after })).await;

    let create = "mutation($id: ID!) { createPlace(input: {id: $id, name: \"x\", lat: 0, lng: 0}) { place { id } } }";
    one.data(Some(&service.token), create, json!({ "id": "via-one" })).await;
    two.data(Some(&service.token), create, json!({ "id": "via-two" })).await;

    for ws in [&mut on_one, &mut on_two] {
        assert_eq!(next_place(ws, "1").await.1, "via-one");
        assert_eq!(next_place(ws, "1").await.1, "via-two");
    }
    let listeners = one
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND query ILIKE 'listen%'",
            one.database
        ))
        .await;
    assert_eq!(listeners, 2, "one listener per server");
}

#[tokio::test]
async fn a_bulk_write_of_ten_thousand_rows_is_one_log_insert_and_reaches_subscribers() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe(
        "1",
        "subscription($after: String) { placeChanged(after: $after) { cursor } }",
        json!({ "after": app.change_cursor().await }),
    )
    .await;
    // Capture is per statement, not per row.
    let per_row = app
        .count(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%capture%' AND NOT tgisinternal AND (tgtype & 1) = 1",
        )
        .await;
    assert_eq!(per_row, 0, "no row-level capture trigger");

    app.db
        .execute_unprepared(
            "INSERT INTO place (id, name, lat, lng) SELECT 'bulk' || g, 'n', 0, 0 FROM generate_series(1, 10000) g",
        )
        .await
        .expect("running INSERT INTO place");
    assert_eq!(app.count("SELECT count(DISTINCT txid) FROM change_log").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM change_log").await, 10_000);

    let mut cursors = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        cursors.push(ws.next_data("1").await["placeChanged"]["cursor"].clone());
    }
    let distinct: std::collections::HashSet<String> = cursors.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), 10_000, "each event once");
}

#[tokio::test]
async fn while_the_database_is_down_subscribers_stay_connected_and_then_miss_nothing() {
    // A cluster of its own, so stopping it harms no other test.
    let cluster = tests::Cluster::start();
    let database = cluster.migrated_database("outage").await;
    let app = TestApp::spawn_on(&cluster, tests::test_config_on(&cluster, &database)).await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": app.change_cursor().await })).await;
    app.insert_place("before", "cafe", 0.0, 0.0, None, None).await;
    assert_eq!(next_place(&mut ws, "1").await.1, "before");
    let feed = app.realtime.clone();
    tests::eventually("the listener reports it is connected", async || feed.listener_connected()).await;

    // A write committed just before the outage may not be delivered yet.
    app.insert_place("at-the-edge", "cafe", 0.0, 0.0, None, None).await;
    cluster.stop();
    tests::eventually("the listener reports the lost database", async || !feed.listener_connected()).await;
    assert_eq!(app.metrics().await.value("api_listener_connected"), 0.0);
    cluster.start_again();

    let superuser =
        sea_orm::Database::connect(cluster.url("postgres", &database)).await.expect("connecting to the database");
    superuser
        .execute_unprepared("INSERT INTO place (id, name, lat, lng) VALUES ('after', 'after', 0, 0)")
        .await
        .expect("running INSERT INTO place");
    assert_eq!(next_place(&mut ws, "1").await.1, "at-the-edge");
    assert_eq!(next_place(&mut ws, "1").await.1, "after", "nothing lost, nothing invented");
    tests::eventually("the listener reports it is back", async || feed.listener_connected()).await;
    // The socket survived the outage: it still answers.
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.message().await["type"], "pong");
}

#[tokio::test]
async fn listener_lag_counts_from_commit_so_a_long_writing_transaction_is_not_lag() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("1", PLACES, json!({ "after": app.change_cursor().await })).await;

    // The write happens at once; the commit two seconds later.
    let tx = app.db.begin().await.expect("beginning a transaction");
    tx.execute_unprepared("INSERT INTO place (id, name, lat, lng) VALUES ('slow', 'slow', 0, 0)")
        .await
        .expect("running INSERT INTO place");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    tx.commit().await.expect("committing");
    assert_eq!(next_place(&mut ws, "1").await.1, "slow");

    let lag = app.realtime.lag_ms();
    assert!(lag < 2000, "{lag} ms: the transaction's open time was counted as listener lag");
}

#[tokio::test]
async fn only_changes_to_published_columns_are_events() {
    let app = TestApp::spawn().await;
    app.sign_up("ada").await;
    // Signing in touches users.last_login, which is not published.
    app.data(None, "mutation { signIn(input: {login: \"ada\", password: \"password-ada\"}) { token } }", json!({}))
        .await;
    assert_eq!(app.count("SELECT count(*) FROM change_log WHERE table_name = 'users'").await, 0);
    app.db.execute_unprepared("UPDATE users SET is_active = false").await.expect("running UPDATE users");
    assert_eq!(app.count("SELECT count(*) FROM change_log WHERE table_name = 'users'").await, 1);
    let published =
        app.count("SELECT count(*) FROM change_log WHERE new_row ? 'email' OR new_row ? 'password_hash'").await;
    assert_eq!(published, 0, "no email or password hash in the log");
}

#[tokio::test]
async fn replaying_past_a_deactivation_that_was_undone_does_not_end_the_subscription() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let before = app.change_cursor_for(&ada).await;
    let set =
        "mutation($id: ID!, $on: Boolean!) { setUserActive(input: {userId: $id, isActive: $on}) { user { id } } }";
    app.data(Some(&admin.token), set, json!({ "id": ada.id, "on": false })).await;
    app.data(Some(&admin.token), set, json!({ "id": ada.id, "on": true })).await;
    app.insert_place("p1", "cafe", 1.0, 1.0, None, None).await;
    app.insert_place("p2", "cafe", 1.0, 1.0, None, None).await;
    // The subscription's account check takes the broadcast position as the
    // point after which account changes end it: let it pass the two
    // changes first (in the logical capture mode they are stamped a moment
    // after they commit).
    app.realtime.settled_head().await;

    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", PLACES, json!({ "after": before })).await;
    assert_eq!(next_place(&mut ws, "1").await.1, "p1", "the old deactivation is history, not a reason to stop");
}

#[tokio::test]
async fn live_changes_keep_flowing_while_slow_requests_hold_every_pooled_connection() {
    let app = TestApp::spawn_with_one_connection().await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    let preferences = "subscription { myPreferenceChanged { operation preference { category rating } } }";
    ws.subscribe("1", preferences, json!({})).await;
    // Once an event has arrived, the subscription is live.
    let set = "mutation { setPreference(input: {category: \"cafe\", rating: 3}) { preference { category } } }";
    app.data(Some(&ada.token), set, json!({})).await;
    assert_eq!(ws.next_data("1").await["myPreferenceChanged"]["preference"]["category"], "cafe");

    let (blocker, slow) = app.hold_the_only_connection().await;
    let refused = app.graphql(None, "{ places { totalCount } }", json!({})).await;
    assert_eq!(tests::error_code(&refused), "SERVICE_UNAVAILABLE", "the pool is exhausted: {refused}");

    app.db
        .execute_unprepared(&format!(
            "INSERT INTO preference (user_id, category, rating) VALUES ('{}', 'bakery', 4)",
            ada.id
        ))
        .await
        .expect("running INSERT INTO preference");
    let event = ws.next_data("1").await["myPreferenceChanged"].clone();
    assert_eq!(event["preference"]["category"], "bakery", "delivered while the pool is exhausted: {event}");

    blocker.rollback().await.expect("rolling back");
    assert_eq!(slow.await.ok().flatten(), Some(200));
}

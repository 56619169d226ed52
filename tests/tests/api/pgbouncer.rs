//! Behind PgBouncer in transaction pooling mode, as the seeds deploy the
//! server: requests share a few server connections, LISTEN goes direct.

use futures_util::future::join_all;
use serde_json::json;
use tests::{PgBouncer, TestApp, create_database, error_code, test_config};

const MY_REVIEWS: &str = "subscription($after: String) {
  myReviewChanged(after: $after) { operation review { userId rating place { name } } }
}";
const REVIEW: &str =
    "mutation($p: ID!, $r: Float!) { createReview(input: {placeId: $p, rating: $r}) { review { id rating } } }";
const READ: &str = "{ places(first: 5) { totalCount edges { node { id name } } } myReviews { totalCount } }";

#[tokio::test]
async fn queries_mutations_and_subscriptions_work_through_pgbouncer_in_transaction_mode() {
    let database = create_database(true).await;
    // Two server connections for up to twelve client connections: nearly
    // every transaction lands on a server connection another client used.
    let bouncer = PgBouncer::start(2);
    let mut config = test_config(&database);
    config.database_listen_url = config.database_url.take();
    config.database_url = Some(bouncer.url("app_authenticator", &database).into());
    config.database_transaction_pooler = true;
    config.database_pool_size = 12;
    config.database_max_overflow = 0;
    let app = TestApp::spawn_with(config).await;
    const PLACES: usize = 15;
    for i in 0..PLACES {
        app.insert_place(&format!("p{i}"), "cafe", 1.0, 1.0, None, None).await;
    }
    let ada = app.sign_up("ada").await;
    let bob = app.sign_up("bob").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    ws.subscribe("1", MY_REVIEWS, json!({ "after": app.change_cursor_for(&ada).await })).await;

    // Mutations, reads and failing requests at once, many more than there
    // are server connections.
    let mut requests = Vec::new();
    for i in 0..PLACES {
        for user in [&ada, &bob] {
            let rating = if user.id == ada.id { 4.0 } else { 2.0 };
            requests.push(app.graphql(Some(&user.token), REVIEW, json!({ "p": format!("p{i}"), "r": rating })));
            requests.push(app.graphql(Some(&user.token), READ, json!({})));
        }
        requests.push(app.graphql(Some(&ada.token), REVIEW, json!({ "p": "nowhere", "r": 1.0 })));
    }
    let bodies = join_all(requests).await;
    let mut failures = 0;
    for body in &bodies {
        if body.get("errors").is_some() {
            assert_eq!(error_code(body), "NOT_FOUND", "only the reviews of a missing place fail: {body}");
            failures += 1;
        } else if let Some(review) = body["data"].get("createReview") {
            assert!(review["review"]["rating"].as_f64().is_some(), "{body}");
        } else {
            assert_eq!(body["data"]["places"]["totalCount"], PLACES, "{body}");
        }
    }
    assert_eq!(failures, PLACES);
    assert_eq!(app.count("SELECT count(*) FROM review").await, 2 * PLACES as i64, "every review written once");

    // Ada hears her fifteen reviews, with their places loaded through the
    // pooler too, and nothing of Bob's.
    for _ in 0..PLACES {
        let event = ws.next_data("1").await["myReviewChanged"].clone();
        assert_eq!(event["operation"], "INSERTED", "{event}");
        assert_eq!(event["review"]["userId"], ada.id.as_str(), "{event}");
        assert_eq!(event["review"]["place"]["name"].as_str().map(|n| n.starts_with("Place p")), Some(true));
    }

    // The requests did share: the request login never had more server
    // connections than PgBouncer's two plus the direct listener and feed.
    let backends = app
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND usename = 'app_authenticator'"
        ))
        .await;
    assert!(backends <= 4, "{backends} connections of the request login");
    let ready = app.http.get(format!("{}/readyz", app.address)).send().await.map(|r| r.status().as_u16());
    assert_eq!(ready.ok(), Some(200), "readiness is checked through the pooler too");
    drop(bouncer);
}

#[tokio::test]
async fn a_transaction_pooler_without_a_direct_listen_url_is_refused_at_start() {
    let database = create_database(true).await;
    let mut config = test_config(&database);
    config.database_transaction_pooler = true;
    let error = api::Application::build(config).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("DATABASE_LISTEN_URL"), "{error}");
}

//! The websocket speaks what HTTP does (issue 14): automatic persisted
//! queries from the same store, and subscription events whose keys follow
//! the selection set like every HTTP response's.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tests::{TestApp, WsClient};

const PLACES: &str = "subscription { placeChanged { operation place { rowId } } }";
/// `place` is resolved through a DataLoader, so it completes after the
/// fields beside it: without the key order it moved behind them.
const MY_REVIEWS: &str = "subscription { myReviewChanged { review { place { name } rating } operation cursor } }";

fn sha256_hex(query: &str) -> String {
    Sha256::digest(query.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// A `subscribe` whose payload is `payload` as it is.
async fn subscribe_with(ws: &mut WsClient, id: &str, payload: Value) {
    ws.send(json!({ "type": "subscribe", "id": id, "payload": payload })).await;
}

/// The `error` message's first error code for operation `id`.
async fn error_code_of(ws: &mut WsClient, id: &str) -> String {
    let message = ws.message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["id"], id, "{message}");
    message["payload"][0]["extensions"]["code"].as_str().unwrap_or_default().to_owned()
}

/// The next data message's text as the server wrote it (key order is
/// lost once parsed into a `serde_json::Value`), pings answered.
async fn next_text(ws: &mut WsClient) -> String {
    loop {
        let text = ws.raw_text().await;
        let message: Value = serde_json::from_str(&text).expect("a JSON message");
        match message["type"].as_str() {
            Some("ping") => ws.send(json!({ "type": "pong" })).await,
            Some("next") => return text,
            _ => panic!("expected a next message: {text}"),
        }
    }
}

/// Where `needle` is in `text`, failing the test if it is not.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle).unwrap_or_else(|| panic!("{needle} not in {text}"))
}

#[tokio::test]
async fn a_subscription_sent_as_a_hash_is_not_found_then_persisted_and_the_socket_stays_open() {
    let app = TestApp::spawn().await;
    let hash = sha256_hex(PLACES);
    let mut ws = app.subscriber(None).await;

    subscribe_with(&mut ws, "1", json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(error_code_of(&mut ws, "1").await, "PERSISTED_QUERY_NOT_FOUND");
    // Apollo's link retries with the document; the same socket serves it.
    subscribe_with(&mut ws, "2", json!({ "query": PLACES, "extensions": persisted(&hash) })).await;
    subscribe_with(&mut ws, "3", json!({ "extensions": persisted(&hash) })).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.insert_place("p1", "cafe", 38.7, -9.1, None, None).await;

    let mut ids = Vec::new();
    for _ in 0..2 {
        let message = ws.message().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["payload"]["data"]["placeChanged"]["place"]["rowId"], "p1", "{message}");
        ids.push(message["id"].as_str().unwrap_or_default().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["2", "3"], "the hash alone subscribes once the document is known");
}

#[tokio::test]
async fn a_persisted_query_over_the_websocket_checks_its_hash_and_shares_the_http_store() {
    let app = TestApp::spawn().await;
    let query = "{ __typename }";
    // Persisted over HTTP...
    let body: Value = app
        .http
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": query, "extensions": persisted(&sha256_hex(query)) }))
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("a JSON body");
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
    let mut ws = app.subscriber(None).await;

    // ...and run by its hash over the websocket.
    subscribe_with(&mut ws, "1", json!({ "extensions": persisted(&sha256_hex(query)) })).await;
    assert_eq!(ws.next_data("1").await, json!({ "__typename": "Query" }));
    assert_eq!(ws.message().await, json!({ "type": "complete", "id": "1" }));
    // A document that is not its hash's is refused, and only that operation.
    subscribe_with(&mut ws, "2", json!({ "query": PLACES, "extensions": persisted(&"a".repeat(64)) })).await;
    assert_eq!(error_code_of(&mut ws, "2").await, "BAD_USER_INPUT");
    subscribe_with(&mut ws, "3", json!({ "extensions": persisted("not hex") })).await;
    assert_eq!(error_code_of(&mut ws, "3").await, "BAD_USER_INPUT");
    subscribe_with(&mut ws, "4", json!({ "query": query })).await;
    assert_eq!(ws.next_data("4").await, json!({ "__typename": "Query" }), "the socket is still open");
}

#[tokio::test]
async fn the_legacy_protocol_answers_an_unknown_hash_with_an_error_for_that_operation() {
    let app = TestApp::spawn().await;
    let mut ws = app.websocket("graphql-ws").await;
    let ack = ws.init(None).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");

    ws.send(json!({ "type": "start", "id": "1", "payload": { "extensions": persisted(&sha256_hex(PLACES)) } })).await;

    let message = ws.message().await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{message}");
    ws.send(json!({ "type": "start", "id": "2", "payload": { "query": "{ __typename }" } })).await;
    let data = ws.message().await;
    assert_eq!(data["type"], "data", "the socket is still open: {data}");
    assert_eq!(data["payload"]["data"]["__typename"], "Query", "{data}");
}

#[tokio::test]
async fn subscription_events_keep_the_selection_sets_key_order_when_executed_and_when_shared() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    app.insert_place("p1", "cafe", 38.7, -9.1, None, None).await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    // Two subscriptions of one audience (same viewer, same document): one
    // executes each event, the other receives its serialised payload.
    ws.subscribe("1", MY_REVIEWS, json!({})).await;
    ws.subscribe("2", MY_REVIEWS, json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    sea_orm::ConnectionTrait::execute_unprepared(
        &app.db,
        &format!("INSERT INTO review (user_id, place_id, rating) VALUES ('{}', 'p1', 4)", ada.id),
    )
    .await
    .expect("inserting a review");

    for _ in 0..2 {
        let text = next_text(&mut ws).await;
        assert!(at(&text, "\"review\"") < at(&text, "\"operation\""), "{text}");
        assert!(at(&text, "\"operation\"") < at(&text, "\"cursor\""), "{text}");
        assert!(at(&text, "\"place\"") < at(&text, "\"rating\""), "{text}");
        assert!(text.contains("\"name\":\"Place p1\""), "{text}");
    }
}

//! The websocket protocols and their close codes.

use serde_json::json;
use tests::{Received, TestApp};

const PLACES: &str = "subscription { placeChanged { operation place { id } } }";

#[tokio::test]
async fn invalid_messages_close_with_4400() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.send_text("not json").await;
    assert_eq!(ws.close_code().await, Some(4400));

    let mut ws = app.subscriber(None).await;
    ws.send(json!({ "type": "no-such-type" })).await;
    assert_eq!(ws.close_code().await, Some(4400));
}

#[tokio::test]
async fn subscribing_before_the_acknowledgement_closes_with_4401() {
    let app = TestApp::spawn().await;
    let mut ws = app.websocket("graphql-transport-ws").await;
    ws.subscribe("1", PLACES, json!({})).await;
    assert_eq!(ws.close_code().await, Some(4401));
}

#[tokio::test]
async fn an_invalid_token_closes_with_4403() {
    let app = TestApp::spawn().await;
    let mut ws = app.websocket("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } })).await;
    assert_eq!(ws.receive().await, Received::Closed(Some(4403)));
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.ws_init_timeout = 1;
    let app = TestApp::spawn_with(config).await;
    let mut ws = app.websocket("graphql-transport-ws").await;
    assert_eq!(ws.close_code().await, Some(4408));
}

#[tokio::test]
async fn a_duplicate_subscription_id_closes_with_4409() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe("same", PLACES, json!({})).await;
    ws.subscribe("same", PLACES, json!({})).await;
    assert_eq!(ws.close_code().await, Some(4409));
}

#[tokio::test]
async fn a_second_connection_init_closes_with_4429() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.send(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.close_code().await, Some(4429));
}

#[tokio::test]
async fn the_token_is_read_from_the_init_payload_in_any_case_and_pings_are_answered() {
    let app = TestApp::spawn().await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.websocket("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "AUTHORIZATION": format!("Bearer {}", ada.token) } }))
        .await;
    assert_eq!(ws.message().await["type"], "connection_ack");
    ws.send(json!({ "type": "ping", "payload": { "n": 1 } })).await;
    assert_eq!(ws.message().await, json!({ "type": "pong", "payload": { "n": 1 } }));
    // Queries run over the socket too, as the signed-in user.
    ws.subscribe("q", "{ me { username } }", json!({})).await;
    assert_eq!(ws.next_data("q").await, json!({ "me": { "username": "ada" } }));
    assert_eq!(ws.message().await, json!({ "type": "complete", "id": "q" }));
}

#[tokio::test]
async fn the_server_pings_idle_connections() {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.ws_keepalive = 1;
    let app = TestApp::spawn_with(config).await;
    let mut ws = app.websocket("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.message().await["type"], "connection_ack");
    // `receive` answers pings itself; a raw read sees them.
    let ping = ws.raw_text().await;
    assert!(ping.contains("\"ping\""), "{ping}");
}

#[tokio::test]
async fn the_legacy_subscriptions_transport_ws_protocol_is_accepted() {
    let app = TestApp::spawn().await;
    let service = app.sign_up_as("importer", "service").await;
    let after = app.change_cursor().await;
    let mut ws = app.websocket("graphql-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(ws.message().await["type"], "connection_ack");
    ws.send(json!({ "type": "start", "id": "1", "payload": { "query": "subscription($a: String) { placeChanged(after: $a) { place { id } } }", "variables": { "a": after } } })).await;
    app.data(
        Some(&service.token),
        "mutation { createPlace(input: {id: \"legacy\", name: \"x\", lat: 0, lng: 0}) { id } }",
        json!({}),
    )
    .await;
    let data = ws.message().await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["placeChanged"]["place"]["id"], "legacy");
    ws.send(json!({ "type": "stop", "id": "1" })).await;
    ws.send(json!({ "type": "connection_terminate" })).await;
    assert_eq!(ws.close_code().await, Some(1000));
}

#[tokio::test]
async fn a_deactivated_account_cannot_open_new_subscriptions_on_an_open_socket() {
    let app = TestApp::spawn().await;
    let admin = app.sign_up_as("root", "admin").await;
    let ada = app.sign_up("ada").await;
    let mut ws = app.subscriber(Some(&ada.token)).await;
    app.data(
        Some(&admin.token),
        "mutation($id: ID!) { setUserActive(userId: $id, isActive: false) { id } }",
        json!({ "id": ada.id }),
    )
    .await;
    ws.subscribe("1", PLACES, json!({})).await;
    assert_eq!(ws.close_code().await, Some(4403));
}

#[tokio::test]
async fn an_oversized_operation_id_is_an_invalid_message() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    ws.subscribe(&"x".repeat(129), PLACES, json!({})).await;
    assert_eq!(ws.close_code().await, Some(4400));
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_disconnected() {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.ws_keepalive = 1;
    let app = TestApp::spawn_with(config).await;
    let mut ws = app.websocket("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init" })).await;
    // Read raw frames (no automatic pong) until the server gives up.
    let mut pings = 0;
    loop {
        let text = ws.raw_text_or_close().await;
        match text {
            Some(t) if t.contains("\"ping\"") => pings += 1,
            Some(_) => {}
            None => break,
        }
    }
    assert!(pings >= 2, "pinged {pings} times before closing");
}

#[tokio::test]
async fn shutting_down_closes_open_websockets_with_service_restart() {
    let app = TestApp::spawn().await;
    let mut subscribed = app.subscriber(None).await;
    subscribed.subscribe("1", PLACES, json!({})).await;
    let mut legacy = app.websocket("graphql-ws").await;
    let address = app.address.clone();

    app.shut_down().await;
    assert_eq!(subscribed.close_code().await, Some(1012));
    assert_eq!(legacy.close_code().await, Some(1012));
    assert!(reqwest::get(format!("{address}/healthz")).await.is_err(), "no longer listening");
}

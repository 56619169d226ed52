//! The websocket protocols and their close codes.

use serde_json::json;
use tests::{Received, TestApp, raw_frames_until};

const TEN_SECONDS: std::time::Duration = std::time::Duration::from_secs(10);
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLACES: &str = "subscription { placeChanged { operation place { rowId } } }";

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
    ws.send(json!({ "type": "start", "id": "1", "payload": { "query": "subscription($a: String) { placeChanged(after: $a) { place { rowId } } }", "variables": { "a": after } } })).await;
    app.data(
        Some(&service.token),
        "mutation { createPlace(input: {id: \"legacy\", name: \"x\", lat: 0, lng: 0}) { place { id } } }",
        json!({}),
    )
    .await;
    let data = ws.message().await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["placeChanged"]["place"]["rowId"], "legacy");
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
        "mutation($id: ID!) { setUserActive(input: {userId: $id, isActive: false}) { user { id } } }",
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
    // A raw socket: a websocket library would answer the server's
    // websocket Pings by itself, and those count as answers too.
    let mut stream = tests::raw_websocket(&app.address, "graphql-transport-ws").await;
    stream.write_all(&tests::client_text_frame(r#"{"type":"connection_init"}"#)).await.expect("init sent");
    // Read until the server gives up (20 s at most).
    let frames = tests::raw_frames_until(&mut stream, std::time::Duration::from_secs(20), |_| false).await;
    let pings = frames.iter().filter(|(op, text)| *op == 0x1 && text.contains("\"ping\"")).count();
    assert!(pings >= 2, "pinged {pings} times before closing: {frames:?}");
    assert!(frames.iter().any(|(op, code)| *op == 0x8 && code == "1011"), "{frames:?}");
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

#[tokio::test]
async fn websocket_operations_log_slow_queries_with_the_connections_request_id_and_their_operation_name() {
    // The test's runtime is this thread, and the server runs on it: a
    // subscriber set here sees every line the server writes.
    let logs = tests::logs::CapturedLogs::default();
    let _capture = logs.capture();
    let (app, ada) = tests::logs::app_logging_every_statement().await;

    // A subscription whose events load their place (a DataLoader batch),
    // and a query, on one connection.
    let mut ws = app.subscriber(Some(&ada.token)).await;
    let live = "subscription Live($a: String) { myReviewChanged(after: $a) { review { place { name } } } }";
    ws.subscribe("1", live, json!({ "a": app.change_cursor_for(&ada).await })).await;
    app.data(
        Some(&ada.token),
        "mutation { createReview(input: {placeId: \"p1\", rating: 4}) { review { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(ws.next_data("1").await["myReviewChanged"]["review"]["place"]["name"], "Place p1");
    ws.subscribe("2", "query Count { places { totalCount } }", json!({})).await;
    assert_eq!(ws.next_data("2").await["places"]["totalCount"], 1);

    for operation in ["Live", "Count"] {
        let slow = logs.slow_queries_of(operation);
        assert!(!slow.is_empty(), "no slow query of {operation} in {:#?}", logs.lines());
        for line in slow {
            let upgrade = tests::logs::spans(&line).into_iter().find(|span| span["name"] == "request");
            let upgrade = upgrade.unwrap_or_else(|| panic!("no request span: {line}"));
            assert_eq!(upgrade["path"], "/graphql/ws", "{line}");
            // The connection's span is every operation's: none names itself there.
            assert!(upgrade.get("operation").is_none(), "{line}");
            assert_eq!(upgrade["id"].as_str().map(str::len), Some(36), "the upgrade's request id: {line}");
        }
    }
}

#[tokio::test]
async fn a_message_sent_in_the_same_packet_as_the_upgrade_request_is_read_first() {
    // Arrange: the upgrade request and connection_init in one write, so the
    // message reaches the server in the bytes hyper read with the request.
    let app = TestApp::spawn().await;
    let mut stream =
        tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.expect("connected");
    let mut bytes = b"GET /graphql/ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n".to_vec();
    bytes.extend_from_slice(&tests::client_text_frame(r#"{"type":"connection_init"}"#));

    // Act
    stream.write_all(&bytes).await.expect("sent");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.expect("the answer"), 1, "closed mid-head");
        head.push(byte[0]);
    }
    let frames = raw_frames_until(&mut stream, TEN_SECONDS, |frames| !frames.is_empty()).await;

    // Assert: switched, with the key's accept value and the subprotocol,
    // and the init was answered.
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    assert!(head.contains("sec-websocket-protocol: graphql-transport-ws"), "{head}");
    assert_eq!(frames[0].0, 0x1, "{frames:?}");
    assert!(frames[0].1.contains("connection_ack"), "{frames:?}");
}

#[tokio::test]
async fn a_websocket_ping_gets_its_pong_with_its_payload_on_its_own_and_before_later_answers() {
    let app = TestApp::spawn().await;
    let mut stream = tests::raw_websocket(&app.address, "graphql-transport-ws").await;

    // A Ping on its own: nothing else the server sends carries its Pong out.
    stream.write_all(&tests::client_control_frame(0x9, b"alone")).await.expect("sent");
    let frames = raw_frames_until(&mut stream, TEN_SECONDS, |frames| !frames.is_empty()).await;
    assert_eq!(frames, vec![(0xA, "alone".to_owned())]);

    // A Ping followed at once by a message: the Pong comes first.
    let mut bytes = tests::client_control_frame(0x9, b"are you there");
    bytes.extend_from_slice(&tests::client_text_frame(r#"{"type":"connection_init"}"#));
    stream.write_all(&bytes).await.expect("sent");
    let frames = raw_frames_until(&mut stream, TEN_SECONDS, |frames| frames.len() >= 2).await;

    assert_eq!(frames[0], (0xA, "are you there".to_owned()), "{frames:?}");
    assert_eq!(frames[1].0, 0x1, "{frames:?}");
    assert!(frames[1].1.contains("connection_ack"), "{frames:?}");
}

#[tokio::test]
async fn a_clients_close_frame_is_answered_with_a_close_frame_and_the_socket_closes() {
    let app = TestApp::spawn().await;
    let mut stream = tests::raw_websocket(&app.address, "graphql-transport-ws").await;

    stream.write_all(&tests::client_control_frame(0x8, &1000u16.to_be_bytes())).await.expect("sent");
    // Read to the end: the server closes its side after the reply.
    let frames = raw_frames_until(&mut stream, TEN_SECONDS, |_| false).await;

    assert_eq!(frames, vec![(0x8, "1000".to_owned())]);
}

#[tokio::test]
async fn upgrade_requests_missing_what_a_websocket_needs_are_refused_as_before() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let url = format!("{}/graphql/ws", app.address);
    let base = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for (missing, status) in
        [("connection", 400), ("upgrade", 400), ("sec-websocket-version", 400), ("sec-websocket-key", 400)]
    {
        let mut request = client.get(&url);
        for (name, value) in base.iter().filter(|(name, _)| *name != missing) {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status().as_u16(), status, "without {missing}");
    }
    let post = base.iter().fold(client.post(&url), |request, (name, value)| request.header(*name, *value));
    assert_eq!(post.send().await.expect("an answer").status().as_u16(), 405);
}

#[tokio::test]
async fn a_delivery_longer_than_64_kib_arrives_whole_with_a_64_bit_length() {
    // Arrange: a subscriber selecting a 200-character name under 400
    // aliases, so the event's payload is longer than a 16-bit frame length
    // can say (and longer than one write of a loopback socket may take).
    let app = TestApp::spawn().await;
    let service = app.sign_up_as("importer", "service").await;
    let after = app.change_cursor().await;
    let mut ws = app.subscriber(None).await;
    let aliases: String = (0..400).map(|i| format!(" n{i}: name")).collect();
    let query = format!("subscription($a: String) {{ placeChanged(after: $a) {{ place {{ rowId{aliases} }} }} }}");
    ws.subscribe("1", &query, json!({ "a": after })).await;
    let name = "n".repeat(200);

    // Act
    app.data(
        Some(&service.token),
        "mutation($name: String!) { createPlace(input: {id: \"long\", name: $name, lat: 0, lng: 0}) { place { id } } }",
        json!({ "name": name }),
    )
    .await;
    let text = ws.raw_text().await;

    // Assert: one message, whole, every alias there.
    assert!(text.len() > 65_536, "{} bytes", text.len());
    let message: serde_json::Value = serde_json::from_str(&text).expect("whole JSON");
    let place = &message["payload"]["data"]["placeChanged"]["place"];
    assert_eq!(place["rowId"], "long", "{message}");
    assert!((0..400).all(|i| place[format!("n{i}")] == name.as_str()));
}

//! Connection-level limits (issue 10, section 3): an anonymous client with
//! many idle, half-sent or slow connections cannot lock others out, and
//! oversized input is refused with a code, not a dropped socket.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{TestApp, error_code};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A server with this connection cap and these header-read, body-read and
/// idle timeouts (seconds).
async fn server_with(max_connections: usize, header_read: u64, body_read: u64, idle: u64) -> TestApp {
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.max_connections = max_connections;
    config.http_header_read_timeout = header_read;
    config.http_body_read_timeout = body_read;
    config.http_idle_timeout = idle;
    TestApp::spawn_with(config).await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://")).await.expect("the kernel accepts the connection")
}

/// Whether the server closes `stream` (EOF or reset) within `limit`;
/// anything it sends first is read and ignored.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one request on `stream` and reads its response: the status and
/// the body (the response must have a Content-Length, as ours do).
async fn exchange(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).await.expect("the request is sent");
    response(stream).await
}

/// The next response on `stream`: its status and body.
async fn response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                let status = text[9..12].parse().expect("a status line");
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await;
        match read.expect("a response within 20 s") {
            Ok(0) | Err(_) => panic!("the connection closed mid-response: {text}"),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test]
async fn idle_and_half_sent_connections_beyond_the_cap_are_cut_off_and_a_normal_client_is_still_served() {
    // Arrange: 50 slots, a one-second header timeout; 60 connections that
    // never send anything and 10 that send a request head a byte at a time.
    let app = server_with(50, 1, 30, 60).await;
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(connect(&app).await);
    }
    let mut slowloris = Vec::new();
    let mut trickles = Vec::new();
    for _ in 0..10 {
        let (reader, mut writer) = connect(&app).await.into_split();
        slowloris.push(reader);
        trickles.push(tokio::spawn(async move {
            let head = "POST /graphql HTTP/1.1\r\nHost: test\r\n".to_owned() + &"X-Slow: loris\r\n".repeat(1000);
            for byte in head.bytes() {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    // Act: a normal client asks, behind all of them.
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a client");
    let response = client.get(format!("{}/healthz", app.address)).send().await.expect("the client is served");

    // Assert: served within a few header timeouts, and every idle or
    // half-sent connection was closed by the server.
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(10), "served only after {:?}", started.elapsed());
    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(closed_within(stream, Duration::from_secs(10)).await, "idle connection {i} is still open");
    }
    for (i, reader) in slowloris.iter_mut().enumerate() {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "half-sent connection {i} is still open although it keeps sending");
    }
    for trickle in trickles {
        trickle.abort();
    }
}

#[tokio::test]
async fn http_clients_are_served_while_websockets_hold_their_cap_and_one_more_websocket_is_refused_at_once_with_503() {
    // Arrange: 20 connection slots, so by default 15 for websockets, all
    // held by subscribers (never closed to make way), under long timeouts.
    let app = server_with(20, 60, 60, 60).await;
    let mut sockets = Vec::new();
    for _ in 0..15 {
        sockets.push(app.subscriber(None).await);
    }

    // Act: one more websocket; then, with the last 5 slots held by
    // connections that send nothing, a plain HTTP client.
    let started = Instant::now();
    let refused = upgrade(&app, "graphql-transport-ws", None).await.expect_err("a 16th websocket is refused");
    let refused_after = started.elapsed();
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect(&app).await);
    }
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a client");
    let response = client.get(format!("{}/healthz", app.address)).send().await.expect("the client is served");

    // Assert: the upgrade got 503 with a code and a Retry-After at once,
    // not a place in the queue; HTTP was served within seconds (the idle
    // connections made way), while every subscriber stayed.
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(error_code(&refused.body), "TOO_MANY_CONNECTIONS", "{refused:?}");
    assert!(refused.retry_after.is_some_and(|s| s >= 1), "{refused:?}");
    assert!(refused_after < Duration::from_secs(2), "refused only after {refused_after:?}");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5), "served only after {:?}", started.elapsed());
    for ws in &mut sockets {
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.message().await["type"], "pong");
    }
    // A websocket that closes gives its place to the next one.
    drop(sockets.pop());
    tests::eventually("a freed websocket place is reused", async || {
        upgrade(&app, "graphql-transport-ws", None).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn websockets_from_one_client_address_are_capped_and_other_addresses_still_connect() {
    // Arrange: two websockets per address, addresses from a trusted proxy.
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.max_ws_per_ip = 2;
    config.trust_x_forwarded_for = true;
    let app = TestApp::spawn_with(config).await;
    let mut held = Vec::new();
    for from in ["203.0.113.7", "203.0.113.7", "2001:db8::1", "2001:db8::2"] {
        held.push(upgrade(&app, "graphql-ws", Some(from)).await.expect("within the per-address cap"));
    }

    // Act: a third from each address (IPv6: the same /64), and one from elsewhere.
    let third = upgrade(&app, "graphql-ws", Some("203.0.113.7")).await.expect_err("a third from one IPv4 address");
    let same_64 = upgrade(&app, "graphql-ws", Some("2001:db8::3")).await.expect_err("a third from one /64");
    let other = upgrade(&app, "graphql-ws", Some("203.0.113.8")).await;

    // Assert
    for refused in [&third, &same_64] {
        assert_eq!(refused.status, 503, "{refused:?}");
        assert_eq!(error_code(&refused.body), "TOO_MANY_CONNECTIONS", "{refused:?}");
        assert!(refused.retry_after.is_some(), "{refused:?}");
    }
    assert!(other.is_ok(), "another address is not limited: {:?}", other.err());
    // Once one of its sockets closes, the address may open another.
    drop(held.remove(0));
    tests::eventually("the address gets its place back", async || {
        upgrade(&app, "graphql-ws", Some("203.0.113.7")).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_legacy_websocket_client_that_never_answers_pings_is_closed_after_the_missed_pings() {
    // Arrange: a one-second keepalive; a graphql-ws (legacy) client on a
    // raw socket that initialises and then never writes again, so it
    // answers neither websocket Pings nor anything else.
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.ws_keepalive = 1;
    let app = TestApp::spawn_with(config).await;
    let mut stream = connect(&app).await;
    let head = tests::raw_upgrade(&mut stream, "graphql-ws").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream.write_all(&tests::client_text_frame(r#"{"type":"connection_init","payload":{}}"#)).await.expect("init sent");
    let initialised = Instant::now();

    // Act: take what the server sends until it closes (30 s at most).
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let closed_after = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!("still open 30 s after connection_init: {:?}", tests::server_frames(&received)),
            Ok(Ok(0) | Err(_)) => break initialised.elapsed(),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    };

    // Assert: acknowledged, pinged with websocket Pings (and `ka`), then
    // closed with 1011 once MAX_MISSED_PONGS (2) pings went unanswered.
    let frames = tests::server_frames(&received);
    assert!(frames.iter().any(|(op, text)| *op == 0x1 && text.contains("connection_ack")), "{frames:?}");
    assert!(frames.iter().filter(|(op, _)| *op == 0x9).count() >= 2, "no websocket pings: {frames:?}");
    assert!(frames.iter().any(|(op, text)| *op == 0x1 && text.contains("\"ka\"")), "{frames:?}");
    assert!(frames.iter().any(|(op, code)| *op == 0x8 && code == "1011"), "no close with 1011: {frames:?}");
    assert!(closed_after >= Duration::from_secs(2), "closed too early: {closed_after:?}");
    assert!(closed_after < Duration::from_secs(10), "closed only after {closed_after:?}");
}

#[tokio::test]
async fn a_graphql_transport_ws_client_that_answers_only_websocket_pings_stays_open() {
    // Arrange: a one-second keepalive; a client library that answers
    // websocket Pings (tungstenite does, as browsers do) but ignores the
    // protocol's own `ping` messages.
    let mut config = tests::test_config(&tests::create_database(true).await);
    config.ws_keepalive = 1;
    let app = TestApp::spawn_with(config).await;
    let mut socket = upgrade(&app, "graphql-transport-ws", None).await.expect("a websocket");
    socket.send(Message::Text(json!({ "type": "connection_init" }).to_string().into())).await.expect("init sent");

    // Act: read (answering Pings) for five keepalive intervals.
    let mut pings = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await;

    // Assert: never closed, and pinged all along.
    assert!(outcome.is_err(), "closed with {outcome:?} although every websocket Ping was answered");
    assert!(pings >= 3, "{pings} websocket pings in 5 s");
}

#[tokio::test]
async fn at_the_cap_connections_waiting_for_a_request_make_way_for_a_new_client_within_seconds() {
    // Arrange: 20 slots, header and idle timeouts far longer than the test;
    // the slots held by connections that send nothing, send a head a byte
    // at a time, or sit idle after a first request.
    let app = server_with(20, 60, 60, 60).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(&app).await);
    }
    for _ in 0..8 {
        let mut stream = connect(&app).await;
        assert_eq!(exchange(&mut stream, HEALTH).await.0, 200);
        held.push(stream);
    }
    let mut trickles = Vec::new();
    for _ in 0..4 {
        let (reader, mut writer) = connect(&app).await.into_split();
        trickles.push(tokio::spawn(async move {
            let _reader = reader;
            for byte in "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: loris\r\n".bytes().cycle() {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    // Act: a new client asks.
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a client");
    let response = client.get(format!("{}/healthz", app.address)).send().await.expect("the client is served");

    // Assert: served within seconds, not after a 60 s timeout.
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5), "served only after {:?}", started.elapsed());
    for trickle in trickles {
        trickle.abort();
    }
}

#[tokio::test]
async fn a_keep_alive_connection_may_idle_past_the_header_timeout_but_is_closed_after_the_idle_timeout() {
    let app = server_with(50, 1, 30, 4).await;
    let mut stream = connect(&app).await;
    assert_eq!(exchange(&mut stream, HEALTH).await.0, 200);

    // Idle for twice the header timeout: still usable.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(exchange(&mut stream, HEALTH).await.0, 200, "the keep-alive connection survives 2 s idle");

    // Then closed once idle for the idle timeout, not before 3 s.
    assert!(!closed_within(&mut stream, Duration::from_secs(3)).await, "closed before the idle timeout");
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await, "still open long after the idle timeout");
}

#[tokio::test]
async fn a_request_body_sent_too_slowly_gets_408_with_a_code() {
    let app = server_with(50, 10, 1, 60).await;
    let mut stream = connect(&app).await;
    let head = "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let started = Instant::now();
    // Ten bytes of a hundred, then nothing.
    let (status, body) = exchange(&mut stream, &format!("{head}{{\"query\":")).await;
    assert_eq!(status, 408, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(error_code(&body), "REQUEST_TIMEOUT", "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "answered after {:?}", started.elapsed());
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await, "the connection is closed after the 408");
}

#[tokio::test]
async fn a_request_body_over_the_limit_gets_413_with_a_code_whether_declared_or_chunked() {
    let app = TestApp::spawn().await;
    let url = format!("{}/graphql", app.address);

    // Declared: Content-Length over the limit.
    let huge = "x".repeat(2 * 1024 * 1024);
    let declared = app.http.post(&url).json(&json!({ "query": huge })).send().await.expect("a response");
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = declared.json().await.expect("a JSON body");
    assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE", "{body}");

    // Chunked: no length up front, found out while reading (17 chunks of
    // 64 KiB: just over the 1 MiB limit).
    let mut stream = connect(&app).await;
    let head =
        "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("the head is sent");
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    for _ in 0..17 {
        stream.write_all(chunk.as_bytes()).await.expect("a chunk is sent");
    }
    let (status, body) = response(&mut stream).await;
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE", "{body}");

    // A body under the limit still works.
    let data = app.data(None, "{ places { totalCount } }", json!({})).await;
    assert_eq!(data["places"]["totalCount"], 0);
}

#[tokio::test]
async fn rejections_on_graphql_are_json_errors_with_a_code() {
    let app = TestApp::spawn().await;
    let url = format!("{}/graphql", app.address);

    let put = app.http.put(&url).json(&json!({ "query": "{ __typename }" })).send().await.expect("a response");
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(put.headers().contains_key("allow"), "405 keeps its Allow header");
    let body: Value = put.json().await.expect("a JSON body");
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED", "{body}");

    let not_upgraded = app.http.get(format!("{url}/ws")).send().await.expect("a response");
    assert!(not_upgraded.status().is_client_error(), "{}", not_upgraded.status());
    let body: Value = not_upgraded.json().await.expect("a JSON body");
    assert_eq!(error_code(&body), "BAD_REQUEST", "{body}");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");

    let broken = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("a response");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&broken.json().await.expect("a JSON body")), "BAD_REQUEST");
}

#[tokio::test]
async fn a_websocket_frame_header_over_the_size_limit_closes_with_1009_before_its_payload() {
    // A header announcing 16 MiB, and then nothing: the server must not
    // set that much aside for it and wait, but refuse it at once.
    let app = TestApp::spawn().await;
    let mut stream = tests::raw_websocket(&app.address, "graphql-transport-ws").await;
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(16u64 * 1024 * 1024).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    stream.write_all(&header).await.expect("header sent");
    let frames =
        tests::raw_frames_until(&mut stream, Duration::from_secs(5), |frames| frames.iter().any(|(op, _)| *op == 0x8))
            .await;
    assert_eq!(frames, vec![(0x8, "1009".to_owned())]);
}

#[tokio::test]
async fn a_websocket_message_over_the_size_limit_closes_with_1009() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscriber(None).await;
    let query = "x".repeat(1024 * 1024 + 1);
    let message = json!({ "type": "subscribe", "id": "1", "payload": { "query": query } }).to_string();
    assert_eq!(ws.send_text_until_closed(&message).await, Some(1009));

    // The server is fine: the next socket works.
    let mut next = app.subscriber(None).await;
    next.send(json!({ "type": "ping" })).await;
    assert_eq!(next.message().await["type"], "pong");
}

#[tokio::test]
async fn shutdown_still_finishes_the_requests_in_flight_and_does_not_wait_for_idle_connections() {
    // Arrange: a request in flight (blocked on a table lock) and a
    // connection that has sent nothing, under a long header timeout.
    let app = server_with(50, 30, 30, 60).await;
    let mut idle = connect(&app).await;
    let (lock, in_flight) = app.hold_the_only_connection().await;
    let address = app.address.trim_start_matches("http://").to_owned();

    // Act: shut down, then let the request finish.
    let started = Instant::now();
    let stopping = tokio::spawn(app.shut_down());
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "the idle connection is closed at once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(TcpStream::connect(&address).await.is_err(), "no new connections once shutdown has begun");
    lock.rollback().await.expect("the lock is released");

    // Assert: the request got its answer, and the server stopped long
    // before the idle connection's header timeout.
    assert_eq!(in_flight.await.expect("the request task"), Some(200));
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("the server stops")
        .expect("the shutdown task");
    assert!(started.elapsed() < Duration::from_secs(20), "shutdown took {:?}", started.elapsed());
}

/// A websocket refused at the upgrade: its status, `Retry-After` and JSON body.
#[derive(Debug)]
struct Refused {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A websocket to `/graphql/ws` speaking `subprotocol`, from `forwarded_for`
/// (an `X-Forwarded-For` address) if given; the refusal if the server
/// refuses the upgrade.
async fn upgrade(app: &TestApp, subprotocol: &str, forwarded_for: Option<&str>) -> Result<Socket, Refused> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("a request");
    request.headers_mut().insert("sec-websocket-protocol", subprotocol.parse().expect("a header"));
    if let Some(from) = forwarded_for {
        request.headers_mut().insert("x-forwarded-for", from.parse().expect("a header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(Refused {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            body: response.body().as_deref().and_then(|body| serde_json::from_slice(body).ok()).unwrap_or(Value::Null),
        }),
        Err(err) => panic!("websocket: {err}"),
    }
}

#[tokio::test]
async fn the_server_refuses_to_start_with_a_websocket_cap_that_leaves_plain_http_no_reserve() {
    let mut config = tests::test_config("never_connected");
    config.max_connections = 20;
    config.max_ws_connections = Some(19);
    let err = api::Application::build(config.clone()).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("MAX_WS_CONNECTIONS must be between 1 and 18"), "{err}");
    config.max_ws_connections = Some(0);
    let err = api::Application::build(config.clone()).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("MAX_WS_CONNECTIONS"), "{err}");
    config.max_ws_connections = None;
    config.max_ws_per_ip = 0;
    let err = api::Application::build(config).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("MAX_WS_PER_IP"), "{err}");
}

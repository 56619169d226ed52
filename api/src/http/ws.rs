//! GraphQL over websockets: the graphql-transport-ws protocol (subprotocol
//! `graphql-transport-ws`, the `graphql-ws` npm client) and the legacy
//! subscriptions-transport-ws (subprotocol `graphql-ws`, Apollo's old client).
//!
//! Our own layer over the socket rather than async-graphql's (or
//! async-graphql-axum's, which wraps axum's): the upgrade is answered here,
//! frames are read by tungstenite and written by us (`ws_socket`,
//! `ws_outbox`); every query and mutation sent
//! over the socket runs through the HTTP path's `execute_in_session` (its own
//! viewer transaction, timeout and metrics); subscriptions get the
//! session's expiry and check point and the DataLoaders; the socket is
//! bounded (MAX_WS_CONNECTIONS, MAX_WS_PER_IP, `MAX_OPERATIONS`, a
//! `MAX_MESSAGE` read limit, an outbox with a send timeout: `ws_outbox`) and
//! closed with codes a client can act on: 4400 invalid message (also too
//! many operations, binary frames), 4401 subscribe before acknowledgement,
//! 4403 invalid or expired token, 4408 no `connection_init` in time, 4409
//! duplicate subscription id, 4429 repeated `connection_init`, 1009 message
//! too big, 1011 no pong, and 1012 when the server shuts down, so clients
//! reconnect and resubscribe.
//!
//! The token comes in the `connection_init` payload as
//! `{"Authorization": "Bearer <token>"}` (key in any case), or from the
//! upgrade request's Authorization header. Subscriptions stream from the
//! change feed; queries and mutations sent over the socket run exactly as
//! over HTTP, in one request transaction each. As over HTTP, a `subscribe`
//! may carry an automatic persisted query (`http::apq`, the same store),
//! and every `next` payload's keys follow the selection set (`http::order`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_graphql::dataloader::DataLoader;
use async_graphql::parser::types::OperationType;
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tracing::Instrument;

use super::AppState;
use super::graphql::{OperationSpan, execute_in_session, operation_name, operation_types, server_error, spawn_in_span};
use super::order::KeyOrder;
use super::ws_caps::WsSlot;
use super::ws_outbox::Outbox;
use super::ws_socket::{self, ReadHalf};
use crate::auth::{AccessSession, ClientIp, PeerAddr, Viewer, claims_from_authorization};
use crate::db::{Access, begin_session_request};
use crate::domain::RowLoader;
use crate::error::{ApiError, ensure_codes};
use crate::graphql::json;
use crate::posts::PostsLoader;
use crate::realtime::drivers::Company;
use crate::realtime::{Cursor, Session as FeedSession, shared};

/// Timing of the websocket protocol.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// How long a client may take to send `connection_init`.
    pub init_timeout: Duration,
    /// How often the server pings: a websocket Ping frame in both
    /// protocols, plus the protocol's own `ping` (graphql-transport-ws) or
    /// `ka` (legacy, once initialised).
    pub keepalive: Duration,
}

/// Pings a client may leave unanswered in a row, in either protocol; the
/// socket is closed (1011) at the next keepalive tick, so after about
/// (MAX_MISSED_PONGS + 1) x WS_KEEPALIVE of silence. Without it a client
/// that never reads keeps its socket for hours: the keepalives fit in the
/// kernel's send buffer, so sending never fails.
const MAX_MISSED_PONGS: u32 = 2;

/// The longest operation id a client may use.
const MAX_ID_LEN: usize = 128;
/// Operations one connection may run at once.
const MAX_OPERATIONS: usize = 100;

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 4 * 1024;
/// The largest message a client may send (a GraphQL document and variables).
const MAX_MESSAGE: usize = 1024 * 1024;
/// How long a socket closed with 1009 stays open for the client to read why.
const UNREAD_LINGER: Duration = Duration::from_secs(1);

/// A message over [`MAX_MESSAGE`] (tungstenite's capacity error): the
/// client is told 1009 (Message Too Big) rather than seeing the socket drop.
fn is_too_big(err: &WsError) -> bool {
    matches!(err, WsError::Capacity(_))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// graphql-transport-ws.
    TransportWs,
    /// subscriptions-transport-ws (legacy; subprotocol name `graphql-ws`).
    Legacy,
}

pub async fn upgrade(State(state): State<Arc<AppState>>, peer: PeerAddr, mut request: Request) -> Response {
    // Checked as axum's `WebSocketUpgrade` does (same answers), before the caps.
    let key = match ws_socket::check_upgrade(request.method(), request.headers()) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        let body = "WebSocket request couldn't be upgraded since no upgrade state was present";
        return (StatusCode::UPGRADE_REQUIRED, body).into_response();
    };
    let headers = request.headers();
    let requested: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let protocol =
        if requested.iter().all(|p| p != "graphql-transport-ws") && requested.iter().any(|p| p == "graphql-ws") {
            Protocol::Legacy
        } else {
            Protocol::TransportWs
        };
    // The subprotocol named in the answer, as axum's `protocols` picks it:
    // the first of ours the client asked for.
    let chosen = ["graphql-transport-ws", "graphql-ws"].into_iter().find(|ours| requested.iter().any(|p| p == ours));
    let header_auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let client_ip = state.auth.limits.client_ip(peer.0, headers);
    // Past MAX_WS_CONNECTIONS or MAX_WS_PER_IP: refused now, before the
    // upgrade, so the connection goes back to serving HTTP or closes.
    let slot = match state.ws_caps.acquire(client_ip) {
        Ok(slot) => slot,
        Err(err) => return refused(&err),
    };
    // The connection outlives this handler, in a task of its own: it keeps
    // the upgrade request's span, so its log lines carry that request id.
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(error = %err, "websocket upgrade failed");
                    return;
                }
            };
            let Some(socket) = ws_socket::open(upgraded, state.metrics.ws_writes.clone()).await else { return };
            serve(socket, protocol, state, header_auth, client_ip, slot).await;
        }
        .instrument(span),
    );
    ws_socket::switching_protocols(&key, chosen)
}

/// A refused upgrade: 503 with the error as GraphQL JSON, and when to retry.
fn refused(err: &ApiError) -> Response {
    let body = axum::Json(async_graphql::Response::from_errors(vec![server_error(err)]));
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    if let Some(seconds) = err.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

/// Why the server closes a connection.
struct Close(u16, String);

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

/// A signed-in (or anonymous) session, after `connection_init`. The viewer
/// is the account as it was at the last check (each operation re-checks it).
#[derive(Clone, Copy)]
struct Session {
    viewer: Viewer,
    expires_at: Option<i64>,
    /// The token's session (`sid`): when it ends, the connection closes.
    session: AccessSession,
}

struct Connection {
    protocol: Protocol,
    state: Arc<AppState>,
    out: Arc<Outbox>,
    header_auth: Option<String>,
    session: Option<Session>,
    subscriptions: HashMap<String, Running>,
    /// Runs the event sources of the connection's subscriptions in one
    /// task (`realtime::drivers`) once it has more than one shared
    /// subscription.
    company: Arc<Company>,
    /// Keepalive pings not answered yet: a websocket Pong frame, or in
    /// graphql-transport-ws a protocol `pong`, answers all of them.
    missed_pongs: u32,
    /// Where the connection comes from: sign-in over the socket is rate limited like over HTTP.
    client_ip: ClientIp,
}

async fn serve(
    socket: ws_socket::Opened,
    protocol: Protocol,
    state: Arc<AppState>,
    header_auth: Option<String>,
    client_ip: ClientIp,
    // Its place under MAX_WS_CONNECTIONS and MAX_WS_PER_IP, until it closes.
    _slot: WsSlot,
) {
    state.metrics.ws_connections.inc();
    let metrics = state.metrics.clone();
    // Written by whichever task has a message (no writer task of its own).
    let ws_socket::Opened { read, out, read_buf } = socket;
    let config = WebSocketConfig::default()
        // tungstenite's default (128 KiB, allocated per socket) would be
        // most of an idle subscriber's memory; GraphQL messages are small,
        // and larger ones still work, in more reads.
        .read_buffer_size(READ_BUFFER)
        // Its replies (Pong, Close) go to the outbox at once, whole.
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        // A frame's header alone makes tungstenite reserve its length:
        // without this, 16 MiB per socket before the message limit applies.
        .max_frame_size(Some(MAX_MESSAGE));
    let read = ReadHalf { read, out: out.clone() };
    // The bytes sent right behind the upgrade request are read first.
    let mut incoming = WebSocketStream::from_partially_read(read, read_buf, Role::Server, Some(config)).await;
    let ws = state.ws;
    let mut closing = state.closing.clone();
    let mut conn = Connection {
        protocol,
        state,
        out: out.clone(),
        header_auth,
        session: None,
        subscriptions: HashMap::new(),
        company: Arc::default(),
        missed_pongs: 0,
        client_ip,
    };

    // Taken before connection_init: a session that ends after it is seen
    // here, one that ended before it fails the check in `authenticate`.
    let mut endings = conn.state.realtime.session_endings();
    let init_deadline = tokio::time::sleep(ws.init_timeout);
    tokio::pin!(init_deadline);
    let mut keepalive = tokio::time::interval(ws.keepalive);
    keepalive.tick().await;
    let close: Option<Close> = loop {
        tokio::select! {
            // In this order: tungstenite queues its Pong to a Ping while it
            // reads the next message, so the reply branch, ahead of
            // `incoming`, writes it (waiting when the outbox is full) before
            // another is read: a client that pings without reading cannot
            // grow the queue past OUTBOX.
            biased;
            () = closing.begun() => break Some(Close::new(1012, "Service restart: reconnect and resubscribe")),
            () = &mut init_deadline, if conn.session.is_none() => {
                break Some(Close::new(4408, "Connection initialisation timeout"));
            }
            ended = endings.recv() => match ended {
                Ok(id) if conn.session.is_some_and(|s| s.session.0 == Some(id)) => {
                    break Some(Close::new(4403, "Forbidden: the session has ended"));
                }
                // Missed some endings: ask the database about this one.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) if !Box::pin(conn.session_live()).await => {
                    break Some(Close::new(4403, "Forbidden: the session has ended"));
                }
                // The sender lives as long as the server's state, which this
                // connection holds: never closed while it runs.
                Ok(_) | Err(_) => {}
            },
            // tungstenite queued its reply to a Ping or a Close: out it goes.
            // Or the socket is done: a client that stopped reading (write
            // timeout) must not keep the connection by sending pongs.
            () = out.reply_queued() => {
                if out.is_closed() {
                    break None;
                }
                out.flush().await;
            }
            _ = keepalive.tick() => {
                if conn.missed_pongs >= MAX_MISSED_PONGS {
                    break Some(Close::new(1011, "Keepalive timeout: no pong"));
                }
                conn.keepalive().await;
            }
            message = incoming.next() => match message {
                Some(Ok(WsMessage::Text(text))) => {
                    // Boxed: sign-in and subscribe await database
                    // round trips whose futures are kilobytes; inline, the
                    // connection's task would hold that space for its
                    // whole life (memory per idle subscriber).
                    if let Err(close) = Box::pin(conn.on_message(text.as_str())).await {
                        break Some(close);
                    }
                }
                Some(Ok(WsMessage::Binary(_))) => break Some(Close::new(4400, "Binary messages are not supported")),
                // tungstenite answers a Ping itself (into the outbox).
                Some(Ok(WsMessage::Ping(_) | WsMessage::Frame(_))) => {}
                Some(Ok(WsMessage::Pong(_))) => conn.missed_pongs = 0,
                Some(Err(err)) if is_too_big(&err) => {
                    break Some(Close::new(1009, format!("Message too big: the limit is {MAX_MESSAGE} bytes")));
                }
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break None,
            },
        }
    };
    for (_, running) in conn.subscriptions.drain() {
        running.task.abort();
    }
    let unread = close.as_ref().is_some_and(|Close(code, _)| *code == 1009);
    // `closing` lives until the close frame is out: shutdown waits for it.
    if let Some(Close(code, reason)) = close {
        out.send_and_wait(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    } else {
        // The client's Close gets tungstenite's reply (queued by this
        // flush, as it writes into the outbox), then it goes out.
        let _ = incoming.flush().await;
        out.flush_and_wait().await;
    }
    drop(conn);
    drop(out);
    drop(closing);
    if unread {
        // The rest of the oversized message is still unread: closing the
        // socket now would reset it, and a reset can discard the close frame
        // before the client reads it. Keep it open (`incoming` holds it) a
        // moment instead; after the error there is nothing more to read.
        tokio::time::sleep(UNREAD_LINGER).await;
    }
    drop(incoming);
    metrics.ws_connections.dec();
}

impl Connection {
    async fn send(&self, message: Value) {
        // The outbox refuses only when the socket is gone; nothing left to tell.
        let _ = self.out.send(Message::Text(message.to_string().into())).await;
    }

    /// One keepalive tick: a websocket Ping, which browsers and client
    /// libraries answer on their own, in both protocols; and the protocol's
    /// own message, which some clients rely on to detect a dead server.
    async fn keepalive(&mut self) {
        self.missed_pongs += 1;
        let _ = self.out.send(Message::Ping(axum::body::Bytes::new())).await;
        match (self.protocol, self.session.is_some()) {
            (Protocol::TransportWs, _) => self.send(json!({ "type": "ping" })).await,
            (Protocol::Legacy, true) => self.send(json!({ "type": "ka" })).await,
            (Protocol::Legacy, false) => {}
        }
    }

    async fn on_message(&mut self, text: &str) -> Result<(), Close> {
        let message: Value =
            serde_json::from_str(text).map_err(|_| Close::new(4400, "Invalid message received: not JSON"))?;
        let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
        match (self.protocol, kind) {
            (_, "connection_init") => self.init(message.get("payload")).await,
            (Protocol::TransportWs, "ping") => {
                let mut pong = json!({ "type": "pong" });
                if let Some(payload) = message.get("payload") {
                    pong["payload"] = payload.clone();
                }
                self.send(pong).await;
                Ok(())
            }
            (Protocol::TransportWs, "pong") => {
                self.missed_pongs = 0;
                Ok(())
            }
            (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => self.subscribe(&message).await,
            (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => {
                if let Some(running) =
                    message.get("id").and_then(Value::as_str).and_then(|id| self.subscriptions.remove(id))
                {
                    // Nothing more of it is queued from here on, though its
                    // task (or its event source, until its next poll sees
                    // the stop) may run a moment longer on the other core.
                    self.out.retire(&running.tap.socket().live);
                    running.task.abort();
                    let _ = running.task.await;
                    self.out.set_operations(self.subscriptions.len());
                    self.out.flush().await;
                }
                Ok(())
            }
            (Protocol::Legacy, "connection_terminate") => Err(Close::new(1000, "Normal closure")),
            _ => Err(Close::new(4400, format!("Invalid message received: unknown type {kind:?}"))),
        }
    }

    async fn init(&mut self, payload: Option<&Value>) -> Result<(), Close> {
        if self.session.is_some() {
            return Err(Close::new(4429, "Too many initialisation requests"));
        }
        let from_payload = payload.and_then(Value::as_object).and_then(|map| {
            map.iter().find(|(key, _)| key.eq_ignore_ascii_case("authorization")).and_then(|(_, v)| v.as_str())
        });
        let authorization = from_payload.or(self.header_auth.as_deref());
        let session = match self.authenticate(authorization).await {
            Ok(session) => session,
            Err(err) => {
                if self.protocol == Protocol::Legacy {
                    self.send(json!({ "type": "connection_error", "payload": { "message": err.message() } })).await;
                }
                return Err(Close::new(4403, "Forbidden"));
            }
        };
        self.session = Some(session);
        self.send(json!({ "type": "connection_ack" })).await;
        if self.protocol == Protocol::Legacy {
            self.send(json!({ "type": "ka" })).await;
        }
        Ok(())
    }

    /// Verifies the token and that the account is active, as a request would.
    async fn authenticate(&self, authorization: Option<&str>) -> Result<Session, ApiError> {
        let claims = claims_from_authorization(authorization, &self.state.jwt)?;
        let viewer = claims.as_ref().map_or(Viewer::Anonymous, |c| Viewer::User { id: c.sub, role: c.role });
        let session = AccessSession(claims.as_ref().and_then(|c| c.sid));
        let (tx, viewer) = begin_session_request(&self.state.pool, viewer, session.0, Access::ReadOnly).await?;
        tx.rollback().await?;
        Ok(Session { viewer, expires_at: claims.map(|c| c.exp), session })
    }

    /// Whether the connection's session (if its token has one) is still
    /// live, asked of the database. A failure to ask keeps the connection:
    /// its next operation checks again.
    async fn session_live(&self) -> bool {
        let Some(session) = self.session.filter(|s| s.session.0.is_some()) else { return true };
        match begin_session_request(&self.state.pool, session.viewer, session.session.0, Access::ReadOnly).await {
            Ok((tx, _)) => {
                let _ = tx.rollback().await;
                true
            }
            Err(err) => !matches!(err, ApiError::Unauthenticated(_)),
        }
    }

    async fn subscribe(&mut self, message: &Value) -> Result<(), Close> {
        let Some(session) = self.session else {
            return Err(Close::new(4401, "Unauthorized"));
        };
        if session.expires_at.is_some_and(|at| at <= chrono::Utc::now().timestamp()) {
            return Err(Close::new(4403, "Forbidden: the token has expired"));
        }
        let id = message
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
            .ok_or_else(|| Close::new(4400, "Invalid message received: subscribe needs an id of 1 to 128 bytes"))?
            .to_owned();
        // The account may have been deactivated, or its role changed, since
        // connection_init: check it again, as every HTTP request does, and
        // run the operation as the account is now. Changes after this point
        // end the subscription; earlier ones are covered by this check. A
        // stream without `after` starts at this position (not where the
        // broadcast is when it first runs), so a change that commits while
        // the operation starts still ends it (`realtime::stream`).
        let checked_at = self.state.realtime.head();
        let mut session = session;
        if session.viewer.user_id().is_some() {
            match begin_session_request(&self.state.pool, session.viewer, session.session.0, Access::ReadOnly).await {
                Ok((tx, current)) => {
                    let _ = tx.rollback().await;
                    session.viewer = current;
                    self.session = Some(session);
                }
                Err(ApiError::Unauthenticated(_)) => return Err(Close::new(4403, "Forbidden")),
                // Not checked, so not started: the stale viewer may see
                // more than the account may now.
                Err(err) => {
                    let operation = Operation::new(id, self.protocol, &self.out, &self.state, self.company.clone());
                    operation.error(&async_graphql::Response::from_errors(vec![server_error(&err)])).await;
                    return Ok(());
                }
            }
        }
        self.subscriptions.retain(|_, running| !running.task.is_finished());
        if self.subscriptions.len() >= MAX_OPERATIONS && !self.subscriptions.contains_key(&id) {
            return Err(Close::new(4400, "Too many operations on one connection"));
        }
        let mut request: async_graphql::Request = message
            .get("payload")
            .cloned()
            .and_then(|payload| serde_json::from_value::<async_graphql::Request>(payload).ok())
            .ok_or_else(|| Close::new(4400, "Invalid message received: the payload is not a GraphQL request"))?
            .data(self.client_ip);
        if self.subscriptions.get(&id).is_some_and(|running| !running.task.is_finished()) {
            return Err(Close::new(4409, format!("Subscriber for {id} already exists")));
        }
        let operation = Operation::new(id.clone(), self.protocol, &self.out, &self.state, self.company.clone());
        let tap = operation.tap.clone();
        // Automatic persisted queries, from the same store as over HTTP: a
        // client's persisted-query link sends the hash first on every
        // transport. An unknown hash (PERSISTED_QUERY_NOT_FOUND) or a
        // document that does not match its hash ends this operation only:
        // the client retries it with the document, on the same socket.
        if let Err(err) = self.state.persisted_queries.resolve(&mut request) {
            operation.error(&async_graphql::Response::from_errors(vec![err])).await;
            return Ok(());
        }
        let task = tokio::spawn(operation.run(self.state.clone(), session, checked_at, request).in_current_span());
        self.subscriptions.insert(id, Running { task, tap });
        self.out.set_operations(self.subscriptions.len());
        Ok(())
    }
}

/// Where an operation's messages go: the connection's outbox, and for its
/// shared deliveries its id and its viewer's cursor spliced into the
/// audience's bytes. In its [`shared::Tap`], made with the operation (it is
/// where a delivery looks first): what a delivery reads is in one
/// allocation, a cache miss per delivery at 10,000 subscriptions for each
/// one it would otherwise follow.
struct SharedOut {
    out: Arc<Outbox>,
    /// False once the client completed the operation: the outbox refuses
    /// its messages ([`Outbox::retire`]).
    live: AtomicBool,
    /// `next` or, in the legacy protocol, `data`.
    kind: &'static str,
    /// The operation id as a JSON string.
    id_json: IdJson,
    /// `api_events_delivered`, held directly: reached through the metrics
    /// it is one more pointer, a cache miss per delivery (12 % of this
    /// function's samples in `bench fanout --per-socket 5`).
    delivered: prometheus_client::metrics::counter::Counter,
}

impl shared::Deliver for SharedOut {
    fn deliver(&self, delivery: shared::Shared, more: bool) -> futures_util::future::BoxFuture<'_, bool> {
        Box::pin(async move {
            let text = delivery.template.text(self.kind, self.id_json.as_str(), &delivery.cursor, delivery.common);
            let message = Message::Text(text);
            let live = Some(&self.live);
            let sent = if more { self.out.queue(message, live).await } else { self.out.send_for(message, live).await };
            if sent {
                self.delivered.inc();
            }
            sent
        })
    }

    fn flush(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.out.flush())
    }
}

/// An operation id as a JSON string, inline up to a UUID's 38 bytes (what
/// graphql-ws's client makes by default; others number theirs, `"1"`): a
/// delivery reads it from the tap it reads anyway, not from an allocation
/// of its own (a cache miss per delivery at 10,000 subscriptions).
enum IdJson {
    Short(arrayvec::ArrayString<38>),
    Long(Box<str>),
}

impl IdJson {
    fn new(json: &str) -> Self {
        arrayvec::ArrayString::from(json).map_or_else(|_| Self::Long(json.into()), Self::Short)
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Short(json) => json,
            Self::Long(json) => json,
        }
    }
}

/// A delivery's first allocation: a one-row event's message fits, a larger
/// one grows it by doubling (serde_json's `to_string` started at 128 bytes).
const MESSAGE_CAPACITY: usize = 512;

/// A response as JSON text ([`json`]).
fn response_text(response: &async_graphql::Response) -> Option<String> {
    let mut out = Vec::with_capacity(MESSAGE_CAPACITY);
    json::write_response(&mut out, response).ok()?;
    String::from_utf8(out).ok()
}

/// The protocol's `next` message for operation `id`, as JSON text: written
/// by [`json`] on the hot path of every delivery that is not shared.
fn next_message(kind: &str, id: &str, response: &async_graphql::Response) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(MESSAGE_CAPACITY);
    out.extend_from_slice(b"{\"type\":");
    json::write_str(&mut out, kind)?;
    out.extend_from_slice(b",\"id\":");
    json::write_str(&mut out, id)?;
    out.extend_from_slice(b",\"payload\":");
    json::write_response(&mut out, response)?;
    out.push(b'}');
    String::from_utf8(out).map_err(serde::ser::Error::custom)
}

/// The name of the one root field of the subscription the request runs;
/// `None` when it has several (or fragments at its root), or none found.
fn root_field(request: &mut async_graphql::Request) -> Option<String> {
    use async_graphql::parser::types::{DocumentOperations, Selection};
    let name = request.operation_name.clone();
    let document = crate::graphql::documents::parsed(request).ok()?;
    let operation = match (&document.operations, name.as_deref()) {
        (DocumentOperations::Single(operation), None) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next()?,
        _ => return None,
    };
    match operation.node.selection_set.node.items.as_slice() {
        [only] => match &only.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// An operation the connection runs: its task, and where its messages go
/// (with whether they are still wanted). A finished one's entry (a query's,
/// an ended stream's) stays until the connection's next `subscribe` sweeps
/// it, its `complete`, or the close: a few words each, at most
/// MAX_OPERATIONS of them.
struct Running {
    task: JoinHandle<()>,
    tap: Arc<shared::Tap<SharedOut>>,
}

/// One running operation of a connection.
struct Operation {
    id: String,
    protocol: Protocol,
    /// Its messages' way out (`socket()`); the tap of its shared
    /// deliveries, if any.
    tap: Arc<shared::Tap<SharedOut>>,
    metrics: crate::ops::metrics::SharedMetrics,
}

impl Operation {
    fn new(id: String, protocol: Protocol, out: &Arc<Outbox>, state: &AppState, company: Arc<Company>) -> Self {
        let socket = SharedOut {
            out: out.clone(),
            live: AtomicBool::new(true),
            kind: if protocol == Protocol::TransportWs { "next" } else { "data" },
            id_json: IdJson::new(&serde_json::to_string(&id).unwrap_or_default()),
            delivered: state.metrics.events_delivered.clone(),
        };
        Self { id, protocol, tap: shared::Tap::new(socket, company), metrics: state.metrics.clone() }
    }

    /// Sends `message` unless the operation was completed.
    /// Whether it went out (not if the client completed the operation or
    /// the socket closed first).
    async fn send_message(&self, message: Message) -> bool {
        let socket = self.tap.socket();
        socket.out.send_for(message, Some(&socket.live)).await
    }

    async fn run(self, state: Arc<AppState>, session: Session, checked_at: Cursor, request: async_graphql::Request) {
        // Parsed once, here: execution reuses the document.
        let mut request = request;
        let is_subscription = operation_types(&mut request).contains(&OperationType::Subscription);
        if !is_subscription {
            // Boxed: a subscription's task would otherwise be as large as
            // a query's database futures for its whole life.
            let response =
                Box::pin(execute_in_session(&state, session.viewer, session.session, request, OperationSpan::Own))
                    .await
                    .unwrap_or_else(|err| async_graphql::Response::from_errors(vec![server_error(&err)]));
            let _ = self.next(&response).await;
            self.complete().await;
            return;
        }
        // As execute_in_session does for queries: log lines name the operation.
        let operation = operation_name(&mut request);
        let span = tracing::info_span!("graphql", operation = operation.as_deref().unwrap_or("anonymous"));
        self.stream(state, session, checked_at, request).instrument(span).await;
    }

    /// Runs a subscription until its stream ends.
    async fn stream(
        &self,
        state: Arc<AppState>,
        session: Session,
        checked_at: Cursor,
        request: async_graphql::Request,
    ) {
        let mut request = request;
        // Subscribers of one audience share each event's execution (see
        // `realtime::shared`); a document with several root fields does not
        // (each would need a tap of its own), and runs as before.
        let sharing = match root_field(&mut request) {
            Some(field) => {
                let variables = serde_json::to_string(&request.variables).unwrap_or_default();
                let key = shared::AudienceKey::new(
                    &request.query,
                    request.operation_name.as_deref(),
                    &variables,
                    &field,
                    &session.viewer,
                );
                Some(shared::Sharing { key, tap: self.tap.clone() })
            }
            None => None,
        };
        if let Some(sharing) = &sharing {
            request = request.data(sharing.clone());
        }
        // Keys in the selection set's order, as over HTTP (`http::order`):
        // planned once here, applied to every event's response before it is
        // serialised (once per audience when shared).
        let order = {
            let name = request.operation_name.clone();
            // Parsed already (`operation_types`): the request keeps the document.
            request.parsed_query().ok().and_then(|document| KeyOrder::of(document, name.as_deref()))
        };
        let request = request
            .data(session.viewer)
            // Every transaction the subscription starts (DataLoader batches,
            // replays' visibility checks) checks this session, as requests do.
            .data(session.session)
            .data(state.realtime.clone())
            .data(FeedSession { expires_at: session.expires_at, checked_at })
            .data(state.jwt.clone())
            .data(DataLoader::new(
                RowLoader::from_pool(state.pool.clone(), session.viewer, session.session),
                spawn_in_span,
            ))
            .data(DataLoader::new(
                PostsLoader::from_pool(state.pool.clone(), session.viewer, session.session),
                spawn_in_span,
            ));
        let mut responses = state.schema.execute_stream(request);
        // Shared deliveries do not come through here: the stream sends them
        // itself, in order with these (see `SharedOut`).
        while let Some(mut response) = responses.next().await {
            ensure_codes(&mut response);
            if let Some(order) = &order {
                order.apply(&mut response.data);
            }
            // The audience's execution, if this was one: serialised once
            // with the cursor marker, shared before anything is sent (the
            // others wait for it), then this subscriber's own copy.
            let own = sharing.as_ref().and_then(|s| s.tap.take_pending()).map(|pending| {
                let template = Arc::new(shared::Template::new(&response_text(&response).unwrap_or_default()));
                if response.errors.is_empty() {
                    pending.fill.fill(template.clone());
                }
                shared::Shared { template, cursor: pending.cursor, common: pending.common }
            });
            // Errors without data end the operation: it could not start (bad
            // document or arguments, not signed in) or its stream ended
            // (token expired, account deactivated, cursor past retention).
            // The protocol's `error` message says exactly that.
            if response.data == async_graphql::Value::Null && !response.errors.is_empty() {
                self.error(&response).await;
                return;
            }
            self.metrics.events_executed.inc();
            match own {
                Some(delivery) => self.send_shared(delivery).await,
                // Counted when sent, as shared deliveries are.
                None => {
                    if self.next(&response).await {
                        self.metrics.events_delivered.inc();
                    }
                }
            }
        }
        self.complete().await;
    }

    /// A delivery of a shared payload: this operation's id and the viewer's
    /// cursor spliced into the audience's bytes, as for the audience's other
    /// subscribers.
    async fn send_shared(&self, delivery: shared::Shared) {
        shared::Deliver::deliver(self.tap.socket(), delivery, false).await;
    }

    async fn send(&self, message: Value) {
        let _ = self.send_message(Message::Text(message.to_string().into())).await;
    }

    /// The hot path of every delivery: serialised once, straight to text.
    /// Sends `response` as this operation's next result; whether it went out.
    async fn next(&self, response: &async_graphql::Response) -> bool {
        match next_message(self.tap.socket().kind, &self.id, response) {
            Ok(text) => self.send_message(Message::Text(text.into())).await,
            Err(err) => {
                tracing::error!(%err, "cannot serialise a response");
                false
            }
        }
    }

    async fn error(&self, response: &async_graphql::Response) {
        let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
        let payload = if self.protocol == Protocol::TransportWs { errors } else { json!({ "errors": errors }) };
        self.send(json!({ "type": "error", "id": self.id, "payload": payload })).await;
    }

    async fn complete(&self) {
        self.send(json!({ "type": "complete", "id": self.id })).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_next_message_is_json_with_the_operations_id_escaped() {
        let mut data = async_graphql::indexmap::IndexMap::new();
        data.insert(async_graphql::Name::new("reviewChanged"), async_graphql::Value::String("a\nb".into()));
        let response = async_graphql::Response::new(async_graphql::Value::Object(data));
        let id = "op \"1\"\\";
        let text = next_message("next", id, &response).unwrap_or_else(|e| panic!("{e}"));
        let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(parsed, json!({ "type": "next", "id": id, "payload": { "data": { "reviewChanged": "a\nb" } } }));
        assert!(text.starts_with(r#"{"type":"next","id":"op \"1\"\\","payload":{"data":"#), "{text}");
    }
}

//! HTTP routes: GraphQL over POST and GET, the websocket endpoint,
//! GraphiQL, and health checks; the accept loop that serves them within
//! connection limits ([`serve`]), and the request body limits.

mod apq;
mod examples;
mod graphiql;
mod graphql;
mod health;
mod limits;
mod media;
mod order;
mod rolled_back;
mod serve;
mod ws;
mod ws_caps;
mod ws_outbox;
mod ws_socket;

pub use apq::PersistedQueries;
pub use limits::BodyLimits;
pub use serve::{ConnectionLimits, serve};
pub use ws::WsConfig;
pub use ws_caps::WsCaps;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::auth::JwtKeys;
use crate::db::Pool;
use crate::graphql::AppSchema;
use crate::ops::metrics::SharedMetrics;
use crate::realtime::Realtime;

/// What every handler shares. The router holds it in an `Arc`, which is
/// what each request clones: cloning the struct itself takes a dozen
/// reference counts and copies the JWT keys (issue 11).
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub schema: AppSchema,
    pub jwt: JwtKeys,
    pub realtime: Realtime,
    pub ws: WsConfig,
    /// MAX_WS_CONNECTIONS and MAX_WS_PER_IP, and the websockets open now.
    pub ws_caps: std::sync::Arc<WsCaps>,
    pub metrics: SharedMetrics,
    /// Requests slower than this are counted and logged.
    pub slow_request: std::time::Duration,
    /// The longest a query or mutation may run, all of it (REQUEST_TIMEOUT_MS).
    pub request_timeout: std::time::Duration,
    /// Automatic persisted queries (PERSISTED_QUERY_CACHE_BYTES).
    pub persisted_queries: PersistedQueries,
    /// Tells open websockets that the server is shutting down.
    pub closing: Closing,
    /// Password hashing threads and sign-up/sign-in rate limits.
    pub auth: crate::auth::AuthGuard,
    /// Serve the example pages under /examples/ (APP_ENV=development only).
    pub examples: bool,
}

/// Shutdown's word to open websockets. axum's graceful shutdown waits for
/// HTTP requests but not for upgraded connections, which would just drop;
/// instead each socket is closed with 1012 ("service restart"), which tells
/// clients to reconnect (to another instance, or to this one once it is back)
/// and resubscribe from their last cursor, and shutdown waits for that.
#[derive(Clone)]
pub struct Closing {
    signal: tokio::sync::watch::Receiver<bool>,
    /// Held by every clone; shutdown waits until none is left.
    _open: tokio::sync::mpsc::Sender<()>,
}

/// The shutdown side of [`Closing`].
pub struct CloseAll {
    signal: tokio::sync::watch::Sender<bool>,
    open: tokio::sync::mpsc::Receiver<()>,
}

impl Closing {
    pub fn new() -> (Self, CloseAll) {
        let (signal_tx, signal) = tokio::sync::watch::channel(false);
        let (open_tx, open) = tokio::sync::mpsc::channel(1);
        (Self { signal, _open: open_tx }, CloseAll { signal: signal_tx, open })
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn begun(&mut self) {
        if self.signal.wait_for(|closing| *closing).await.is_err() {
            // The server is gone without a shutdown: nothing to wait for.
            std::future::pending::<()>().await;
        }
    }
}

impl CloseAll {
    /// Tells every socket to close.
    pub fn begin(&self) {
        self.signal.send_replace(true);
    }

    /// Waits, at most `limit`, until every holder of a [`Closing`] (the
    /// router's state and each socket) is gone.
    pub async fn finished(mut self, limit: std::time::Duration) -> bool {
        tokio::time::timeout(limit, self.open.recv()).await.is_ok()
    }
}

pub fn router(state: AppState, body: BodyLimits) -> Router {
    let mut routes = Router::new();
    if state.examples {
        routes = routes
            .route("/examples/live-places", get(examples::live_places_redirect))
            .route("/examples/live-places/", get(examples::live_places_index))
            .route("/examples/live-places/{*path}", get(examples::live_places_file));
    }
    let routes = routes
        .route("/", get(|| async { Redirect::temporary("/graphiql") }))
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(ws::upgrade))
        .route("/graphiql", get(graphiql::page))
        .route("/graphiql/{asset}", get(graphiql::asset))
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(std::sync::Arc::new(state));
    // The middleware wraps the router once, outermost first, rather than
    // each route (`Router::layer`): there every layer boxed the service
    // below it, and each request cloned those boxes, each clone cloning
    // the ones below: 39 allocations a request (issue 11).
    let middleware = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(limits::json_errors))
        // A bug must cost one request a 500, never the connection or the
        // process; inside `json_errors`, so a caught panic's 500 is
        // reshaped too.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(request_id))
        // One span per request with its id: every log line of the request
        // carries it (as a field in LOG_FORMAT=json). The span is all a
        // request costs the log when nothing goes wrong: its fields are
        // formatted once, from borrowed values, and only if INFO is on.
        // The line per response (status, latency) is DEBUG: at thousands
        // of requests a second, formatting and writing it cost more than
        // the rest of the request's logging; metrics count requests, and
        // `RUST_LOG=info,tower_http=debug` brings the lines back.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let id = request.extensions().get::<RequestId>().map_or("", |id| id.0.as_str());
                    // `operation` is filled in by a GraphQL request (see
                    // graphql::OperationSpan).
                    // The id is written as it is (`%`), not quoted and
                    // escaped character by character as `Debug` does: it
                    // is letters, digits and dashes (see `request_id`).
                    // The path stays `Debug`: a client's path may hold
                    // any non-ASCII character, line and paragraph
                    // separators and bidi controls included, which a text
                    // log must not show raw. JSON lines escape either way.
                    tracing::info_span!(
                        "request",
                        id = %id,
                        method = %request.method(),
                        path = request.uri().path(),
                        operation = tracing::field::Empty
                    )
                })
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        .layer(DefaultBodyLimit::max(body.max_bytes))
        // Reads the body within its limits (413, 408) before any handler;
        // the handlers' own limit is then never reached.
        .layer(axum::middleware::from_fn_with_state(body, limits::read_body));
    Router::new().fallback_service(middleware.service(routes))
}

/// The id of one HTTP request: the client's `x-request-id` if it sent a
/// sane one, otherwise a new one; echoed in the response.
#[derive(Clone)]
pub struct RequestId(pub String);

async fn request_id(mut request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        // A `HeaderName` made from a string would copy it every time.
        const X_REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

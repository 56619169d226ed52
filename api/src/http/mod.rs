//! HTTP routes: GraphQL over POST and GET, the websocket endpoint,
//! GraphiQL, and health checks.

mod graphiql;
mod graphql;
mod health;
mod ws;

pub use graphql::execute_as;
pub use ws::WsConfig;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::get;
use sea_orm::DatabaseConnection;
use tower_http::trace::TraceLayer;

use crate::auth::JwtKeys;
use crate::graphql::AppSchema;
use crate::ops::metrics::SharedMetrics;
use crate::realtime::Realtime;

/// What every handler shares. Cheap to clone: everything is reference-counted.
#[derive(Clone)]
pub struct AppState {
    pub pool: DatabaseConnection,
    pub schema: AppSchema,
    pub jwt: JwtKeys,
    pub realtime: Realtime,
    pub ws: WsConfig,
    pub metrics: SharedMetrics,
    /// The pool's ceiling, for the metrics.
    pub pool_max: u32,
    /// Requests slower than this are counted and logged.
    pub slow_request: std::time::Duration,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/graphiql") }))
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(ws::upgrade))
        .route("/graphiql", get(graphiql::page))
        .route("/graphiql/{asset}", get(graphiql::asset))
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

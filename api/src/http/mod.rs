//! HTTP routes: GraphQL over POST and GET, the websocket endpoint,
//! GraphiQL, and health checks.

mod graphiql;
mod graphql;
mod health;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::get;
use sea_orm::DatabaseConnection;
use tower_http::trace::TraceLayer;

use crate::auth::JwtKeys;
use crate::graphql::AppSchema;

/// What every handler shares. Cheap to clone: everything is reference-counted.
#[derive(Clone)]
pub struct AppState {
    pub pool: DatabaseConnection,
    pub schema: AppSchema,
    pub jwt: JwtKeys,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/graphiql") }))
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(graphql::websocket))
        .route("/graphiql", get(graphiql::page))
        .route("/graphiql/{asset}", get(graphiql::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

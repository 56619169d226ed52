use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::db;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long `/readyz` waits for the database: a load balancer's probe must
/// get its answer, whatever state the database is in, within 2 s.
const READY_WITHIN: Duration = Duration::from_millis(1500);

/// The database is reachable and has no pending migrations: safe to route
/// traffic here.
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let unreachable = || (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unreachable" })));
    if state.pool.health().is_down() {
        return unreachable();
    }
    let pending = async {
        let tx = state.pool.begin().await?;
        let pending = db::pending_migrations(&tx).await;
        tx.rollback().await?;
        pending
    };
    let Ok(pending) = tokio::time::timeout(READY_WITHIN, pending).await else {
        // Busy or gone: a probe tells which, for the requests that follow.
        state.pool.health().suspect();
        tracing::warn!("readiness check: no answer from the database within {READY_WITHIN:?}");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database not answering" })));
    };
    match pending {
        Ok(pending) if pending.is_empty() => {
            // The capture mode, and whether this server is the one stamping
            // the feed (logical mode: one server at a time).
            let capture = state.realtime.capture();
            (
                StatusCode::OK,
                Json(json!({ "status": "ready", "capture": capture.name(), "sequencer": capture.is_sequencer() })),
            )
        }
        Ok(pending) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "pending migrations", "pending": pending })))
        }
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unreachable" })))
        }
    }
}

/// Prometheus metrics (text exposition format).
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, crate::ops::metrics::CONTENT_TYPE)], state.metrics.render())
}

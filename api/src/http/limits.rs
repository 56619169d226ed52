//! Request limits at the HTTP layer, answered in GraphQL's error shape.
//!
//! - The body is read here, whole, before any handler runs, bounded in size
//!   (MAX_BODY_BYTES, 413) and in time (HTTP_BODY_READ_TIMEOUT, 408): a
//!   client that sends its headers at once and then its body a byte at a
//!   time would otherwise hold a connection slot for as long as it likes
//!   (the connection watchdog in http::serve leaves requests in flight alone).
//! - Every other error response on `/graphql` that is not JSON yet (axum's
//!   plain-text rejections, an empty 405, a caught panic) becomes
//!   `{"errors":[{"message", "extensions":{"code"}}]}`, so a client can
//!   always branch on `extensions.code`.

use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::error::http_status_code;

/// How large and how slow a request body may be.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

/// Reads the request body within [`BodyLimits`], then runs the handler with
/// it in memory.
pub async fn read_body(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.size_hint().exact() == Some(0) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_bytes as u64) {
        return too_large(limits.max_bytes);
    }
    let capacity = declared.map_or(0, |length| usize::try_from(length).unwrap_or(0).min(limits.max_bytes));
    let read = async move {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::with_capacity(capacity);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Unread::Broken)?;
            if bytes.len() + chunk.len() > limits.max_bytes {
                return Err(Unread::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(Unread::TooLarge)) => too_large(limits.max_bytes),
        Ok(Err(Unread::Broken)) => closing(error(StatusCode::BAD_REQUEST, "the request body could not be read".into())),
        Err(_) => closing(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", limits.read_timeout.as_secs()),
        )),
    }
}

enum Unread {
    TooLarge,
    Broken,
}

fn too_large(max_bytes: usize) -> Response {
    closing(error(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {max_bytes} bytes")))
}

/// The rest of the body is never read: the connection cannot carry another
/// request, so say that it ends.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": http_status_code(status.as_u16()) } }]
    });
    (status, axum::Json(body)).into_response()
}

/// The longest plain-text rejection kept as the error's message.
const MAX_MESSAGE: usize = 300;

/// Turns error responses on `/graphql` that are not JSON into GraphQL
/// errors with a code (see the module doc).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let graphql = request.uri().path().starts_with("/graphql");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/graphql-response+json"));
    if !graphql || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = if status.is_server_error() {
        // A panic's text, say: never shown.
        "internal server error".to_owned()
    } else {
        // axum's rejections say what was wrong, in a sentence of their own.
        let text = axum::body::to_bytes(body, MAX_MESSAGE * 4).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_MESSAGE {
            status.canonical_reason().unwrap_or("bad request").to_lowercase()
        } else {
            text.to_owned()
        }
    };
    let json = error(status, message);
    // Keep what the status needs (Allow on a 405, Retry-After, the request id).
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, json.into_body())
}

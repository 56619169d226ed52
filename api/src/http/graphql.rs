//! GraphQL over HTTP: one request, one viewer, one database transaction.

use async_graphql::dataloader::DataLoader;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, parse_query_string};
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::{Viewer, viewer_from_authorization};
use crate::db::{RequestDb, begin_request};
use crate::error::{ApiError, ensure_codes};
use crate::places::PlaceLoader;

/// POST /graphql with a JSON body `{query, variables, operationName}`.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the request as Content-Type: application/json",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request: {err}"),
            );
        }
    };
    execute(&state, &headers, request).await
}

/// GET /graphql?query=..&variables=..: queries only, so a link or a
/// prefetch can never change data.
pub async fn get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let request = match parse_query_string(query.as_deref().unwrap_or_default()) {
        Ok(request) if !request.query.is_empty() => request,
        _ => return http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "GET /graphql needs a `query` parameter"),
    };
    if selects_mutation(&request) {
        return http_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "mutations must be sent with POST");
    }
    execute(&state, &headers, request).await
}

fn selects_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false; // execution reports the syntax error
    };
    let name = request.operation_name.as_deref();
    document.operations.iter().any(|(op_name, op)| {
        op.node.ty != OperationType::Query && (name.is_none() || op_name.map(async_graphql::Name::as_str) == name)
    })
}

async fn execute(state: &AppState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let viewer = match viewer_from_authorization(authorization, &state.jwt) {
        Ok(viewer) => viewer,
        Err(err) => return api_error(&err),
    };
    let (tx, viewer) = match begin_request(&state.pool, viewer).await {
        Ok(started) => started,
        Err(err) => return api_error(&err),
    };
    let db = RequestDb::new(tx);
    let request = request
        .data(viewer)
        .data(db.clone())
        .data(state.jwt.clone())
        .data(DataLoader::new(PlaceLoader::new(db.clone(), viewer), tokio::spawn));
    let mut response = state.schema.execute(request).await;
    ensure_codes(&mut response);
    // All or nothing: see db::request for what this means to clients.
    if let Err(err) = db.finish(response.errors.is_empty()).await {
        response = async_graphql::Response::from_errors(vec![server_error(&err)]);
    }
    Json(response).into_response()
}

/// GET /graphql/ws: subscriptions over graphql-transport-ws (and the legacy
/// subscriptions-transport-ws). The token comes in `connection_init`.
pub async fn websocket(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        let jwt = state.jwt.clone();
        GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
            .on_connection_init(move |payload| async move {
                let from_payload = payload.as_object().and_then(|map| {
                    map.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).and_then(|(_, v)| v.as_str())
                });
                let viewer: Viewer = viewer_from_authorization(from_payload.or(header_auth.as_deref()), &jwt)?;
                let mut data = Data::default();
                data.insert(viewer);
                data.insert(jwt);
                Ok(data)
            })
            .serve()
    })
}

fn server_error(err: &ApiError) -> ServerError {
    let err: async_graphql::Error = err.clone().into();
    let mut error = err.into_server_error(async_graphql::Pos::default());
    error.locations.clear();
    error
}

/// A GraphQL-shaped error body for failures before execution.
fn api_error(err: &ApiError) -> Response {
    let status = match err {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(async_graphql::Response::from_errors(vec![server_error(err)]))).into_response()
}

fn http_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

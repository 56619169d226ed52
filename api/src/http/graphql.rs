//! GraphQL over HTTP: one request, one viewer, one database transaction.

use std::sync::Arc;

use async_graphql::ServerError;
use async_graphql::dataloader::DataLoader;
use async_graphql::parser::types::OperationType;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::media::{self, Media};
use super::order::KeyOrder;
use super::rolled_back;
use crate::auth::{AccessSession, PeerAddr, Viewer, claims_from_authorization};
use crate::db::{Access, RequestDb, begin_session_request};
use crate::domain::RowLoader;
use crate::error::{ApiError, ensure_codes, retry_after};
use crate::graphql::{documents, guard};
use crate::posts::PostsLoader;

/// POST /graphql with a JSON body `{query, variables, operationName,
/// extensions}`, answered in the media type the client accepts (see
/// [`super::media`]).
pub async fn post(State(state): State<Arc<AppState>>, peer: PeerAddr, headers: HeaderMap, body: Bytes) -> Response {
    let Some(media) = media::negotiate(&headers) else {
        return media::not_acceptable();
    };
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
    let mut request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request: {err}"),
            );
        }
    };
    if let Err(err) = state.persisted_queries.resolve(&mut request) {
        return media::respond(media, &async_graphql::Response::from_errors(vec![err]));
    }
    // Not a GraphQL request at all (the spec's "well-formed" check), in
    // either media type; a persisted query has its document by now.
    if request.query.is_empty() {
        return http_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the body has no `query` (nor `extensions.persistedQuery` of a known document)",
        );
    }
    execute(&state, &headers, peer, media, request).await
}

/// GET /graphql?query=..&variables=..&operationName=..&extensions=..:
/// queries only, so a link or a prefetch can never change data.
pub async fn get(
    State(state): State<Arc<AppState>>,
    peer: PeerAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(media) = media::negotiate(&headers) else {
        return media::not_acceptable();
    };
    let mut request = match parse_get(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(message) => return http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    if let Err(err) = state.persisted_queries.resolve(&mut request) {
        return media::respond(media, &async_graphql::Response::from_errors(vec![err]));
    }
    if request.query.is_empty() {
        return http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "GET /graphql needs a `query` parameter");
    }
    // Parsed once: the request keeps the document for execution.
    let name = request.operation_name.clone();
    let selects_mutation = documents::parsed(&mut request)
        .is_ok_and(|document| types_of(document, name.as_deref()).any(|ty| ty != OperationType::Query));
    if selects_mutation {
        // The spec's answer: this method is not allowed for it; POST is.
        let mut response =
            http_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "mutations must be sent with POST");
        response.headers_mut().insert(header::ALLOW, axum::http::HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &headers, peer, media, request).await
}

/// A GET request's parameters. async-graphql's `parse_query_string` reads
/// the operation's name from `operation_name`; the spec (and every client)
/// calls it `operationName`, which it would silently drop.
fn parse_get(query: &str) -> Result<async_graphql::Request, String> {
    let mut request = async_graphql::Request::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "query" => request.query = value.into_owned(),
            "operationName" if !value.is_empty() => request.operation_name = Some(value.into_owned()),
            "variables" if !value.is_empty() => {
                request.variables =
                    serde_json::from_str(&value).map_err(|err| format!("`variables` is not a JSON object: {err}"))?;
            }
            "extensions" if !value.is_empty() => {
                request.extensions =
                    serde_json::from_str(&value).map_err(|err| format!("`extensions` is not a JSON object: {err}"))?;
            }
            _ => {}
        }
    }
    Ok(request)
}

/// The types of the operations a request may run (the named one, or all of
/// them); empty when the document does not parse (execution reports that).
/// Parses the document into the request, which keeps it for execution.
pub fn operation_types(request: &mut async_graphql::Request) -> Vec<OperationType> {
    let name = request.operation_name.clone();
    let Ok(document) = documents::parsed(request) else {
        return Vec::new();
    };
    types_of(document, name.as_deref()).collect()
}

fn types_of<'a>(
    document: &'a async_graphql::parser::types::ExecutableDocument,
    name: Option<&'a str>,
) -> impl Iterator<Item = OperationType> + 'a {
    document
        .operations
        .iter()
        .filter(move |(op_name, _)| name.is_none() || op_name.map(async_graphql::Name::as_str) == name)
        .map(|(_, op)| op.node.ty)
}

/// How the request's transaction may touch data: READ ONLY unless the
/// document may run a mutation (the named operation, or any when none is
/// named: async-graphql then refuses a document with several). A document
/// that names no operation of its own fails before any SQL, so read only.
fn access_of(document: &async_graphql::parser::types::ExecutableDocument, name: Option<&str>) -> Access {
    if types_of(document, name).any(|ty| ty == OperationType::Mutation) { Access::ReadWrite } else { Access::ReadOnly }
}

/// The name of the operation a request runs, for its log span and metric
/// label: see [`guard::operation_name`]. Never a client-chosen name that
/// names no operation. (Parses the document into the request, once: it
/// keeps it for execution.)
pub fn operation_name(request: &mut async_graphql::Request) -> Option<String> {
    let name = request.operation_name.clone();
    let document = documents::parsed(request).ok()?;
    guard::operation_name(document, name.as_deref())
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    peer: PeerAddr,
    media: Media,
    request: async_graphql::Request,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let claims = match claims_from_authorization(authorization, &state.jwt) {
        Ok(claims) => claims,
        Err(err) => return in_media(media, api_error(&err)),
    };
    let viewer = claims.as_ref().map_or(Viewer::Anonymous, |c| Viewer::User { id: c.sub, role: c.role });
    // Sign-up and sign-in are rate limited per client address.
    let request = request.data(state.auth.limits.client_ip(peer.0, headers));
    let session = AccessSession(claims.and_then(|c| c.sid));
    match execute_in_session(state, viewer, session, request, OperationSpan::Request).await {
        Ok(response) => {
            // RATE_LIMITED and SERVICE_UNAVAILABLE errors say when to retry.
            let retry = retry_after(&response);
            let mut http = media::respond(media, &response);
            if let Some(seconds) = retry {
                http.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            }
            http
        }
        Err(err) => in_media(media, api_error(&err)),
    }
}

/// An error answer before execution, labelled with the negotiated type.
fn in_media(media: Media, mut response: Response) -> Response {
    response.headers_mut().insert(header::CONTENT_TYPE, media.content_type());
    response
}

/// Which span names the operation in the log lines of its execution.
#[derive(Clone, Copy)]
pub enum OperationSpan {
    /// The HTTP request's own, whose empty `operation` field is filled
    /// in: a request costs one span, not two (each is created, its fields
    /// formatted, and entered and left on every poll). Recorded once:
    /// an HTTP request carries one operation (no batches).
    Request,
    /// One of its own, inside the websocket connection's span: many
    /// operations share that one, so none may write its name there.
    Own,
}

/// Runs a query or mutation for `viewer` in one request transaction,
/// committed only if the response has no errors. Shared by HTTP and
/// websocket clients. `session` is the access token's: the request's start
/// checks that it has not ended, and `signOut` knows which to end.
/// `log_span`: where the operation's name goes for its log lines.
pub async fn execute_in_session(
    state: &AppState,
    viewer: Viewer,
    session: AccessSession,
    request: async_graphql::Request,
    log_span: OperationSpan,
) -> Result<async_graphql::Response, ApiError> {
    let started = std::time::Instant::now();
    let mut request = request;
    // Parsed here, once (or copied from the documents parsed before):
    // async-graphql executes this parsed document rather than parsing the
    // text again (a document that does not parse is left to it, to report
    // the syntax error).
    // What the document and the operation's name decide is worked out
    // once per document (see documents::derived).
    let plan = documents::derived(
        &mut request,
        |document, name| Plan {
            operation: guard::operation_name(document, name),
            access: access_of(document, name),
            order: KeyOrder::of(document, name),
        },
        |plan| plan.order.as_ref().is_none_or(|order| order.keys() <= MAX_KEPT_KEYS),
    );
    let (operation, access, order) = match &plan {
        Ok(plan) => (plan.operation.as_deref(), plan.access, plan.order.as_ref()),
        Err(_) => (None, Access::ReadOnly, None),
    };
    // Every log line of the execution (a slow statement, say) names the
    // operation; over HTTP the request's span has its id too.
    let name = operation.unwrap_or("anonymous");
    let request_span = match log_span {
        OperationSpan::Request => Some(tracing::Span::current()).filter(|span| span.has_field("operation")),
        OperationSpan::Own => None,
    };
    let span = match request_span {
        Some(request_span) => {
            // (An operation's name is letters, digits and `_`: written
            // as it is, as the span's other fields are.)
            request_span.record("operation", tracing::field::display(name));
            // Entering a disabled span is a branch.
            tracing::Span::none()
        }
        // A websocket operation, or a request span that RUST_LOG turned
        // off (it has no fields then) while this target stays on.
        None => tracing::info_span!("graphql", operation = name),
    };
    // A whole request is bounded too, not only each of its statements: a
    // document of many statements each just under the statement timeout
    // would otherwise hold its pooled connection for as long as it likes.
    // Dropping `run` at the deadline rolls its transaction back (see db).
    let result = match tokio::time::timeout(
        state.request_timeout,
        run(state, viewer, session, request, access).instrument(span),
    )
    .await
    {
        Ok(Ok(mut response)) => {
            if let Some(order) = order {
                order.apply(&mut response.data);
            }
            Ok(response)
        }
        Ok(result) => result,
        Err(_) => Ok(async_graphql::Response::from_errors(vec![server_error(&ApiError::QueryTimeout(format!(
            "the request ran longer than the server allows ({} ms) and was rolled back: ask for less (smaller pages, fewer fields)",
            state.request_timeout.as_millis()
        )))])),
    };
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(response) if response.errors.is_empty() => "ok",
        Ok(_) => "error",
        Err(ApiError::Unavailable(_)) => "unavailable",
        Err(_) => "rejected",
    };
    state.metrics.observe_request(operation, outcome, elapsed.as_secs_f64());
    if elapsed > state.slow_request {
        state.metrics.slow_request();
        tracing::warn!(operation = operation.unwrap_or("anonymous"), elapsed_ms = elapsed.as_millis(), "slow request");
    }
    result
}

/// What a request's document and operation name decide before it runs.
/// The largest key-order plan kept with its document (a plan costs about
/// 100 bytes a key; application documents have tens of keys, a hostile one
/// up to `http::order`'s visit budget).
const MAX_KEPT_KEYS: usize = 500;

struct Plan {
    /// For the log span and the metric label.
    operation: Option<String>,
    access: Access,
    /// The response's key order.
    order: Option<KeyOrder>,
}

async fn run(
    state: &AppState,
    viewer: Viewer,
    session: AccessSession,
    request: async_graphql::Request,
    access: Access,
) -> Result<async_graphql::Response, ApiError> {
    let (tx, viewer) = begin_session_request(&state.pool, viewer, session.0, access).await?;
    let db = RequestDb::new(tx, state.pool.clone());
    let request = request
        .data(viewer)
        .data(session)
        .data(db.clone())
        .data(state.jwt.clone())
        .data(state.realtime.clone())
        .data(state.auth.clone())
        .data(DataLoader::new(RowLoader::new(db.clone(), viewer), spawn_in_span))
        .data(DataLoader::new(PostsLoader::new(db.clone(), viewer), spawn_in_span));
    let mut response = state.schema.execute(request).await;
    ensure_codes(&mut response);
    // All or nothing: see db::request for what this means to clients.
    let commit = response.errors.is_empty();
    if let Err(err) = db.finish(commit).await {
        response = async_graphql::Response::from_errors(vec![server_error(&err)]);
    } else if !commit && access == Access::ReadWrite {
        rolled_back::withhold_undone(&mut response);
    } else if access == Access::ReadWrite {
        // Its changes reach subscribers without waiting for the
        // sequencer's next poll (logical capture).
        state.realtime.written();
    }
    Ok(response)
}

/// Runs a DataLoader batch as its own task, in the span of the request
/// that asked for it, so its log lines carry the request id and operation.
pub fn spawn_in_span(batch: futures_util::future::BoxFuture<'static, ()>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(batch.in_current_span())
}

pub fn server_error(err: &ApiError) -> ServerError {
    let err: async_graphql::Error = err.clone().into();
    let mut error = err.into_server_error(async_graphql::Pos::default());
    error.locations.clear();
    error
}

/// A GraphQL-shaped error body for failures before execution.
fn api_error(err: &ApiError) -> Response {
    let body = Json(async_graphql::Response::from_errors(vec![server_error(err)]));
    match err {
        ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, body).into_response(),
        // The pool or the database will likely be back soon: say when to retry.
        ApiError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], body).into_response()
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, body).into_response(),
    }
}

pub(super) fn http_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

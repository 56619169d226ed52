//! Every error a client can see, and its `extensions.code`, is decided here.
//!
//! Resolvers return [`ApiError`]; database errors are classified by SQLSTATE
//! and by the *name* of the violated constraint (each domain declares what its
//! constraints mean, [`crate::domain::Constraint`]), so a duplicate review
//! becomes a CONFLICT on `placeId` without any resolver parsing SQL text. Anything not
//! recognised becomes INTERNAL_SERVER_ERROR with a generic message: the cause
//! is logged, never sent, so database text cannot reach a client.

use async_graphql::{ErrorExtensions, Response, ServerError};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

/// A failure a resolver or the request pipeline reports to the client.
///
/// Deliberately not `Display`: async-graphql converts any `Display` error
/// into a bare message, which would drop the code. Use [`ApiError::message`].
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No valid credentials where they are needed, or a bad token.
    Unauthenticated(String),
    /// Signed in, but the viewer's role may not do this.
    Forbidden(String),
    /// The row does not exist, or the viewer may not see it: the two are
    /// deliberately indistinguishable so ids cannot be probed.
    NotFound(String),
    /// Input that can never succeed, with the offending field.
    BadUserInput { field: &'static str, message: String },
    /// The request is valid but collides with existing state.
    Conflict { field: Option<&'static str>, message: String },
    /// A change-feed cursor older than the log's retention: refetch instead.
    CursorExpired(String),
    /// A change-feed cursor this server did not issue to this viewer for
    /// this database (forged, another account's, another database's, from
    /// before a restore) or ahead of the log: refetch instead.
    CursorInvalid(String),
    /// The database is unreachable or the pool is exhausted: retry later.
    Unavailable(String),
    /// A statement ran past DATABASE_STATEMENT_TIMEOUT_MS and was cancelled;
    /// the request was rolled back. Asking for less (a smaller page, fewer
    /// fields) is the fix, not retrying.
    QueryTimeout(String),
    /// Too many attempts (sign-up, sign-in): retry after `retry_after` seconds.
    RateLimited { message: String, retry_after: u64 },
    /// Too many websockets open (on the server, or from one client
    /// address): the upgrade is refused at once; retry after `retry_after`
    /// seconds, or close another socket first.
    TooManyConnections { message: String, retry_after: u64 },
    /// A bug or an unexpected database failure; the cause has been logged.
    Internal,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The client-facing message (never database text).
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Unavailable(m)
            | Self::QueryTimeout(m)
            | Self::CursorExpired(m)
            | Self::CursorInvalid(m) => m.clone(),
            Self::BadUserInput { message, .. }
            | Self::Conflict { message, .. }
            | Self::RateLimited { message, .. }
            | Self::TooManyConnections { message, .. } => message.clone(),
            Self::Internal => "internal server error".into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict { .. } => "CONFLICT",
            Self::CursorExpired(_) => "CURSOR_EXPIRED",
            Self::CursorInvalid(_) => "CURSOR_INVALID",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::QueryTimeout(_) => "QUERY_TIMEOUT",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::TooManyConnections { .. } => "TOO_MANY_CONNECTIONS",
            Self::Internal => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput { field, message: message.into() }
    }

    pub fn conflict(field: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { field: Some(field), message: message.into() }
    }

    /// Seconds a client should wait before retrying, for errors that say so
    /// (`extensions.retryAfter`, and the `Retry-After` header over HTTP).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::TooManyConnections { retry_after, .. } => Some(*retry_after),
            Self::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    pub fn sign_in_required() -> Self {
        Self::Unauthenticated("sign in to do this".into())
    }

    /// Logs `cause` and hides it behind INTERNAL_SERVER_ERROR.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::Internal
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        let field = match &err {
            ApiError::BadUserInput { field, .. } => Some(*field),
            ApiError::Conflict { field, .. } => *field,
            _ => None,
        };
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", err.code());
            if let Some(field) = field {
                ext.set("field", field);
            }
            if let Some(seconds) = err.retry_after() {
                ext.set("retryAfter", seconds);
            }
        })
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        classify_db_error(&err)
    }
}

/// The SQLSTATE and constraint name of a database error, when it has them.
fn database_error(err: &DbErr) -> Option<(String, Option<String>)> {
    let (DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e))) = err else {
        return None;
    };
    let db = e.as_database_error()?;
    Some((db.code()?.into_owned(), db.constraint().map(str::to_owned)))
}

fn classify_db_error(err: &DbErr) -> ApiError {
    if let DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) = err {
        tracing::warn!("database pool exhausted: no connection within DATABASE_POOL_TIMEOUT");
        return ApiError::Unavailable("the database is busy; retry shortly".into());
    }
    if crate::db::is_connection_lost(err) || matches!(err, DbErr::ConnectionAcquire(_)) {
        tracing::warn!(error = %err, "database unreachable or connection lost");
        return ApiError::Unavailable("the database is unavailable; retry shortly".into());
    }
    let Some((sqlstate, constraint)) = database_error(err) else {
        return ApiError::internal(err);
    };
    if let Some(known) = constraint.as_deref().and_then(crate::domain::constraint_error) {
        return known;
    }
    match sqlstate.as_str() {
        // unique_violation
        "23505" => ApiError::Conflict { field: None, message: "already exists".into() },
        // foreign_key_violation: the referenced row is gone or was never visible
        "23503" => ApiError::NotFound("a referenced row was not found".into()),
        // check_violation, not_null_violation, string too long, invalid text
        "23514" | "23502" | "22001" | "22P02" => ApiError::bad_input("input", "invalid input"),
        // numeric_value_out_of_range (an overflowing sum), untranslatable_character
        // (a NUL in jsonb), character_not_in_repertoire (a NUL in text): the
        // validators and the document guard refuse these first, naming the
        // field; this is the backstop for what they miss.
        "22003" | "22P05" | "22021" => {
            ApiError::bad_input("input", "a value is out of range or holds a character that cannot be stored")
        }
        // insufficient_privilege, including "new row violates row-level security policy"
        "42501" => ApiError::Forbidden("not allowed for your role".into()),
        // serialization_failure, deadlock_detected
        "40001" | "40P01" => ApiError::Conflict { field: None, message: "concurrent update; retry the request".into() },
        // query_canceled: the server never sends cancel requests of its
        // own, so this is the request's statement_timeout (whatever
        // language lc_messages makes the message).
        "57014" => {
            tracing::warn!(error = %err, "statement timeout");
            ApiError::QueryTimeout(
                "a statement of this request ran longer than the server allows and was cancelled; the request was rolled back: ask for less (smaller pages, fewer fields)".into(),
            )
        }
        // admin_shutdown, cannot_connect_now
        "57P01" | "57P03" => {
            tracing::warn!(error = %err, "database cancelled the statement");
            ApiError::Unavailable("the database is busy; retry shortly".into())
        }
        _ => ApiError::internal(err),
    }
}

/// Gives every error of a response a code, so clients can always branch on
/// `extensions.code`. Errors raised by our resolvers and by the document
/// guard (`graphql::guard`: cost, depth, mutation fields, NUL bytes) already
/// carry one; the rest come from async-graphql itself: syntax and validation
/// errors (no path), argument coercion errors, and choosing the operation.
pub fn ensure_codes(response: &mut Response) {
    for error in &mut response.errors {
        if error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some()) {
            continue;
        }
        let code = uncoded_error_code(error);
        match code {
            "INTERNAL_SERVER_ERROR" => {
                tracing::error!(message = %error.message, "uncoded resolver error");
                error.message = "internal server error".into();
            }
            // async-graphql quotes the client's operationName, which may be
            // as long as the body: say what is wrong without echoing it.
            "OPERATION_RESOLUTION_FAILURE" if error.message.starts_with(UNKNOWN_OPERATION) => {
                error.message = "operationName names no operation of the document".into();
            }
            _ => {}
        }
        error.extensions.get_or_insert_with(Default::default).set("code", code);
    }
}

/// The longest `extensions.retryAfter` among a response's errors: what the
/// HTTP `Retry-After` header of that response says.
pub fn retry_after(response: &Response) -> Option<u64> {
    response
        .errors
        .iter()
        .filter_map(|error| error.extensions.as_ref()?.get("retryAfter"))
        .filter_map(|value| match value {
            async_graphql::Value::Number(n) => n.as_u64(),
            _ => None,
        })
        .max()
}

/// async-graphql's message when `operationName` names no operation.
const UNKNOWN_OPERATION: &str = "Unknown operation named";
/// async-graphql's message when a document of several operations comes
/// without `operationName`.
const OPERATION_NAME_REQUIRED: &str = "Operation name required in request";

/// The code of an error async-graphql raised itself. Its errors carry no
/// kind (no source, no extensions), so the decision is by where the error
/// is (a path means execution had started) and, for the kinds a client must
/// tell apart, by the start of async-graphql's message. The unit tests
/// below pin each message, so an upgrade that rewords one fails loudly.
fn uncoded_error_code(error: &ServerError) -> &'static str {
    let message = error.message.as_str();
    if message.starts_with(UNKNOWN_OPERATION) || message.starts_with(OPERATION_NAME_REQUIRED) {
        // The request names no runnable operation (Apollo Server's code).
        "OPERATION_RESOLUTION_FAILURE"
    } else if message.starts_with("Failed to parse")
        || message.starts_with("Invalid value")
        || message.starts_with("Expected input type")
        || message.contains("(occurred while parsing")
    {
        // Argument and input-object coercion: the client sent a wrong type or a null.
        "BAD_USER_INPUT"
    } else if error.path.is_empty() {
        // Parse and validation errors refer to the document, not to a field.
        "GRAPHQL_VALIDATION_FAILED"
    } else {
        "INTERNAL_SERVER_ERROR"
    }
}

/// The code of a failure at the HTTP layer, before any GraphQL runs (a body
/// too large or too slow, a wrong method, one of axum's rejections): the
/// status, spelled as a code, so such errors carry `extensions.code` too.
pub fn http_status_code(status: u16) -> &'static str {
    match status {
        401 => "UNAUTHENTICATED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        429 => "RATE_LIMITED",
        503 => "SERVICE_UNAVAILABLE",
        500.. => "INTERNAL_SERVER_ERROR",
        _ => "BAD_REQUEST",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::graphql::{Limits, build_schema};

    /// The code a document gets from the schema alone (every case here
    /// fails before any resolver needs a database).
    async fn code_of(query: &str, operation: Option<&str>, variables: serde_json::Value) -> String {
        let mut request = async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables));
        if let Some(name) = operation {
            request = request.operation_name(name);
        }
        let mut response = build_schema(Limits::default()).execute(request).await;
        ensure_codes(&mut response);
        let error = response.errors.first().unwrap_or_else(|| panic!("no error for {query}"));
        let code = error.extensions.as_ref().and_then(|ext| ext.get("code")).cloned();
        match code {
            Some(async_graphql::Value::String(code)) => code,
            other => panic!("no code for {query}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn async_graphql_messages_we_classify_still_read_as_expected() {
        let cases: [(&str, Option<&str>, serde_json::Value, &str); 7] = [
            ("query A { changeCursor }", Some("B"), json!({}), "OPERATION_RESOLUTION_FAILURE"),
            ("{ changeCursor }", Some("B"), json!({}), "OPERATION_RESOLUTION_FAILURE"),
            ("query A { changeCursor } query B { changeCursor }", None, json!({}), "OPERATION_RESOLUTION_FAILURE"),
            ("{ places(first: \"ten\") { totalCount } }", None, json!({}), "BAD_USER_INPUT"),
            ("query($f: Int) { places(first: $f) { totalCount } }", None, json!({ "f": "ten" }), "BAD_USER_INPUT"),
            (
                "mutation($i: CreatePostInput!) { createPost(input: $i) { id } }",
                None,
                json!({ "i": { "title": ["not", "text"] } }),
                "BAD_USER_INPUT",
            ),
            ("{ noSuchField }", None, json!({}), "GRAPHQL_VALIDATION_FAILED"),
        ];
        for (query, operation, variables, expected) in cases {
            assert_eq!(code_of(query, operation, variables).await, expected, "{query}");
        }
    }

    #[tokio::test]
    async fn an_unknown_operation_name_is_not_echoed_back() {
        let name = "x".repeat(10_000);
        let request = async_graphql::Request::new("query A { changeCursor }").operation_name(name.as_str());
        let mut response = build_schema(Limits::default()).execute(request).await;
        ensure_codes(&mut response);
        assert!(response.errors.iter().all(|e| !e.message.contains(&name)), "{:?}", response.errors);
    }
}

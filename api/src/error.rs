//! Every error a client can see, and its `extensions.code`, is decided here.
//!
//! Resolvers return [`ApiError`]; database errors are classified by SQLSTATE
//! and by the *name* of the violated constraint (each domain declares what its
//! constraints mean, [`crate::domain::Constraint`]), so a duplicate review
//! becomes a CONFLICT on `placeId` without any resolver parsing SQL text. Anything not
//! recognised becomes INTERNAL_SERVER_ERROR with a generic message: the cause
//! is logged, never sent, so database text cannot reach a client.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, NextParseQuery, NextPrepareRequest, NextRequest, NextSubscribe, NextValidation,
};
use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    ErrorExtensions, Name, Pos, Positioned, Response, ServerError, ServerResult, ValidationResult, Variables,
};
use async_graphql_value::Value;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
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

/// Turns NOT_FOUND into `None`: lookups by id answer null for "not found or
/// not yours" (RLS hides both alike), so one missing object does not null the
/// whole `data` of a query. Every other error, e.g. a malformed id, stays.
pub trait FoundExt<T> {
    fn found(self) -> ApiResult<Option<T>>;
}

impl<T> FoundExt<T> for ApiResult<T> {
    fn found(self) -> ApiResult<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
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
/// guard (`graphql::guard`) carry one, and [`ErrorKinds`] gives async-graphql's
/// own errors theirs by the stage that raised them; what is still uncoded
/// here is a bug (a resolver error that skipped [`ApiError`]): logged, and
/// sent as INTERNAL_SERVER_ERROR without its text.
pub fn ensure_codes(response: &mut Response) {
    for error in response.errors.iter_mut().filter(|error| !has_code(error)) {
        tracing::error!(message = %error.message, "uncoded error");
        error.message = "internal server error".into();
        error.extensions.get_or_insert_with(Default::default).set("code", "INTERNAL_SERVER_ERROR");
    }
}

fn has_code(error: &ServerError) -> bool {
    error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some())
}

fn set_code(mut error: ServerError, code: &'static str) -> ServerError {
    if !has_code(&error) {
        error.extensions.get_or_insert_with(Default::default).set("code", code);
    }
    error
}

/// The code of a document that cannot run as written: it does not parse,
/// or it breaks a validation rule (an unknown field, a literal argument of
/// the wrong type). GraphQL's spec calls both "request errors".
const DOCUMENT_INVALID: &str = "GRAPHQL_VALIDATION_FAILED";

/// Classifies async-graphql's own errors by the stage that raised them,
/// not by their wording (which changes between releases):
/// - the parse and validation stages: `GRAPHQL_VALIDATION_FAILED`, except a
///   failure located at an argument whose value is a variable: async-graphql
///   checks variable values against argument types while validating, so
///   that is the value the client sent, `BAD_USER_INPUT`;
/// - after validation, before execution (no path; async-graphql's only
///   failures there are choosing the operation): `OPERATION_RESOLUTION_FAILURE`
///   (Apollo Server's code), with a message that does not echo the
///   client's `operationName`;
/// - during execution, errors with no code and no Rust source:
///   async-graphql coercing a value the client sent (an argument or a
///   variable of the wrong type, a missing field of an input object) into
///   a resolver's argument type, so `BAD_USER_INPUT`. Our resolvers' errors
///   always carry a code ([`ApiError`]), and a Rust error converted by `?`
///   keeps its source: those stay uncoded for [`ensure_codes`].
///
/// One per request; remembers whether the request named an operation, and
/// where the document's arguments take variables. Not an extension of the
/// schema's own: it runs as the inner link of [`crate::graphql::guard`]'s,
/// exactly as the next extension in the chain would. async-graphql wraps
/// every field's resolver in every extension's `resolve` hook (a boxed
/// future each, overridden or not), so one extension instead of two is a
/// layer less per field (issue 11).
#[derive(Default)]
pub(crate) struct ErrorKinds {
    named_operation: Arc<AtomicBool>,
    variable_arguments: Mutex<Vec<Pos>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorKinds {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        classify_after_validation(&mut response, self.named_operation.load(Ordering::Relaxed));
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let named = self.named_operation.clone();
        next.run(ctx, stream)
            .map(move |mut response| {
                classify_after_validation(&mut response, named.load(Ordering::Relaxed));
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        self.named_operation.store(request.operation_name.is_some(), Ordering::Relaxed);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(|error| set_code(error, DOCUMENT_INVALID))?;
        if let Ok(mut positions) = self.variable_arguments.lock() {
            *positions = arguments_taking_variables(&document);
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let errors = match next.run(ctx).await {
            Ok(result) => return Ok(result),
            Err(errors) => errors,
        };
        let at_variables = self.variable_arguments.lock().map(|p| p.clone()).unwrap_or_default();
        Err(errors
            .into_iter()
            .map(|error| {
                // A value rule that fails at an argument fed by a variable
                // failed on the value the client sent: async-graphql checks
                // variable values during validation.
                let about_variables =
                    !error.locations.is_empty() && error.locations.iter().all(|pos| at_variables.contains(pos));
                set_code(error, if about_variables { "BAD_USER_INPUT" } else { DOCUMENT_INVALID })
            })
            .collect())
    }
}

/// Where the document's field and directive arguments whose value uses a
/// variable are named: the positions async-graphql's value rule reports.
fn arguments_taking_variables(document: &ExecutableDocument) -> Vec<Pos> {
    fn uses_variable(value: &Value) -> bool {
        match value {
            Value::Variable(_) => true,
            Value::List(items) => items.iter().any(uses_variable),
            Value::Object(fields) => fields.values().any(uses_variable),
            _ => false,
        }
    }
    fn visit_arguments(arguments: &[(Positioned<Name>, Positioned<Value>)], found: &mut Vec<Pos>) {
        found.extend(arguments.iter().filter(|(_, value)| uses_variable(&value.node)).map(|(name, _)| name.pos));
    }
    fn visit_directives(directives: &[Positioned<Directive>], found: &mut Vec<Pos>) {
        for directive in directives {
            visit_arguments(&directive.node.arguments, found);
        }
    }
    fn visit(set: &SelectionSet, found: &mut Vec<Pos>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    visit_arguments(&field.node.arguments, found);
                    visit_directives(&field.node.directives, found);
                    visit(&field.node.selection_set.node, found);
                }
                Selection::FragmentSpread(spread) => visit_directives(&spread.node.directives, found),
                Selection::InlineFragment(inline) => {
                    visit_directives(&inline.node.directives, found);
                    visit(&inline.node.selection_set.node, found);
                }
            }
        }
    }
    let mut found = Vec::new();
    for (_, operation) in document.operations.iter() {
        visit_directives(&operation.node.directives, &mut found);
        visit(&operation.node.selection_set.node, &mut found);
    }
    for fragment in document.fragments.values() {
        visit_directives(&fragment.node.directives, &mut found);
        visit(&fragment.node.selection_set.node, &mut found);
    }
    found
}

/// The codes of errors the parse and validation stages did not raise.
/// [`ErrorKinds`] runs it for the schema with the guard; `AppSchema` runs
/// it itself for the one without (`crate::graphql::AppSchema`).
pub(crate) fn classify_after_validation(response: &mut Response, named_operation: bool) {
    for error in response.errors.iter_mut().filter(|error| !has_code(error)) {
        let code = if error.path.is_empty() {
            // async-graphql quotes the client's operationName, which may be
            // as long as the body: say what is wrong without echoing it.
            if named_operation {
                error.message = "operationName names no operation of the document".into();
            }
            "OPERATION_RESOLUTION_FAILURE"
        } else if error.source.is_none() {
            "BAD_USER_INPUT"
        } else {
            continue;
        };
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
    /// fails before any resolver needs a database). Sent twice, and the
    /// same answer both times: a document that passed validation the first
    /// time runs on the schema without the guard the second time, and its
    /// errors must be coded alike.
    async fn code_of(query: &str, operation: Option<&str>, variables: serde_json::Value) -> String {
        let request = || {
            let request =
                async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables.clone()));
            match operation {
                Some(name) => request.operation_name(name),
                None => request,
            }
        };
        let schema = build_schema(Limits::default());
        let mut response = schema.execute(request()).await;
        ensure_codes(&mut response);
        let mut again = schema.execute(request()).await;
        ensure_codes(&mut again);
        assert_eq!(
            serde_json::to_value(&again).ok(),
            serde_json::to_value(&response).ok(),
            "{query} answered alike the second time"
        );
        let error = response.errors.first().unwrap_or_else(|| panic!("no error for {query}"));
        let code = error.extensions.as_ref().and_then(|ext| ext.get("code")).cloned();
        match code {
            Some(async_graphql::Value::String(code)) => code,
            other => panic!("no code for {query}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_document_that_does_not_parse_is_a_validation_failure() {
        assert_eq!(code_of("{ places {", None, json!({})).await, "GRAPHQL_VALIDATION_FAILED");
    }

    #[tokio::test]
    async fn a_document_breaking_a_rule_is_a_validation_failure_even_with_a_wrong_literal() {
        assert_eq!(code_of("{ noSuchField }", None, json!({})).await, "GRAPHQL_VALIDATION_FAILED");
        // A literal of the wrong type is in the document, not a value sent
        // beside it: the spec's "values of correct type" rule.
        let literal = "{ places(first: \"ten\") { totalCount } }";
        assert_eq!(code_of(literal, None, json!({})).await, "GRAPHQL_VALIDATION_FAILED");
    }

    #[tokio::test]
    async fn a_variable_of_the_wrong_type_is_bad_user_input() {
        let query = "query($f: Int) { places(first: $f) { totalCount } }";
        assert_eq!(code_of(query, None, json!({ "f": "ten" })).await, "BAD_USER_INPUT");
        let nested = "mutation($i: CreatePostInput!) { createPost(input: $i) { post { id } } }";
        assert_eq!(code_of(nested, None, json!({ "i": { "title": ["not", "text"] } })).await, "BAD_USER_INPUT");
        let inside = "query($c: String) { places(first: 1, category: $c) @include(if: $c) { totalCount } }";
        assert_eq!(code_of(inside, None, json!({ "c": "cafe" })).await, "BAD_USER_INPUT");
    }

    #[tokio::test]
    async fn a_request_naming_no_runnable_operation_is_an_operation_resolution_failure() {
        let cases: [(&str, Option<&str>); 3] = [
            ("query A { changeCursor }", Some("B")),
            ("{ changeCursor }", Some("B")),
            ("query A { changeCursor } query B { changeCursor }", None),
        ];
        for (query, operation) in cases {
            assert_eq!(code_of(query, operation, json!({})).await, "OPERATION_RESOLUTION_FAILURE", "{query}");
        }
    }

    #[test]
    fn an_uncoded_execution_error_is_bad_input_without_a_source_and_internal_with_one() {
        let at_field = |error: async_graphql::Error| {
            let mut error = error.into_server_error(async_graphql::Pos::default());
            error.path = vec![async_graphql::PathSegment::Field("places".into())];
            error
        };
        let coercion = at_field(async_graphql::Error::new("Failed to parse \"Int\""));
        let leaked = at_field(async_graphql::Error::from(std::io::Error::other("connection refused at 10.0.0.1")));
        let mut response = Response::from_errors(vec![coercion, leaked]);
        classify_after_validation(&mut response, false);
        ensure_codes(&mut response);
        let codes: Vec<_> =
            response.errors.iter().map(|e| e.extensions.as_ref().and_then(|x| x.get("code")).cloned()).collect();
        assert_eq!(codes[0], Some(async_graphql::Value::from("BAD_USER_INPUT")));
        assert_eq!(codes[1], Some(async_graphql::Value::from("INTERNAL_SERVER_ERROR")));
        assert!(!response.errors[1].message.contains("10.0.0.1"), "a Rust error's text never reaches the client");
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

//! Every error a client can see, and its `extensions.code`, is decided here.
//!
//! Resolvers return [`ApiError`]; database errors are classified by SQLSTATE
//! and by the *name* of the violated constraint, so a duplicate review becomes
//! a CONFLICT on `placeId` without any resolver parsing SQL text. Anything not
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
            | Self::CursorExpired(m)
            | Self::CursorInvalid(m) => m.clone(),
            Self::BadUserInput { message, .. } | Self::Conflict { message, .. } => message.clone(),
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
            Self::Internal => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput { field, message: message.into() }
    }

    pub fn conflict(field: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { field: Some(field), message: message.into() }
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
    if matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
        tracing::error!(error = %err, "database unreachable");
        return ApiError::Unavailable("the database is unavailable; retry shortly".into());
    }
    let Some((sqlstate, constraint)) = database_error(err) else {
        return ApiError::internal(err);
    };
    if let Some(known) = constraint.as_deref().and_then(named_constraint) {
        return known;
    }
    match sqlstate.as_str() {
        // unique_violation
        "23505" => ApiError::Conflict { field: None, message: "already exists".into() },
        // foreign_key_violation: the referenced row is gone or was never visible
        "23503" => ApiError::NotFound("a referenced row was not found".into()),
        // check_violation, not_null_violation, string too long, invalid text
        "23514" | "23502" | "22001" | "22P02" => ApiError::bad_input("input", "invalid input"),
        // insufficient_privilege, including "new row violates row-level security policy"
        "42501" => ApiError::Forbidden("not allowed for your role".into()),
        // serialization_failure, deadlock_detected
        "40001" | "40P01" => ApiError::Conflict { field: None, message: "concurrent update; retry the request".into() },
        // query_canceled (statement_timeout), admin_shutdown, cannot_connect_now
        "57014" | "57P01" | "57P03" => {
            tracing::warn!(error = %err, "database cancelled the statement");
            ApiError::Unavailable("the database is busy; retry shortly".into())
        }
        _ => ApiError::internal(err),
    }
}

/// Constraints named in the migrations that have a precise client meaning.
fn named_constraint(name: &str) -> Option<ApiError> {
    Some(match name {
        "users_email_key" => ApiError::conflict("email", "this email is already registered"),
        "users_username_key" => ApiError::conflict("username", "this username is taken"),
        "users_email_check" => ApiError::bad_input("email", "email is not a valid address"),
        "users_username_check" => {
            ApiError::bad_input("username", "username must be 3 to 50 letters, digits, '.', '_' or '-'")
        }
        "place_pkey" => ApiError::conflict("id", "a place with this id already exists"),
        "place_name_check" => ApiError::bad_input("name", "name must not be empty"),
        "place_lat_check" => ApiError::bad_input("lat", "lat must be between -90 and 90"),
        "place_lng_check" => ApiError::bad_input("lng", "lng must be between -180 and 180"),
        "place_rating_check" => ApiError::bad_input("rating", "rating must be between 0 and 5"),
        "review_user_id_place_id_key" => ApiError::conflict("placeId", "you have already reviewed this place"),
        "review_place_id_fkey" => ApiError::not_found("place"),
        "review_rating_check" | "preference_rating_check" => {
            ApiError::bad_input("rating", "rating must be between 0 and 5")
        }
        "review_comment_check" => ApiError::bad_input("comment", "comment is too long"),
        "preference_category_check" => ApiError::bad_input("category", "category must not be empty"),
        "routine_name_check" => ApiError::bad_input("name", "name must not be empty"),
        "routine_steps_check" => ApiError::bad_input("steps", "steps must be a JSON array"),
        "routine_tokens_per_run_check" => ApiError::bad_input("tokensPerRun", "tokensPerRun must be 0 or more"),
        "routine_run_tokens_earned_check" => ApiError::bad_input("tokensEarned", "tokensEarned must be 0 or more"),
        "routine_run_end_after_start" => ApiError::bad_input("endTime", "endTime must not be before the run's start"),
        "routine_run_routine_id_fkey" => ApiError::not_found("routine"),
        "airdrop_project_name_check" => ApiError::bad_input("name", "name must not be empty"),
        "airdrop_project_dates_check" => ApiError::bad_input("endDate", "endDate must not be before startDate"),
        "airdrop_project_allocation_check" => {
            ApiError::bad_input("totalTokenAllocation", "totalTokenAllocation must be 0 or more")
        }
        "user_airdrop_participation_tokens_check" => ApiError::bad_input("tokens", "tokens must be 0 or more"),
        "user_airdrop_participation_user_project_key" => {
            ApiError::conflict("projectId", "you already take part in this project")
        }
        "user_airdrop_participation_project_id_fkey" => ApiError::not_found("airdrop project"),
        "airdrop_allocation_exceeded" => {
            ApiError::conflict("tokens", "the project does not have that many tokens left")
        }
        "post_title_check" => ApiError::bad_input("title", "title must not be empty"),
        "post_body_check" => ApiError::bad_input("body", "body is too long"),
        "comment_body_check" => ApiError::bad_input("body", "body must have 1 to 10000 characters"),
        "comment_post_id_fkey" => ApiError::not_found("post"),
        _ => return None,
    })
}

/// Gives every error of a response a code, so clients can always branch on
/// `extensions.code`. Errors raised by our resolvers already carry one; the
/// rest come from async-graphql itself: syntax and validation errors (no
/// path), argument coercion errors, and the depth and complexity limits.
pub fn ensure_codes(response: &mut Response) {
    for error in &mut response.errors {
        if error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some()) {
            continue;
        }
        let code = uncoded_error_code(error);
        if code == "INTERNAL_SERVER_ERROR" {
            tracing::error!(message = %error.message, "uncoded resolver error");
            error.message = "internal server error".into();
        }
        error.extensions.get_or_insert_with(Default::default).set("code", code);
    }
}

fn uncoded_error_code(error: &ServerError) -> &'static str {
    let message = error.message.as_str();
    if message.contains("nested too deep") || message.contains("too complex") {
        "QUERY_TOO_COMPLEX"
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

//! Queries on `sessions` and `refresh_tokens` (migration 000016), and the
//! account changes that end sessions. Neither table is readable by a request
//! role: everything goes through SECURITY DEFINER functions, those that act
//! on an account by id as `app_signin` (like sign-in, see
//! [`super::store`]), those that act on the viewer's own sessions as the
//! viewer.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::store::one_as_signin;
use crate::auth::Viewer;
use crate::db::{Access, Pool, begin_request_as};
use crate::error::{ApiError, ApiResult};

/// Seconds as the functions' integer argument (the setting is range checked
/// far below i32::MAX).
fn seconds(ttl: std::time::Duration) -> i32 {
    i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX)
}

/// Starts a session for `user_id` with the refresh token hashed as
/// `token_hash`; returns the session id (the access token's `sid`).
pub async fn start(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    user_id: Uuid,
    token_hash: Vec<u8>,
    ttl: std::time::Duration,
) -> ApiResult<Uuid> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT auth_session_start($1, $2, $3) AS id",
        [user_id.into(), token_hash.into(), seconds(ttl).into()],
    );
    let row = one_as_signin(db, viewer, statement).await?;
    row.ok_or_else(|| ApiError::internal("auth_session_start returned no row"))?.try_get("", "id").map_err(Into::into)
}

/// What presenting a refresh token found.
pub enum Refreshed {
    /// Rotated: the session goes on, for this account as it is now.
    Rotated { session: Uuid, user: entity::users::Model },
    /// Already rotated before: whoever holds it, the family must end.
    Reused { session: Uuid },
    /// The session outlived SESSION_TTL_SECONDS without a refresh.
    Expired,
    /// Never issued, or its session has ended.
    Unknown,
}

/// Exchanges the refresh token hashed as `token_hash` for the one hashed as
/// `next_hash` (see `auth_session_refresh`).
pub async fn refresh(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    token_hash: Vec<u8>,
    next_hash: Vec<u8>,
    ttl: std::time::Duration,
) -> ApiResult<Refreshed> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT outcome, session_id, id, email, username, full_name, role, is_active, created_at, last_login
         FROM auth_session_refresh($1, $2, $3)",
        [token_hash.into(), next_hash.into(), seconds(ttl).into()],
    );
    let Some(row) = one_as_signin(db, viewer, statement).await? else { return Ok(Refreshed::Unknown) };
    let outcome: String = row.try_get("", "outcome")?;
    let session: Uuid = row.try_get("", "session_id")?;
    Ok(match outcome.as_str() {
        "reused" => Refreshed::Reused { session },
        "expired" => Refreshed::Expired,
        _ => Refreshed::Rotated { session, user: entity::users::Model::from_query_result(&row, "")? },
    })
}

/// Ends `session` in a transaction of its own, committed whatever the
/// request does: a reused refresh token is answered with an error, which
/// rolls the request back, yet the family must stay revoked. It takes a
/// second pooled connection while the request holds its own. A request
/// has one `refreshSession` at most (`ONE_PER_DOCUMENT`), so the request
/// holds no lock on the session; the lock timeout bounds the wait should
/// another request be rotating the same family right now, and a revoke
/// that fails is logged as an error (the reuse went unanswered).
pub async fn revoke_now(pool: &Pool, session: Uuid) -> ApiResult<()> {
    let result = revoke_in_own_transaction(pool, session).await;
    if let Err(err) = &result {
        tracing::error!(%session, error = %err.message(), "a reused refresh token's session could not be revoked");
    }
    result
}

async fn revoke_in_own_transaction(pool: &Pool, session: Uuid) -> ApiResult<()> {
    let (tx, viewer) = begin_request_as(pool, Viewer::Anonymous, Access::ReadWrite).await?;
    pool.execute_unprepared(&tx, "SET LOCAL lock_timeout = '2s'").await?;
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, "SELECT auth_session_revoke($1)", [session.into()]);
    one_as_signin(&tx, &viewer, statement).await?;
    pool.commit(tx).await?;
    Ok(())
}

/// Ends the viewer's session `session`, or every session of theirs (`None`).
/// Returns how many ended. Runs as the viewer: the function only ever
/// touches `app.user_id`'s sessions.
pub async fn sign_out(db: &impl ConnectionTrait, session: Option<Uuid>) -> ApiResult<i32> {
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, "SELECT auth_sign_out($1) AS ended", [session.into()]);
    let row = db.query_one_raw(statement).await?;
    Ok(row.map(|row| row.try_get("", "ended")).transpose()?.unwrap_or(0))
}

/// The account's password hash, to check a password against.
pub async fn password_of(db: &impl ConnectionTrait, viewer: &Viewer, user_id: Uuid) -> ApiResult<Option<String>> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT password_hash FROM auth_password_of($1)",
        [user_id.into()],
    );
    let row = one_as_signin(db, viewer, statement).await?;
    Ok(row.map(|row| row.try_get("", "password_hash")).transpose()?)
}

/// Sets a new password hash and ends every session of the account but `keep`.
pub async fn set_password(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    user_id: Uuid,
    password_hash: &str,
    keep: Option<Uuid>,
) -> ApiResult<()> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT auth_set_password($1, $2, $3)",
        [user_id.into(), password_hash.into(), keep.into()],
    );
    one_as_signin(db, viewer, statement).await?;
    Ok(())
}

/// Deletes the account and, by the foreign keys' ON DELETE CASCADE, its
/// rows in every domain and its sessions. Whether there was one.
pub async fn delete_account(db: &impl ConnectionTrait, viewer: &Viewer, user_id: Uuid) -> ApiResult<bool> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT auth_delete_account($1) AS deleted",
        [user_id.into()],
    );
    let row = one_as_signin(db, viewer, statement).await?;
    Ok(row.map(|row| row.try_get("", "deleted")).transpose()?.unwrap_or(false))
}

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

/// The signed-in account's password hash (the request's `app.user_id`,
/// migration 000017), to check a password against.
pub async fn password_of(db: &impl ConnectionTrait, viewer: &Viewer) -> ApiResult<Option<String>> {
    let statement = Statement::from_string(DbBackend::Postgres, "SELECT password_hash FROM auth_password_of()");
    let row = one_as_signin(db, viewer, statement).await?;
    Ok(row.map(|row| row.try_get("", "password_hash")).transpose()?)
}

/// Sets a new password hash for the signed-in account and ends every
/// session of it but `keep`.
pub async fn set_password(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    password_hash: &str,
    keep: Option<Uuid>,
) -> ApiResult<()> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT auth_set_password($1, $2)",
        [password_hash.into(), keep.into()],
    );
    one_as_signin(db, viewer, statement).await?;
    Ok(())
}

/// Deletes the signed-in account and, by the foreign keys' ON DELETE
/// CASCADE, its rows in every domain and its sessions. Whether there was one.
pub async fn delete_account(db: &impl ConnectionTrait, viewer: &Viewer) -> ApiResult<bool> {
    let statement = Statement::from_string(DbBackend::Postgres, "SELECT auth_delete_account() AS deleted");
    let row = one_as_signin(db, viewer, statement).await?;
    Ok(row.map(|row| row.try_get("", "deleted")).transpose()?.unwrap_or(false))
}

/// Rows one pruning step deletes at most, per table: a short transaction
/// with few row locks, however much has piled up.
const PRUNE_BATCH: i32 = 1000;
/// Steps one pass takes at most; what is left waits for the next pass.
const PRUNE_STEPS: usize = 100;

/// What a pruning pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub tokens: u64,
}

/// Deletes expired sessions and their refresh tokens (`auth_prune_sessions`,
/// migration 000017), in bounded steps of their own transactions, as the
/// realtime role (the listener's, which prunes the change log on the same
/// timer). Rotated tokens of live sessions stay: they detect reuse (see the
/// migration for the trade-off).
pub async fn prune(pool: &Pool) -> ApiResult<Pruned> {
    let mut pruned = Pruned::default();
    for _ in 0..PRUNE_STEPS {
        let tx = pool.begin_with(&format!("SET LOCAL ROLE {}", migration::REALTIME_ROLE)).await?;
        let row = tx
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pruned_sessions, pruned_tokens FROM auth_prune_sessions($1)",
                [PRUNE_BATCH.into()],
            ))
            .await?;
        pool.commit(tx).await?;
        let (sessions, tokens) = match row {
            Some(row) => (row.try_get::<i32>("", "pruned_sessions")?, row.try_get::<i32>("", "pruned_tokens")?),
            None => (0, 0),
        };
        pruned.sessions += u64::try_from(sessions).unwrap_or(0);
        pruned.tokens += u64::try_from(tokens).unwrap_or(0);
        if sessions < PRUNE_BATCH && tokens < PRUNE_BATCH {
            break;
        }
    }
    Ok(pruned)
}

//! One transaction per GraphQL request, carrying the viewer into PostgreSQL.
//!
//! The transaction starts by switching to the viewer's database role and
//! setting `app.user_id`, both transaction-local (`set_config(.., true)`), so
//! nothing leaks to the next user of a pooled connection and it works behind
//! PgBouncer in transaction mode. Row-level security then filters every
//! statement of the request, whatever the resolvers do.
//!
//! The request commits only if its response has no errors. For clients this
//! means a request is all or nothing: if any field fails (say the second of
//! two mutations in one document), the writes of every other field are rolled
//! back too, even though they ran. Their results are not shown: the
//! mutation's `data` is null and each field whose writes were undone gets a
//! `ROLLED_BACK` error at its path (`http::rolled_back`). Send independent
//! writes as separate requests when partial success is what you want.

use std::ops::Deref;
use std::sync::Arc;

use sea_orm::{DbErr, RuntimeErr};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{Pool, Tx};
use crate::auth::{AccessSession, Role, Viewer};
use crate::error::{ApiError, ApiResult};

/// Whether a request may write: a GraphQL query runs READ ONLY, so no
/// resolver (or function it calls) can change data by mistake, and
/// PostgreSQL knows the transaction takes no row locks or XIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Starts a read-write request transaction for `viewer`; see
/// [`begin_request_as`].
pub async fn begin_request(pool: &Pool, viewer: Viewer) -> ApiResult<(Tx, Viewer)> {
    begin_request_as(pool, viewer, Access::ReadWrite).await
}

/// Starts the request transaction for `viewer`, re-reading the account so a
/// deactivated user's tokens stop working and a role change applies at once.
/// Returns the viewer as the database knows it.
///
/// One round trip: BEGIN and `app_start_request` (migration 000013) as one
/// simple query (see [`Tx`]); the function sets the role, `app.user_id`,
/// the statement timeout and the access mode and checks the account. The check answers only when it fails, as an
/// error; a changed role (rare) costs a second start as the new role.
pub async fn begin_request_as(pool: &Pool, viewer: Viewer, access: Access) -> ApiResult<(Tx, Viewer)> {
    begin_session_request(pool, viewer, None, access).await
}

/// [`begin_request_as`] for an access token of session `session` (its
/// `sid` claim): the same statement also checks that the session has not
/// ended (signed out, its refresh token reused, the password changed), so
/// an ended session's tokens stop working at their next request, at no
/// extra round trip.
pub async fn begin_session_request(
    pool: &Pool,
    viewer: Viewer,
    session: Option<uuid::Uuid>,
    access: Access,
) -> ApiResult<(Tx, Viewer)> {
    let start = start_sql(&viewer, session, access, pool.statement_timeout_ms());
    let err = match pool.begin_as(&start, access, Some(viewer.db_role())).await {
        Ok(tx) => return Ok((tx, viewer)),
        Err(err) => err,
    };
    let Viewer::User { id, .. } = viewer else {
        return Err(err.into());
    };
    match account_check(&err) {
        Some(AccountCheck::Gone) => Err(ApiError::Unauthenticated("this account no longer exists".into())),
        Some(AccountCheck::Deactivated) => Err(ApiError::Unauthenticated("this account is deactivated".into())),
        Some(AccountCheck::SessionEnded) => {
            Err(ApiError::Unauthenticated("this session has ended (signed out); sign in again".into()))
        }
        Some(AccountCheck::RoleIs(role)) => {
            // The failed start was rolled back by `Tx::begin`. Should the
            // role change again in between, this start fails as an
            // internal error rather than looping.
            let viewer = Viewer::User { id, role };
            let start = start_sql(&viewer, session, access, pool.statement_timeout_ms());
            let tx = pool.begin_as(&start, access, Some(viewer.db_role())).await?;
            Ok((tx, viewer))
        }
        None => Err(err.into()),
    }
}

/// What `app_start_request` said about the account, when it refused it.
enum AccountCheck {
    Gone,
    Deactivated,
    SessionEnded,
    RoleIs(Role),
}

/// Reads the account check's answer out of a failed start; `None` for any
/// other error (the database is down, the timeout hit, ...).
fn account_check(err: &DbErr) -> Option<AccountCheck> {
    let (DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e))) = err else {
        return None;
    };
    let db = e.as_database_error()?;
    match db.code()?.as_ref() {
        "AS001" => Some(AccountCheck::Gone),
        "AS002" => Some(AccountCheck::Deactivated),
        "AS003" => Role::parse(db.message()).map(AccountCheck::RoleIs),
        "AS004" => Some(AccountCheck::SessionEnded),
        _ => None,
    }
}

/// The request's start: one call of `app_start_request` (migration 000013,
/// with the session check of 000016, made cheaper by 000018 and 000019).
/// Inlined rather than bound so it is one simple-protocol round trip with no
/// statement to prepare (and nothing cached behind a transaction pooler):
/// the role is one of our fixed role names, the ids formatted UUIDs, the
/// claimed role a fixed name and the timeout a number, never user text.
/// `statement_timeout_ms` bounds each statement of the request (0: the
/// server's own setting), so one runaway query cannot hold a pooled
/// connection for long.
fn start_sql(viewer: &Viewer, session: Option<uuid::Uuid>, access: Access, statement_timeout_ms: u64) -> String {
    // Written piece by piece: `format!` of the UUIDs was 1 % of a page's
    // instructions (issue 11).
    fn quoted(sql: &mut String, id: uuid::Uuid) {
        sql.push('\'');
        sql.push_str(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
        sql.push('\'');
    }
    // Larger values would not fit the function's integer; PostgreSQL caps
    // statement_timeout at i32::MAX ms anyway.
    let timeout = i32::try_from(statement_timeout_ms).unwrap_or(i32::MAX);
    let mut sql = String::with_capacity(160);
    sql.push_str("SELECT app_start_request('");
    sql.push_str(viewer.db_role());
    sql.push_str("', ");
    match viewer {
        Viewer::Anonymous => sql.push_str("NULL, NULL"),
        Viewer::User { id, role } => {
            quoted(&mut sql, *id);
            sql.push_str(", '");
            sql.push_str(role.as_str());
            sql.push('\'');
        }
    }
    sql.push_str(", ");
    sql.push_str(itoa::Buffer::new().format(timeout));
    sql.push_str(if access == Access::ReadOnly { ", true, " } else { ", false, " });
    // Only a signed-in viewer has a session to check.
    match (viewer, session) {
        (Viewer::User { .. }, Some(id)) => quoted(&mut sql, id),
        _ => sql.push_str("NULL"),
    }
    sql.push(')');
    sql
}

/// The request transaction, shared by the resolvers and the DataLoaders of
/// one request. Fields resolve concurrently, so access is serialised by a
/// mutex; the `Option` lets the request handler take the transaction back to
/// commit or roll it back however many clones are still alive.
#[derive(Clone)]
pub struct RequestDb {
    tx: Arc<Mutex<Option<Tx>>>,
    /// Where the transaction came from: it commits through the pool.
    pool: Pool,
}

/// Exclusive use of the request transaction. Drop it before awaiting a
/// DataLoader, which needs the transaction too.
pub struct TxGuard(OwnedMutexGuard<Option<Tx>>);

impl Deref for TxGuard {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        // `lock` only hands out a guard while the transaction is present.
        self.0.as_ref().unwrap_or_else(|| unreachable!("transaction taken while locked"))
    }
}

impl RequestDb {
    pub fn new(tx: Tx, pool: Pool) -> Self {
        Self { tx: Arc::new(Mutex::new(Some(tx))), pool }
    }

    pub async fn lock(&self) -> ApiResult<TxGuard> {
        let guard = self.tx.clone().lock_owned().await;
        if guard.is_none() {
            return Err(ApiError::internal("request transaction used after it ended"));
        }
        Ok(TxGuard(guard))
    }

    /// Commits when `commit` is true, otherwise rolls back.
    pub async fn finish(&self, commit: bool) -> ApiResult<()> {
        let Some(tx) = self.tx.lock().await.take() else {
            return Ok(());
        };
        if commit {
            self.pool.commit(tx).await?;
        } else {
            tx.rollback().await?;
        }
        Ok(())
    }
}

/// Where a DataLoader reads: the request transaction of an HTTP request, or,
/// for subscription events (which have no request transaction), a short
/// transaction of its own per batch, as the same viewer and session: its
/// start checks the session as a request's does, so a subscription of a
/// session that has ended reads nothing more, even before its socket closes.
pub enum LoaderDb {
    Request(RequestDb),
    Pool(Pool, AccessSession),
}

impl LoaderDb {
    /// Runs `query` in the request transaction, or in one of its own.
    pub async fn run<T>(&self, viewer: Viewer, query: impl AsyncFnOnce(&Tx) -> ApiResult<T>) -> ApiResult<T> {
        match self {
            Self::Request(db) => query(&*db.lock().await?).await,
            Self::Pool(pool, session) => {
                let (tx, _) = begin_session_request(pool, viewer, session.0, Access::ReadOnly).await?;
                let result = query(&tx).await?;
                pool.commit(tx).await?;
                Ok(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn the_start_names_the_role_ids_timeout_and_access_and_quotes_only_the_ids_and_role() {
        let id = uuid::Uuid::parse_str("0b5e6a4c-1f2d-4e3a-9c8b-7a6f5e4d3c2b").expect("a uuid");
        let session = uuid::Uuid::parse_str("ffffffff-0000-4000-8000-00000000000a").expect("a uuid");
        let user = Viewer::User { id, role: Role::User };
        assert_eq!(
            start_sql(&user, Some(session), Access::ReadOnly, 5000),
            "SELECT app_start_request('app_user', '0b5e6a4c-1f2d-4e3a-9c8b-7a6f5e4d3c2b', 'user', 5000, true, \
             'ffffffff-0000-4000-8000-00000000000a')"
        );
        assert_eq!(
            start_sql(&user, None, Access::ReadWrite, u64::MAX),
            "SELECT app_start_request('app_user', '0b5e6a4c-1f2d-4e3a-9c8b-7a6f5e4d3c2b', 'user', 2147483647, false, NULL)"
        );
        assert_eq!(
            start_sql(&Viewer::Anonymous, Some(session), Access::ReadOnly, 0),
            "SELECT app_start_request('app_anon', NULL, NULL, 0, true, NULL)"
        );
    }
}

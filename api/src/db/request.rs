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
//! back too, even though they ran (and `data` may show their results, unless
//! the error nulled it). Send independent writes as separate requests when
//! partial success is what you want.

use std::ops::Deref;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::Pool;
use crate::auth::{Role, Viewer};
use crate::error::{ApiError, ApiResult};

/// Starts the request transaction for `viewer`, re-reading the account so a
/// deactivated user's tokens stop working and a role change applies at once.
/// Returns the viewer as the database knows it.
pub async fn begin_request(pool: &Pool, viewer: Viewer) -> ApiResult<(DatabaseTransaction, Viewer)> {
    let tx = pool.begin_with(&set_viewer_sql(&viewer, pool.statement_timeout_ms())).await?;
    let Viewer::User { id, role } = viewer else {
        return Ok((tx, viewer));
    };
    // Runs as the viewer: every role may read its own users row.
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT role, is_active FROM users WHERE id = $1",
            [id.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Err(ApiError::Unauthenticated("this account no longer exists".into()));
    };
    if !row.try_get::<bool>("", "is_active")? {
        return Err(ApiError::Unauthenticated("this account is deactivated".into()));
    }
    let current = row.try_get::<String>("", "role")?;
    let current = Role::parse(&current).ok_or_else(|| ApiError::internal(format!("unknown role {current}")))?;
    let viewer = Viewer::User { id, role: current };
    if current != role {
        pool.execute_unprepared(&tx, &set_viewer_sql(&viewer, pool.statement_timeout_ms())).await?;
    }
    Ok((tx, viewer))
}

/// Switches the transaction to the viewer's role and user id, and bounds
/// each of its statements by `statement_timeout_ms` (0: the server's own
/// setting), so one runaway query cannot hold a pooled connection for long.
/// Inlined rather than bound so it rides in the transaction's first round
/// trip: the role is one of our fixed role names, the id a formatted UUID
/// and the timeout a number, never user text.
fn set_viewer_sql(viewer: &Viewer, statement_timeout_ms: u64) -> String {
    let user_id = viewer.user_id().map(|id| id.to_string()).unwrap_or_default();
    let timeout = if statement_timeout_ms == 0 {
        String::new()
    } else {
        format!(", set_config('statement_timeout', '{statement_timeout_ms}', true)")
    };
    format!(
        "SELECT set_config('role', '{}', true), set_config('app.user_id', '{user_id}', true){timeout}",
        viewer.db_role()
    )
}

/// The request transaction, shared by the resolvers and the DataLoaders of
/// one request. Fields resolve concurrently, so access is serialised by a
/// mutex; the `Option` lets the request handler take the transaction back to
/// commit or roll it back however many clones are still alive.
#[derive(Clone)]
pub struct RequestDb {
    tx: Arc<Mutex<Option<DatabaseTransaction>>>,
    /// Where the transaction came from: it commits through the pool.
    pool: Pool,
}

/// Exclusive use of the request transaction. Drop it before awaiting a
/// DataLoader, which needs the transaction too.
pub struct TxGuard(OwnedMutexGuard<Option<DatabaseTransaction>>);

impl Deref for TxGuard {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        // `lock` only hands out a guard while the transaction is present.
        self.0.as_ref().unwrap_or_else(|| unreachable!("transaction taken while locked"))
    }
}

impl RequestDb {
    pub fn new(tx: DatabaseTransaction, pool: Pool) -> Self {
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
/// transaction of its own per batch, as the same viewer.
pub enum LoaderDb {
    Request(RequestDb),
    Pool(Pool),
}

impl LoaderDb {
    /// Runs `query` in the request transaction, or in one of its own.
    pub async fn run<T>(
        &self,
        viewer: Viewer,
        query: impl AsyncFnOnce(&DatabaseTransaction) -> ApiResult<T>,
    ) -> ApiResult<T> {
        match self {
            Self::Request(db) => query(&*db.lock().await?).await,
            Self::Pool(pool) => {
                let (tx, _) = begin_request(pool, viewer).await?;
                let result = query(&tx).await?;
                pool.commit(tx).await?;
                Ok(result)
            }
        }
    }
}

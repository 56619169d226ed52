//! The pool's transaction: a pooled sqlx connection inside a transaction
//! that started with our own SQL in the same round trip as its BEGIN.
//!
//! sea-orm's `DatabaseTransaction` can only start with a plain `BEGIN`
//! awaited on its own (`PgTransactionManager::begin(conn, None)`), so every
//! request paid two round trips before its first query: BEGIN, then
//! `app_start_request` (issue 11). [`Tx`] sends `BEGIN; <prelude>` as one
//! simple query instead, and implements sea-orm's [`ConnectionTrait`], so
//! entities, query builders and every `&impl ConnectionTrait` store
//! function use it exactly as they used a `DatabaseTransaction`: the same
//! statements, prepared and cached by sqlx the same way.
//!
//! sqlx's connection knows this transaction (its depth), but nothing of
//! sqlx ends it when the request stops, so this type ends it itself: [`Tx::commit`], [`Tx::rollback`], and on drop (a
//! cancelled request) a ROLLBACK sent by a task of its own before the
//! connection goes back to the pool. A start whose prelude fails (an
//! account check refusing, a timeout) is rolled back before its error is
//! returned, so no connection returns to the pool inside an aborted
//! transaction.
//!
//! A transaction that ended cleanly leaves its connection in the pool's
//! [`Warm`] stash for the next one, rather than handing it back to sqlx
//! (which would ping it first); see [`super::warm`].
//!
//! A READ ONLY transaction's end is not waited for. It can have changed
//! nothing, so COMMIT and ROLLBACK are the same to it and nobody needs
//! their answer: its ROLLBACK is queued on the connection (sqlx's
//! `start_rollback`, which its next use of the connection sends first,
//! whoever uses it) and goes out with the next transaction's BEGIN in one
//! write, or, if the connection waits longer than [`super::warm::SETTLE`],
//! on its own. A read request thus costs two round trips, not three (each
//! is a write and a read on either side and a wake-up of each; the COMMIT
//! also had a task of its own). The price: for up to `SETTLE` after
//! a read, its connection is idle in a transaction that holds
//! `ACCESS SHARE` locks on the tables it read (a DDL statement on them
//! waits that long; rows, snapshots and vacuum are untouched: READ
//! COMMITTED holds no snapshot between statements). Behind a
//! transaction-mode pooler, whose server connection would stay pinned
//! meanwhile, the end is sent at once.
//!
//! So that sqlx's pool and `start_rollback` know the transaction, it is
//! begun and ended through sqlx's [`TransactionManager`] (its depth is 1
//! while it runs), never by a `COMMIT` of our own text.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::{Stream, TryStreamExt};
use sea_orm::sqlx::postgres::PgTransactionManager;
use sea_orm::sqlx::{self, Executor, PgPool, Postgres, SqlSafeStr};
use sea_orm::{ConnAcquireErr, ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use sqlx_core::transaction::TransactionManager;
use tokio::sync::Mutex;

use super::stats::PoolStats;
use super::warm::{Leased, Warm};

/// A transaction of the request pool (see the module doc). Statements are
/// serialised by a mutex, as sea-orm's transaction does: `&Tx` is shared.
pub struct Tx {
    /// `None` once committed or rolled back.
    conn: Mutex<Option<Leased>>,
    stats: Arc<PoolStats>,
    /// Where the connection goes when the transaction ends cleanly.
    warm: Arc<Warm>,
    /// Began READ ONLY, and its end is queued rather than waited for (see
    /// the module doc).
    end_later: bool,
    /// A statement failed, or was dropped before its answer came: the end
    /// is waited for after all, so that a connection that broke (the
    /// backend terminated, the socket reset) is found out and closed, and
    /// an abandoned statement's answer is read by this transaction, not
    /// the next one.
    failed: AtomicBool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

impl Tx {
    /// Gets a connection from `pool` and runs `begin` on it: SQL of our own
    /// (no user text) that starts with `BEGIN`, sent as one simple query
    /// (after the previous transaction's queued end, in the same write).
    /// If it fails, the connection is rolled back (or closed, if even that
    /// fails) before the error is returned. `end_later`: `begin` starts a
    /// READ ONLY transaction whose end need not be waited for.
    ///
    /// A connection that turns out lost at the start (its backend ended
    /// while it waited: a restart, a failover, an administrator, the
    /// server's idle_session_timeout, a pooler) is closed and the start
    /// tried again on another: nothing of the transaction can have
    /// committed, and the request should not fail for a connection nobody
    /// was using. Each try closes the connection it found lost, so a pool
    /// hands out at most as many dead ones as it holds; once sqlx has no
    /// idle connection left, one last try runs on a connection it opens,
    /// and if that one is lost too the error stands (the database or a
    /// pooler refuses: the health probe runs).
    /// A kept connection found lost also sends the other kept ones back to
    /// sqlx, which pings them (they most likely went the same way).
    pub(super) async fn begin(
        pool: &PgPool,
        warm: Arc<Warm>,
        begin: &str,
        role: Option<&'static str>,
        stats: Arc<PoolStats>,
        end_later: bool,
    ) -> Result<Self, DbErr> {
        let mut tries_left = pool.options().get_max_connections();
        let mut last_try_taken = false;
        loop {
            let mut conn = warm.acquire(pool, role).await.map_err(acquire_err)?;
            let started = Instant::now();
            let result =
                PgTransactionManager::begin(&mut **conn, Some(sqlx::AssertSqlSafe(begin).into_sql_str())).await;
            conn.settled();
            stats.observe(begin, started.elapsed(), result.is_err());
            let err = match result {
                Ok(()) => {
                    let failed = AtomicBool::new(false);
                    return Ok(Self { conn: Mutex::new(Some(conn)), stats, warm, end_later, failed });
                }
                Err(err) => exec_err(err),
            };
            // Once sqlx has no idle connection left to hand out, the next
            // try opens one: that is the last try (a connection lost as
            // soon as it is opened is a database or pooler refusing, not a
            // stale connection, and retrying would only open more).
            let stale_left = conn.was_kept() || pool.num_idle() > 0 || !last_try_taken;
            if tries_left > 0 && stale_left && super::is_connection_lost(&err) {
                tries_left -= 1;
                last_try_taken |= !conn.was_kept() && pool.num_idle() == 0;
                conn.close_on_drop();
                if conn.was_kept() {
                    warm.give_back_all();
                }
                continue;
            }
            // PostgreSQL stops a simple query at its first error; if BEGIN
            // had run, the transaction is now aborted.
            if Executor::execute(&mut **conn, "ROLLBACK").await.is_err() {
                conn.close_on_drop();
            }
            return Err(err);
        }
    }

    /// Commits. A failed COMMIT (a deferred trigger refusing) has ended the
    /// transaction; the connection is cleaned up as after any error. A READ
    /// ONLY transaction's end is queued instead (see the module doc).
    pub async fn commit(self) -> Result<(), DbErr> {
        if self.commit_waits() {
            return self.end(End::Commit).await;
        }
        self.queue_end()
    }

    /// Rolls back (queued for a READ ONLY transaction, as by `commit`).
    pub async fn rollback(self) -> Result<(), DbErr> {
        if self.commit_waits() {
            return self.end(End::Rollback).await;
        }
        self.queue_end()
    }

    /// Whether [`Tx::commit`] waits for the database: false for a READ ONLY
    /// transaction none of whose statements failed (its end is queued).
    pub fn commit_waits(&self) -> bool {
        !self.end_later || self.failed.load(Ordering::Relaxed)
    }

    /// Ends a READ ONLY transaction without waiting: its ROLLBACK goes out
    /// with the connection's next use (see the module doc).
    fn queue_end(mut self) -> Result<(), DbErr> {
        let Some(mut conn) = self.conn.get_mut().take() else {
            return Err(ended());
        };
        PgTransactionManager::start_rollback(&mut **conn);
        self.warm.release_owing(conn);
        Ok(())
    }

    async fn end(mut self, end: End) -> Result<(), DbErr> {
        // The connection stays in `self` while the statement runs: a caller
        // cancelled at this await drops `self`, and `Drop` rolls back before
        // the connection serves anyone else (a ROLLBACK after a COMMIT that
        // went through only warns).
        let Some(conn) = self.conn.get_mut().as_mut() else {
            return Err(ended());
        };
        let started = Instant::now();
        let result = match end {
            End::Commit => PgTransactionManager::commit(&mut ***conn).await,
            End::Rollback => PgTransactionManager::rollback(&mut ***conn).await,
        };
        self.stats.observe(end.sql(), started.elapsed(), result.is_err());
        let result = match result {
            Ok(_) => {
                if let Some(conn) = self.conn.get_mut().take() {
                    self.warm.release(conn);
                }
                Ok(())
            }
            Err(err) => {
                let err = exec_err(err);
                // Whatever state the connection is in, it must not serve the
                // next caller inside this transaction (still in `self`
                // meanwhile, for the same reason as above).
                let unusable =
                    super::is_connection_lost(&err) || PgTransactionManager::rollback(&mut ***conn).await.is_err();
                if unusable {
                    conn.close_on_drop();
                }
                Err(err)
            }
        };
        // Out of the transaction now: `Drop` has nothing left to roll back
        // (after an error, the connection goes back to sqlx, which checks it).
        self.conn.get_mut().take();
        result
    }

    /// Runs `statement` with the connection, timed like every statement.
    async fn run<T>(
        &self,
        sql: &str,
        statement: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error>,
        to_err: fn(sqlx::Error) -> DbErr,
    ) -> Result<T, DbErr> {
        let mut guard = self.conn.lock().await;
        let conn = guard.as_mut().ok_or_else(ended)?;
        let started = Instant::now();
        // Marked failed while it runs: a statement whose future is dropped
        // mid-flight (a sibling field failed, try_join_all dropped it) never
        // returns, and its answer is still owed. Its transaction's end must
        // then be waited for, not queued in front of the next one's BEGIN.
        let failed_before = self.failed.swap(true, Ordering::Relaxed);
        let result = statement(conn).await;
        self.failed.store(failed_before || result.is_err(), Ordering::Relaxed);
        self.stats.observe(sql, started.elapsed(), result.is_err());
        result.map_err(to_err)
    }
}

impl Drop for Tx {
    /// A transaction dropped unfinished (its request was cancelled, or an
    /// error returned early) is rolled back before its connection serves
    /// anyone else: sqlx's pool would only ping it.
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.get_mut().take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let warm = Arc::clone(&self.warm);
                runtime.spawn(async move {
                    match PgTransactionManager::rollback(&mut **conn).await {
                        Ok(()) => warm.release(conn),
                        Err(_) => conn.close_on_drop(),
                    }
                });
            }
            // No runtime left to send it with: close the connection.
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// How [`Tx::end`] ends a transaction.
#[derive(Clone, Copy)]
enum End {
    Commit,
    Rollback,
}

impl End {
    /// As [`PoolStats`] names the statement.
    fn sql(self) -> &'static str {
        match self {
            Self::Commit => "COMMIT",
            Self::Rollback => "ROLLBACK",
        }
    }
}

/// sea-orm's statement as sqlx's query, bound as sea-orm binds it.
fn query(sql: &str, values: Option<sea_orm::Values>) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(values.unwrap_or(sea_orm::Values(Vec::new()))))
}

#[async_trait::async_trait]
impl ConnectionTrait for Tx {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, mut stmt: Statement) -> Result<ExecResult, DbErr> {
        // The values move into the query; the SQL text is only borrowed.
        let query = query(&stmt.sql, stmt.values.take());
        self.run(
            &stmt.sql,
            async move |conn| Unspanned::new(|| conn.execute(query)).await.map(ExecResult::from),
            exec_err,
        )
        .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.run(
            sql,
            async move |conn| conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql))).await.map(ExecResult::from),
            exec_err,
        )
        .await
    }

    async fn query_one_raw(&self, mut stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        // The values move into the query; the SQL text is only borrowed.
        let query = query(&stmt.sql, stmt.values.take());
        self.run(
            &stmt.sql,
            async move |conn| Ok(Unspanned::new(|| conn.fetch_optional(query)).await?.map(QueryResult::from)),
            query_err,
        )
        .await
    }

    async fn query_all_raw(&self, mut stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let query = query(&stmt.sql, stmt.values.take());
        self.run(
            &stmt.sql,
            async move |conn| Unspanned::new(|| query.fetch(conn)).map_ok(QueryResult::from).try_collect().await,
            query_err,
        )
        .await
    }
}

/// A statement's future or row stream from sqlx, made and first polled
/// with no subscriber current.
///
/// sqlx's row streams enter the span that is current when they are made,
/// on every poll: the request's, which the request's own future has
/// entered already around every poll of this one (each entry ~300
/// instructions in the subscriber, one per row: 2 % of a request for 20
/// rows; issue 11). Made with none current, they enter none: the outer
/// stream as it is made here, sqlx's inner one (its `run`) as the outer is
/// first polled. That holds when `run` starts its stream without waiting:
/// a statement in the connection's cache, nothing owed on the connection.
/// When it waits first (a statement prepared for the first time, one
/// pushed out of a full cache, an abandoned statement's answer still to
/// read, every statement behind a transaction pooler, whose cache is off)
/// its stream is made on a later poll and enters the request's span as
/// before: slower, not wrong.
///
/// What the first poll's scope can lose: an event sqlx emits in it, which
/// with statement logging off (`sqlx_logging(false)`) is a NOTICE it
/// handles there (one raised before the first row, none of ours does, or
/// an abandoned statement's already buffered). Our own slow-statement log
/// ([`Tx::run`]) is outside the scope. While any thread is inside one,
/// every thread looks the subscriber up in a thread local rather than the
/// global; the instruction counts (4 connections) and timed runs (32) of
/// BENCHMARKS queries stage 20, on 2 workers, include that.
struct Unspanned<T> {
    inner: T,
    polled: bool,
}

impl<T: Unpin> Unspanned<T> {
    fn new(make: impl FnOnce() -> T) -> Self {
        Self { inner: tracing::dispatcher::with_default(&tracing::Dispatch::none(), make), polled: false }
    }

    fn poll_with<R>(&mut self, poll: impl FnOnce(&mut T) -> R) -> R {
        if std::mem::replace(&mut self.polled, true) {
            poll(&mut self.inner)
        } else {
            tracing::dispatcher::with_default(&tracing::Dispatch::none(), || poll(&mut self.inner))
        }
    }
}

impl<F: Future + Unpin> Future for Unspanned<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.poll_with(|inner| Pin::new(inner).poll(cx))
    }
}

impl<S: Stream + Unpin> Stream for Unspanned<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.poll_with(|inner| Pin::new(inner).poll_next(cx))
    }
}

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
}

fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

/// As sea-orm reports a failed acquire, so callers see the same errors.
fn acquire_err(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        err => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))),
    }
}

fn ended() -> DbErr {
    DbErr::Custom("the transaction has already ended".into())
}

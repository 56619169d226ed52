//! Connections: the request pool, the per-request transaction that carries
//! the viewer into PostgreSQL, migrations, and the embedded default database.

pub mod embedded;
mod health;
mod request;
pub mod stats;
mod tx;
mod warm;

pub use health::Health;
pub use request::{Access, LoaderDb, RequestDb, TxGuard, begin_request, begin_request_as, begin_session_request};
pub use tx::Tx;

use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use stats::PoolStats;

/// The request pool. Everything the server does with it happens inside a
/// transaction that starts with [`Pool::begin`], which is what lets it run
/// behind PgBouncer in transaction mode (DATABASE_TRANSACTION_POOLER):
///
/// - PgBouncer may hand each transaction a different server connection, so
///   no state may outlive one: the viewer is set with `set_config(.., true)`,
///   and nothing runs outside a transaction, where a statement's Parse and
///   its Bind (separate round trips in sqlx) could land on different servers.
/// - sqlx names its prepared statements `sqlx_s_<n>`, counting per client
///   connection, and keeps them in a per-connection cache. Behind the pooler
///   a cached statement may live on another server, and two clients' `n`
///   collide on one ("prepared statement sqlx_s_1 already exists"). So the
///   cache is off, and each transaction first drops whatever statements
///   earlier clients left on its server connection (`DEALLOCATE ALL`).
///   Statements are still prepared, but none is reused across transactions.
///
/// A request may be cancelled at any await point (its client hangs up, a
/// websocket operation is aborted). Every point but one is safe: dropping
/// a [`Tx`] sends a ROLLBACK before the connection serves anyone else. The
/// exception is BEGIN itself: a caller dropped while waiting for its
/// answer would return the connection to the pool inside a transaction
/// that the *next* request then committed or rolled back with its own
/// ("there is already a transaction in progress"). So BEGIN runs in a
/// task of its own that always finishes: if nobody waits for the
/// transaction any more, it is dropped there, and rolled back as usual.
#[derive(Clone)]
pub struct Pool {
    db: DatabaseConnection,
    transaction_pooler: bool,
    stats: Arc<PoolStats>,
    health: Health,
    /// `statement_timeout` of request transactions, in milliseconds.
    statement_timeout_ms: u64,
    /// Connections between two transactions, kept out of sqlx's pool so
    /// that it does not ping them each time (see [`warm`]).
    warm: Arc<warm::Warm>,
}

impl Pool {
    /// Starts a transaction that runs `prelude` (SQL of the caller's own, no
    /// user input) first thing, in the same round trip as BEGIN (see
    /// [`Tx`]); behind a transaction-mode pooler, the server connection's
    /// leftover prepared statements are cleared in that round trip too.
    /// The prelude may run more than once (on a connection found lost,
    /// then on another, `Tx::begin`), so it must only set transaction-local
    /// state.
    pub async fn begin_with(&self, prelude: &str) -> Result<Tx, DbErr> {
        self.begin_as(prelude, Access::ReadWrite, None).await
    }

    /// [`Pool::begin_with`], READ ONLY if `access` says so: such a
    /// transaction's end is not waited for (see [`Tx`]). `role`: the
    /// viewer role the prelude switches to, if any; a connection that last
    /// ran as it is preferred (see [`warm`]).
    pub async fn begin_as(&self, prelude: &str, access: Access, role: Option<&'static str>) -> Result<Tx, DbErr> {
        if self.health.is_down() {
            return Err(unreachable());
        }
        let read_only = access == Access::ReadOnly;
        let mut sql = String::with_capacity(prelude.len() + 40);
        sql.push_str(if read_only { "BEGIN READ ONLY" } else { "BEGIN" });
        if self.transaction_pooler {
            sql.push_str("; DEALLOCATE ALL");
        }
        if !prelude.is_empty() {
            sql.push_str("; ");
            sql.push_str(prelude);
        }
        // Behind a transaction-mode pooler an unsent end would keep the
        // server connection pinned to this one.
        let end_later = read_only && !self.transaction_pooler;
        self.stats.time_acquire(self.begin_detached(sql, role, end_later)).await
    }

    /// Gets a connection and starts the transaction (`begin`) in a task
    /// that cannot be cancelled halfway (see [`Pool`]). A wait longer than
    /// [`health::SUSPECT_AFTER`] has the database probed; if it turns out
    /// unreachable, the wait ends at once with SERVICE_UNAVAILABLE instead
    /// of after the pool timeout.
    ///
    /// The task was measured against a start in the request's own task
    /// (with a guard that rolls back a start dropped mid-flight): that saved
    /// ~2 % of the instructions per request but raised p99 at 32
    /// connections in nearly every round, by ~3 ms in the medians
    /// (BENCHMARKS, queries stage 15), so the task stays.
    async fn begin_detached(&self, begin: String, role: Option<&'static str>, end_later: bool) -> Result<Tx, DbErr> {
        let pool = self.db.get_postgres_connection_pool().clone();
        let (warm, stats) = (Arc::clone(&self.warm), Arc::clone(&self.stats));
        // In the request's span, so a slow start is logged with its request.
        let mut begin = tokio::spawn(tracing::Instrument::in_current_span(async move {
            Tx::begin(&pool, warm, &begin, role, stats, end_later).await
        }));
        let suspect = tokio::time::sleep(health::SUSPECT_AFTER);
        tokio::pin!(suspect);
        let mut suspected = false;
        loop {
            tokio::select! {
                joined = &mut begin => {
                    let tx = joined.map_err(|e| DbErr::Custom(format!("BEGIN task failed: {e}")))?;
                    match &tx {
                        Ok(_) => self.health.answered(),
                        Err(err) if is_connection_lost(err) => self.health.suspect(),
                        Err(_) => {}
                    }
                    return tx;
                }
                () = &mut suspect, if !suspected => {
                    suspected = true;
                    self.health.suspect();
                }
                () = self.health.went_down() => return Err(unreachable()),
            }
        }
    }

    /// How long one statement of a request may run, in milliseconds.
    pub fn statement_timeout_ms(&self) -> u64 {
        self.statement_timeout_ms
    }

    /// Reachability of the database, for `/readyz`.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Runs SQL of our own (several statements, no parameters) in `tx`.
    pub async fn execute_unprepared(&self, tx: &Tx, sql: &str) -> Result<(), DbErr> {
        tx.execute_unprepared(sql).await.map(|_| ())
    }

    /// Commits `tx`: deferred triggers run here (the change feed's commit
    /// stamp waits on a lock).
    ///
    /// Like BEGIN, COMMIT runs in a task of its own: once sent it decides
    /// the request's fate, so a caller dropped meanwhile must not roll back
    /// behind it (which would only earn a warning) or leave the
    /// connection's state to guesswork.
    pub async fn commit(&self, tx: Tx) -> Result<(), DbErr> {
        if !tx.commit_waits() {
            // READ ONLY: queued on the connection, nothing to wait for.
            return tx.commit().await;
        }
        // In the request's span, so a slow COMMIT is logged with its request.
        let commit = tokio::spawn(tracing::Instrument::in_current_span(tx.commit()));
        let result = commit.await.map_err(|e| DbErr::Custom(format!("COMMIT task failed: {e}")))?;
        if result.as_ref().is_err_and(is_connection_lost) {
            self.health.suspect();
        }
        result
    }

    /// Starts a transaction; see [`Pool::begin_with`].
    pub async fn begin(&self) -> Result<Tx, DbErr> {
        self.begin_with("").await
    }

    /// The underlying sea-orm pool, for its statistics and for closing it.
    /// Queries go through [`Pool::begin`].
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Waits, timeouts and slow statements, for /metrics; also times the
    /// statements sea-orm does not (see [`PoolStats::time`]).
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Open connections and how many of them wait for a transaction, for
    /// /metrics: sqlx's idle ones and those kept warm here.
    pub fn connections(&self) -> (u32, u32) {
        let sqlx = self.db.get_postgres_connection_pool();
        // sqlx's first: a connection moving from here to sqlx in between
        // is then missed for one reading rather than counted twice.
        let idle = u32::try_from(sqlx.num_idle()).unwrap_or(u32::MAX);
        let warm = u32::try_from(self.warm.len()).unwrap_or(u32::MAX);
        (sqlx.size(), idle.saturating_add(warm))
    }

    /// Closes the pool: sqlx waits for every connection to come back, so
    /// the warm ones go back first.
    pub async fn close(self) -> Result<(), DbErr> {
        self.warm.close();
        self.db.close().await
    }
}

/// A pooled connection idle at least this long is pinged before it is
/// handed out (PgBouncer's server_check_delay, 30 s by default).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Opens the request pool with the seed's pool settings. The URL stays a
/// secret up to here (it may hold a password); sqlx keeps it parsed.
pub async fn connect_pool(url: &SecretString, config: &Config) -> Result<Pool, DbErr> {
    let transaction_pooler = config.database_transaction_pooler;
    let mut options = ConnectOptions::new(url.expose_secret());
    options
        // sqlx has one pool size; the seed's size + overflow is its ceiling,
        // and the idle timeout closes what bursts opened.
        .max_connections(config.pool_max_connections())
        // DATABASE_POOL_SIZE connections are opened at start, in the
        // background, and kept (the idle timeout closes only the overflow):
        // a new connection costs a backend fork, a SCRAM exchange and the
        // backend's catalog caches, and a burst that finds the pool cold
        // would pay that for every connection at once (issue 11's stall).
        .min_connections(config.database_pool_size)
        .acquire_timeout(config.pool_timeout())
        .connect_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(config.database_idle_timeout))
        // sqlx pings a connection on every acquire by default: one more
        // round trip per request, and a wakeup of its backend. Only a
        // connection idle for a while is likely to have been dropped (by
        // the server, a pooler or a firewall), so only those are checked,
        // as PgBouncer's server_check_delay does. A hot connection that
        // died anyway is found out by its BEGIN, closed, and the start
        // tried on another (`Tx::begin`).
        //
        // sqlx also pings every connection on release (return_to_pool),
        // unconditionally; `Warm` keeps hot connections out of sqlx between
        // transactions, so only one unused for a second, one that has served
        // for a minute, one ended while a request waits for a connection, or
        // one whose transaction failed is given back and pinged. A cancelled
        // request's transaction is rolled back by `Tx`'s drop, in a task of
        // its own, before the connection serves anyone else.
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false)
        .set_application_name("api")
        .map_sqlx_postgres_opts(
            move |options| {
                if transaction_pooler { options.statement_cache_capacity(0) } else { options }
            },
        );
    let mut db = Database::connect(options).await?;
    let health = Health::new(db.get_postgres_connection_pool().connect_options().as_ref().clone());
    let stats = Arc::new(PoolStats::new(Duration::from_millis(config.database_slow_query_ms)));
    let observer = Arc::clone(&stats);
    // The pool's own transactions (db::Tx) time their statements
    // themselves; sea-orm times what runs on the pool outside them.
    db.set_metric_callback(move |info| observer.observe(&info.statement.sql, info.elapsed, info.failed));
    Ok(Pool {
        db,
        transaction_pooler,
        stats,
        health,
        statement_timeout_ms: config.database_statement_timeout_ms,
        warm: warm::Warm::new(),
    })
}

/// Opens the change feed's own connection, on the direct listen URL: the
/// listener reads the log through it, so live updates keep flowing when
/// slow requests hold every connection of the request pool.
pub async fn connect_feed(url: &SecretString) -> Result<Pool, DbErr> {
    let mut options = ConnectOptions::new(url.expose_secret());
    options
        .max_connections(1)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .set_application_name("api-feed");
    // Not in /metrics' pool figures, which are the request pool's; the
    // feed's health shows as the listener's lag and state.
    let stats = Arc::new(PoolStats::new(Duration::MAX));
    let db = Database::connect(options).await?;
    let health = Health::new(db.get_postgres_connection_pool().connect_options().as_ref().clone());
    // The feed reads the log in batches of its own size; it has no request
    // to bound, so no statement timeout (0 keeps the server's setting).
    Ok(Pool { db, transaction_pooler: false, stats, health, statement_timeout_ms: 0, warm: warm::Warm::new() })
}

/// The error of a request refused because the database is unreachable.
fn unreachable() -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::Internal("the database is unreachable".into()))
}

/// Whether `err` means the connection to the database is gone (rather than
/// a statement failing on a live one).
pub fn is_connection_lost(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error;
    use sea_orm::sqlx::postgres::PgSeverity;
    use sea_orm::{ConnAcquireErr, RuntimeErr};
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            Error::Io(_) | Error::Tls(_) | Error::Protocol(_) | Error::PoolClosed | Error::WorkerCrashed => true,
            // Class 08 (connection exception), the server going away
            // (admin_shutdown, crash_shutdown, cannot_connect_now) or ending
            // the session (idle_session_timeout; idle in transaction and
            // transaction timeouts, class 25), and whatever else it reports
            // as FATAL or PANIC: after those the backend closes the session.
            Error::Database(db) => {
                let fatal = db
                    .try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
                    .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic));
                fatal
                    || db.code().is_some_and(|code| {
                        code.starts_with("08")
                            || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "57P05" | "25P03" | "25P04")
                    })
            }
            _ => false,
        },
        _ => false,
    }
}

/// Opens a small pool for administrative work (migrations, seeding).
pub async fn connect_admin(url: &SecretString) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.expose_secret());
    options.max_connections(2).min_connections(0).sqlx_logging(false).set_application_name("api-admin");
    Database::connect(options).await
}

/// Why `url` would carry data over a network without verified TLS, if it
/// would: a host other than this machine, and an sslmode below `verify-ca`.
/// sqlx's default, `prefer`, falls back to plaintext without a word, and
/// `require` accepts any certificate. Parsed as sqlx parses it, so
/// `PGSSLMODE` and friends count.
pub fn unverified_tls(url: &str) -> Option<String> {
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};
    let options: PgConnectOptions = url.parse().ok()?;
    let host = options.get_host();
    let loopback = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || loopback.is_ok_and(|ip| ip.is_loopback());
    match options.get_ssl_mode() {
        _ if local => None,
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => None,
        mode => Some(format!("{host} is reached with sslmode={}", format!("{mode:?}").to_lowercase())),
    }
}

/// Names of migrations not yet applied. Reads the ledger without creating it,
/// so the unprivileged request login can ask too.
pub async fn pending_migrations(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations_read_only(db).await?.iter().map(|m| m.name().to_owned()).collect())
}

/// Why the login role cannot serve requests, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RoleCheckError {
    #[error("cannot reach the database: {0}")]
    Unreachable(#[source] DbErr),
    #[error("the database login cannot switch to role {role} ({source}); run: GRANT {grant} TO <login role>")]
    CannotSwitch { role: &'static str, grant: String, source: DbErr },
}

/// Fails fast, with what to do, when the login role cannot switch to every
/// viewer role: otherwise the first request of that kind would fail instead.
pub async fn check_viewer_roles(db: &Pool) -> Result<(), RoleCheckError> {
    let tx = db.begin().await.map_err(RoleCheckError::Unreachable)?;
    let grant_viewers = || migration::VIEWER_ROLES.join(", ");
    // Sign-in and sign-up switch to SIGNIN_ROLE for one statement (migration 000009).
    let roles = migration::VIEWER_ROLES
        .iter()
        .map(|role| (*role, grant_viewers()))
        .chain([(migration::SIGNIN_ROLE, migration::SIGNIN_ROLE.to_owned())]);
    for (role, grant) in roles {
        if let Err(source) = tx.execute_unprepared(&format!("SET LOCAL ROLE {role}")).await {
            return Err(RoleCheckError::CannotSwitch { role, grant, source });
        }
    }
    tx.rollback().await.map_err(RoleCheckError::Unreachable)
}

#[cfg(test)]
mod tests {
    use super::unverified_tls;

    #[test]
    fn a_remote_database_without_verified_tls_is_pointed_out() {
        let says = unverified_tls;
        assert_eq!(
            says("postgres://app@db.internal/app").as_deref(),
            Some("db.internal is reached with sslmode=prefer")
        );
        assert_eq!(
            says("postgres://app@10.0.0.5:6432/app?sslmode=require").as_deref(),
            Some("10.0.0.5 is reached with sslmode=require")
        );
        assert_eq!(says("postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/etc/ca.pem"), None);
        assert_eq!(says("postgres://app@db.internal/app?sslmode=verify-ca"), None);
    }

    #[test]
    fn this_machine_needs_no_tls() {
        for url in [
            "postgres://app@localhost/app",
            "postgres://app@127.0.0.1:5432/app?sslmode=disable",
            "postgres://app@127.0.0.2/app",
            "postgres://app@[::1]:5432/app",
            "postgres://app@localhost:5432/app?host=/var/run/postgresql",
        ] {
            assert_eq!(unverified_tls(url), None, "{url}");
        }
    }
}

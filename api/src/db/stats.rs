//! What the request pool goes through: connection waits, acquire times,
//! timeouts and slow statements. Recorded here, by [`super::Pool`] itself,
//! so that every caller (requests, DataLoaders, subscription replays,
//! readiness) is counted; `ops::metrics` registers these same handles and
//! reads them at scrape time (the arrow points from ops to db, never back).

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sea_orm::{ConnAcquireErr, DbErr};

/// Latency buckets, in seconds, of the pool's acquire times and of
/// `ops::metrics`' request durations: 1 ms (a warm pool) to 10 s (past the
/// default pool timeout's useful range).
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Characters of a slow statement's SQL that its log line keeps.
const SLOW_SQL_LOGGED: usize = 300;

/// The pool's counters. Each is a shared handle (cloning one clones the
/// handle, not the value), updated without a lock shared across requests.
#[derive(Debug)]
pub struct PoolStats {
    /// Statements slower than this are counted and logged.
    slow: Duration,
    /// Callers waiting for a connection right now (strictly: inside
    /// `Pool::begin`, which is the wait plus the round trip of BEGIN and
    /// the caller's prelude, sent together).
    pub waiting: Gauge,
    /// How long getting a connection and opening a transaction (its
    /// prelude, such as a request's `app_start_request`, included) took.
    pub acquire: Histogram,
    /// Callers that got no connection within DATABASE_POOL_TIMEOUT.
    pub timeouts: Counter,
    /// SQL statements slower than DATABASE_SLOW_QUERY_MS.
    pub slow_queries: Counter,
}

impl PoolStats {
    /// Stats that count statements slower than `slow` (`Duration::MAX`: none).
    pub fn new(slow: Duration) -> Self {
        Self {
            slow,
            waiting: Gauge::default(),
            acquire: Histogram::new(LATENCY_BUCKETS),
            timeouts: Counter::default(),
            slow_queries: Counter::default(),
        }
    }

    /// Runs `begin` (getting a connection and opening a transaction),
    /// counted as a wait while it runs and timed when it ends.
    pub async fn time_acquire<T>(&self, begin: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
        /// Counts the wait down even when the caller is cancelled mid-wait
        /// (a client that hangs up), so the gauge cannot drift upwards.
        struct Waiting<'a>(&'a Gauge);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.waiting.inc();
        let _waiting = Waiting(&self.waiting);
        let started = Instant::now();
        let result = begin.await;
        self.acquire.observe(started.elapsed().as_secs_f64());
        if matches!(result, Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))) {
            self.timeouts.inc();
        }
        result
    }

    /// Counts and logs one statement if it was slower than the threshold.
    /// Runs inside the task that ran the statement, so the log line carries
    /// that task's spans: the request id and the GraphQL operation name.
    /// The SQL is logged (never its parameters, which may hold user data),
    /// shortened.
    pub fn observe(&self, sql: &str, elapsed: Duration, failed: bool) {
        if elapsed < self.slow {
            return;
        }
        self.slow_queries.inc();
        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let sql = match sql.char_indices().nth(SLOW_SQL_LOGGED) {
            Some((cut, _)) => format!("{}…", &sql[..cut]),
            None => sql,
        };
        tracing::warn!(
            target: "api::db",
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            failed,
            sql,
            "slow query"
        );
    }
}

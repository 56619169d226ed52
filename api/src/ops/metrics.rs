//! Prometheus metrics, rendered as text at GET /metrics.
//!
//! Hand-rolled rather than a metrics crate: a few counters, one histogram
//! family and gauges read at scrape time are all we need, and the format is
//! simple. Database statistics (sizes, index usage, cache hit ratio,
//! notification queue) come from pg_stat views refreshed on an interval by
//! one task, never per scrape, so scraping cannot load the database.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::{ConnAcquireErr, ConnectionTrait, DbBackend, DbErr, Statement};

use crate::db::Pool;
use crate::realtime::Realtime;

/// Request duration buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Distinct operation names tracked; names past this count as "other", so
/// clients cannot grow the label set without bound.
const MAX_OPERATIONS: usize = 200;
/// The longest operation label: names are cut to this many characters (a
/// GraphQL name has no length limit; a label must).
pub const MAX_OPERATION_LABEL: usize = crate::graphql::guard::MAX_OPERATION_NAME;

/// A Prometheus histogram over [`BUCKETS`], in seconds.
#[derive(Default, Clone)]
pub struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum += seconds;
        for (bucket, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
    }

    /// Writes the series of `name` with `labels` (`a="x",b="y"`, or empty).
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (count, le) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What the request pool goes through, recorded by [`Pool`] itself so that
/// every caller (requests, DataLoaders, subscription replays, readiness)
/// is counted, not only HTTP requests.
pub struct PoolStats {
    /// Statements slower than this are counted and logged.
    slow: Duration,
    /// Callers waiting for a connection right now (strictly: inside
    /// `Pool::begin`, which is the wait plus BEGIN's round trip).
    waiting: AtomicI64,
    /// How long getting a connection and opening a transaction took.
    acquire: Mutex<Histogram>,
    /// Callers that got no connection within DATABASE_POOL_TIMEOUT.
    timeouts: AtomicU64,
    /// SQL statements slower than DATABASE_SLOW_QUERY_MS.
    slow_queries: AtomicU64,
}

impl PoolStats {
    /// Stats that count statements slower than `slow` (`Duration::MAX`: none).
    pub fn new(slow: Duration) -> Self {
        Self {
            slow,
            waiting: AtomicI64::default(),
            acquire: Mutex::default(),
            timeouts: AtomicU64::default(),
            slow_queries: AtomicU64::default(),
        }
    }

    /// Runs `begin` (getting a connection and opening a transaction),
    /// counted as a wait while it runs and timed when it ends.
    pub async fn time_acquire<T>(&self, begin: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
        /// Counts the wait down even when the caller is cancelled mid-wait
        /// (a client that hangs up), so the gauge cannot drift upwards.
        struct Waiting<'a>(&'a AtomicI64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let started = Instant::now();
        let result = begin.await;
        self.acquire.lock().unwrap_or_else(PoisonError::into_inner).observe(started.elapsed().as_secs_f64());
        if matches!(result, Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))) {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs one statement that sea-orm does not time itself (COMMIT, and
    /// SQL sent with `execute_unprepared`), timed as [`Self::observe`] says.
    pub async fn time<T>(&self, sql: &str, statement: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
        let started = Instant::now();
        let result = statement.await;
        self.observe(sql, started.elapsed(), result.is_err());
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
        self.slow_queries.fetch_add(1, Ordering::Relaxed);
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

/// Characters of a slow statement's SQL that its log line keeps.
const SLOW_SQL_LOGGED: usize = 300;

/// All metrics of one server process.
///
/// Every request records into these, so nothing holds their locks longer
/// than an update or a copy: a scrape copies what it needs under the lock
/// and formats the text after releasing it, so a request never waits on a
/// scrape's rendering.
#[derive(Default)]
pub struct Metrics {
    /// Request durations by operation name (at most [`MAX_OPERATIONS`]
    /// names, then "other") and outcome.
    requests: Mutex<HashMap<String, HashMap<&'static str, Histogram>>>,
    slow_requests: AtomicU64,
    pub ws_connections: AtomicI64,
    pub events_delivered: AtomicU64,
    /// Subscription payloads executed (one per event and audience, see
    /// `realtime::shared`; the other deliveries reuse them).
    pub events_executed: AtomicU64,
    database: Mutex<String>,
}

pub type SharedMetrics = Arc<Metrics>;

impl Metrics {
    /// Records one GraphQL request. `operation` should be the name of an
    /// operation of the request's document (never a client's free choice):
    /// it is cut to [`MAX_OPERATION_LABEL`] characters, and past
    /// [`MAX_OPERATIONS`] distinct names new ones count as "other".
    pub fn observe_request(&self, operation: Option<&str>, outcome: &'static str, seconds: f64) {
        let name = operation.filter(|n| !n.is_empty()).unwrap_or("anonymous");
        let name: String = name.chars().take(MAX_OPERATION_LABEL).collect();
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let name = if requests.contains_key(&name) || requests.len() < MAX_OPERATIONS { name } else { "other".into() };
        requests.entry(name).or_default().entry(outcome).or_default().observe(seconds);
    }

    pub fn slow_request(&self) {
        self.slow_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition of every family.
    pub fn render(&self, pool: &Pool, realtime: &Realtime) -> String {
        let mut out = String::with_capacity(8192);
        let sqlx = pool.connection().get_postgres_connection_pool();
        let (size, idle) = (sqlx.size(), u32::try_from(sqlx.num_idle()).unwrap_or(0));
        let stats = pool.stats();
        gauge(
            &mut out,
            "api_db_pool_connections_in_use",
            "Pool connections checked out by requests.",
            f64::from(size.saturating_sub(idle)),
        );
        gauge(&mut out, "api_db_pool_connections_idle", "Open pool connections not in use.", f64::from(idle));
        gauge(
            &mut out,
            "api_db_pool_connections_max",
            "Pool ceiling (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW).",
            f64::from(sqlx.options().get_max_connections()),
        );
        gauge(
            &mut out,
            "api_db_pool_waiting",
            "Callers waiting for a pool connection now.",
            stats.waiting.load(Ordering::Relaxed) as f64,
        );
        header(
            &mut out,
            "api_db_pool_acquire_seconds",
            "histogram",
            "Time to get a pool connection and open a transaction.",
        );
        // Copied, then written: every request's BEGIN records into it.
        let acquire = stats.acquire.lock().unwrap_or_else(PoisonError::into_inner).clone();
        acquire.write(&mut out, "api_db_pool_acquire_seconds", "");
        counter(
            &mut out,
            "api_db_pool_timeouts_total",
            "Callers that got no connection within DATABASE_POOL_TIMEOUT (a request answers 503).",
            stats.timeouts.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "api_db_slow_queries_total",
            "SQL statements slower than DATABASE_SLOW_QUERY_MS, each logged with its operation name.",
            stats.slow_queries.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "api_graphql_slow_requests_total",
            "GraphQL requests slower than DATABASE_SLOW_QUERY_MS, each logged with its operation name.",
            self.slow_requests.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "api_ws_connections",
            "Open websocket connections.",
            self.ws_connections.load(Ordering::Relaxed) as f64,
        );
        gauge(&mut out, "api_subscriptions", "Running subscriptions.", realtime.subscriber_count() as f64);
        counter(
            &mut out,
            "api_events_delivered_total",
            "Change events sent to subscribers.",
            self.events_delivered.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "api_events_executed_total",
            "Subscription payloads executed: one per event and audience, shared by its subscribers' deliveries.",
            self.events_executed.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "api_listener_connected",
            "1 while the change listener is connected to the database, 0 while it reconnects.",
            if realtime.listener_connected() { 1.0 } else { 0.0 },
        );
        gauge(
            &mut out,
            "api_listener_lag_seconds",
            "Commit-to-broadcast delay of the latest change event.",
            realtime.lag_ms() as f64 / 1000.0,
        );

        header(
            &mut out,
            "api_graphql_request_duration_seconds",
            "histogram",
            "GraphQL requests by operation name and outcome.",
        );
        // A copy (bounded: at most MAX_OPERATIONS names times four
        // outcomes), so requests record while the text is written.
        let mut requests: Vec<_> = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flat_map(|(name, outcomes)| {
                outcomes.iter().map(|(outcome, histogram)| ((name.clone(), *outcome), histogram.clone()))
            })
            .collect();
        requests.sort_by(|(a, _), (b, _)| a.cmp(b));
        for ((operation, outcome), histogram) in &requests {
            let labels = format!("operation=\"{}\",outcome=\"{outcome}\"", escape(operation));
            histogram.write(&mut out, "api_graphql_request_duration_seconds", &labels);
        }
        out.push_str(&self.database.lock().unwrap_or_else(PoisonError::into_inner));
        out
    }

    /// Refreshes the database statistics every `every`, until aborted.
    pub fn spawn_database_stats(self: &Arc<Self>, pool: Pool, every: Duration) -> tokio::task::JoinHandle<()> {
        let metrics = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match database_stats(&pool).await {
                    Ok(text) => *metrics.database.lock().unwrap_or_else(PoisonError::into_inner) = text,
                    Err(err) => tracing::warn!(error = %err, "reading database statistics failed"),
                }
            }
        })
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

async fn database_stats(pool: &Pool) -> Result<String, sea_orm::DbErr> {
    // Sizes take a lock on each table: never wait behind a migration or a
    // LOCK TABLE while holding a pool connection that requests need.
    let tx = pool.begin_with("SET LOCAL lock_timeout = '200ms'; SET LOCAL statement_timeout = '5s'").await?;
    let text = database_stats_in(&tx).await;
    tx.rollback().await?;
    text
}

async fn database_stats_in(pool: &sea_orm::DatabaseTransaction) -> Result<String, sea_orm::DbErr> {
    let mut out = String::new();
    let one = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
    if let Some(row) = pool
        .query_one_raw(one("SELECT pg_database_size(current_database())::float8 AS size,
                    coalesce(blks_hit::float8 / nullif(blks_hit + blks_read, 0), 1) AS hit,
                    pg_notification_queue_usage() AS queue
             FROM pg_stat_database WHERE datname = current_database()"))
        .await?
    {
        gauge(&mut out, "api_db_size_bytes", "Size of the database.", row.try_get("", "size")?);
        gauge(&mut out, "api_db_cache_hit_ratio", "Buffer cache hits over all block reads.", row.try_get("", "hit")?);
        gauge(
            &mut out,
            "api_db_notification_queue_usage",
            "Fraction of the NOTIFY queue in use.",
            row.try_get("", "queue")?,
        );
    }
    let tables = pool
        .query_all_raw(one(
            "SELECT relname::text AS name, pg_total_relation_size(relid)::float8 AS size, n_live_tup::float8 AS rows
             FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname",
        ))
        .await?;
    header(&mut out, "api_db_table_size_bytes", "gauge", "Size of each table with its indexes.");
    for row in &tables {
        let _ = writeln!(
            out,
            "api_db_table_size_bytes{{table=\"{}\"}} {}",
            escape(&row.try_get::<String>("", "name")?),
            row.try_get::<f64>("", "size")?
        );
    }
    header(&mut out, "api_db_table_rows_estimate", "gauge", "Estimated live rows of each table.");
    for row in &tables {
        let _ = writeln!(
            out,
            "api_db_table_rows_estimate{{table=\"{}\"}} {}",
            escape(&row.try_get::<String>("", "name")?),
            row.try_get::<f64>("", "rows")?
        );
    }
    let indexes = pool
        .query_all_raw(one("SELECT relname::text AS tbl, indexrelname::text AS idx, idx_scan::float8 AS scans
             FROM pg_stat_user_indexes WHERE schemaname = 'public' ORDER BY relname, indexrelname"))
        .await?;
    header(
        &mut out,
        "api_db_index_scans_total",
        "counter",
        "Scans of each index since statistics reset; 0 means never used.",
    );
    for row in &indexes {
        let _ = writeln!(
            out,
            "api_db_index_scans_total{{table=\"{}\",index=\"{}\"}} {}",
            escape(&row.try_get::<String>("", "tbl")?),
            escape(&row.try_get::<String>("", "idx")?),
            row.try_get::<f64>("", "scans")?
        );
    }
    Ok(out)
}

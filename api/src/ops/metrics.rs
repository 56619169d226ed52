//! Prometheus metrics at GET /metrics, in the text exposition format
//! (version 0.0.4), through `prometheus-client`.
//!
//! Three kinds of figures, kept apart by who owns them:
//! - Recorded as they happen, each into its own atomic or per-series
//!   handle (no lock shared by every request): request durations, slow
//!   requests and websocket figures here; the pool's waits, acquire times,
//!   timeouts and slow statements in [`crate::db::stats`], whose handles
//!   this registry shares.
//! - Read at scrape time from the pool and the change feed
//!   ([`LiveFigures`]): connections in use, subscribers, listener state.
//! - Database statistics (sizes, index usage, cache hit ratio, notification
//!   queue) from pg_stat views, refreshed on an interval by one task, never
//!   per scrape, so scraping cannot load the database ([`DatabaseFigures`]).
//!
//! The arrows point one way: this module reads `db` and `realtime`; neither
//! knows about it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::db::Pool;
use crate::db::stats::LATENCY_BUCKETS;
use crate::realtime::Realtime;

/// The `Content-Type` of what [`Metrics::render`] writes.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Distinct operation names tracked; names past this count as "other", so
/// clients cannot grow the label set without bound.
const MAX_OPERATIONS: usize = 200;
/// The longest operation label: names are cut to this many characters (a
/// GraphQL name has no length limit; a label must).
pub const MAX_OPERATION_LABEL: usize = crate::graphql::guard::MAX_OPERATION_NAME;

/// The labels of a request duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    outcome: &'static str,
}

type RequestFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// All metrics of one server process (one per [`crate::Application`], so
/// servers sharing a process, as tests do, never mix their figures).
pub struct Metrics {
    /// Every family below, registered once at start; a scrape encodes it.
    registry: Registry,
    /// Request durations by operation name (at most [`MAX_OPERATIONS`]
    /// names, then "other") and outcome.
    requests: RequestFamily,
    /// The operation names given a label so far: consulted only when a
    /// (name, outcome) pair is new, never on the path of a known one.
    operations: Mutex<HashSet<String>>,
    slow_requests: Counter,
    /// Open websocket connections (the websocket layer counts them).
    pub ws_connections: Gauge,
    /// Change events sent to subscribers (the websocket layer counts them).
    pub events_delivered: Counter,
    /// Subscription payloads executed (one per event and audience, see
    /// `realtime::shared`; the other deliveries reuse them).
    pub events_executed: Counter,
    /// Writes to websockets: each carries every message queued for its
    /// socket, so deliveries per write say how well they are batched.
    pub ws_writes: Counter,
    database: Arc<DatabaseFigures>,
}

pub type SharedMetrics = Arc<Metrics>;

impl Metrics {
    /// The registry of the server whose request pool is `pool` and whose
    /// change feed is `realtime`.
    pub fn new(pool: &Pool, realtime: &Realtime) -> Self {
        let mut registry = Registry::default();
        let stats = pool.stats();
        // Help texts without a final full stop: the registry adds it.
        registry.register("api_db_pool_waiting", "Callers waiting for a pool connection now", stats.waiting.clone());
        registry.register(
            "api_db_pool_acquire_seconds",
            "Time to get a pool connection and open a transaction",
            stats.acquire.clone(),
        );
        // Counters are registered without `_total`: the encoder adds it.
        registry.register(
            "api_db_pool_timeouts",
            "Callers that got no connection within DATABASE_POOL_TIMEOUT (a request answers 503)",
            stats.timeouts.clone(),
        );
        registry.register(
            "api_db_slow_queries",
            "SQL statements slower than DATABASE_SLOW_QUERY_MS, each logged with its operation name",
            stats.slow_queries.clone(),
        );
        let slow_requests = Counter::default();
        registry.register(
            "api_graphql_slow_requests",
            "GraphQL requests slower than DATABASE_SLOW_QUERY_MS, each logged with its operation name",
            slow_requests.clone(),
        );
        let ws_connections = Gauge::default();
        registry.register("api_ws_connections", "Open websocket connections", ws_connections.clone());
        let events_delivered = Counter::default();
        registry.register("api_events_delivered", "Change events sent to subscribers", events_delivered.clone());
        let events_executed = Counter::default();
        registry.register(
            "api_events_executed",
            "Subscription payloads executed: one per event and audience, shared by its subscribers' deliveries",
            events_executed.clone(),
        );
        let ws_writes = Counter::default();
        registry.register(
            "api_ws_writes",
            "Writes to websockets; one carries every message queued for its socket (several subscriptions' deliveries of one event)",
            ws_writes.clone(),
        );
        let requests = RequestFamily::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register(
            "api_graphql_request_duration_seconds",
            "GraphQL requests by operation name and outcome",
            requests.clone(),
        );
        registry.register_collector(Box::new(LiveFigures { pool: pool.clone(), realtime: realtime.clone() }));
        let database = Arc::new(DatabaseFigures::default());
        registry.register_collector(Box::new(Arc::clone(&database)));
        Self {
            registry,
            requests,
            operations: Mutex::default(),
            slow_requests,
            ws_connections,
            events_delivered,
            events_executed,
            ws_writes,
            database,
        }
    }

    /// Records one GraphQL request. `operation` should be the name of an
    /// operation of the request's document (never a client's free choice):
    /// it is cut to [`MAX_OPERATION_LABEL`] characters, and past
    /// [`MAX_OPERATIONS`] distinct names new ones count as "other".
    pub fn observe_request(&self, operation: Option<&str>, outcome: &'static str, seconds: f64) {
        let name = operation.filter(|n| !n.is_empty()).unwrap_or("anonymous");
        let labels = RequestLabels { operation: name.chars().take(MAX_OPERATION_LABEL).collect(), outcome };
        if let Some(histogram) = self.requests.get(&labels) {
            histogram.observe(seconds);
            return;
        }
        let labels = self.bounded(labels);
        self.requests.get_or_create(&labels).observe(seconds);
    }

    /// `labels`, or the same with the operation "other" once
    /// [`MAX_OPERATIONS`] other names have labels.
    fn bounded(&self, labels: RequestLabels) -> RequestLabels {
        let mut known = self.operations.lock().unwrap_or_else(PoisonError::into_inner);
        if known.contains(&labels.operation) || known.len() < MAX_OPERATIONS {
            known.insert(labels.operation.clone());
            labels
        } else {
            RequestLabels { operation: "other".into(), ..labels }
        }
    }

    pub fn slow_request(&self) {
        self.slow_requests.inc();
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail; should an encoder report an
        // error anyway, the scrape gets what was written and a log line.
        if let Err(err) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "encoding /metrics failed");
        }
        out
    }

    /// Refreshes the database statistics every `every`, until aborted.
    pub fn spawn_database_stats(&self, pool: Pool, every: Duration) -> tokio::task::JoinHandle<()> {
        let database = Arc::clone(&self.database);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match database_stats(&pool).await {
                    Ok(stats) => *database.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats),
                    Err(err) => tracing::warn!(error = %err, "reading database statistics failed"),
                }
            }
        })
    }
}

/// Writes one unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// Figures read from the pool and the change feed when scraped.
struct LiveFigures {
    pool: Pool,
    realtime: Realtime,
}

impl std::fmt::Debug for LiveFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveFigures")
    }
}

impl Collector for LiveFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sqlx = self.pool.connection().get_postgres_connection_pool();
        let (size, idle) = self.pool.connections();
        let rt = &self.realtime;
        let figures: [(&str, &str, f64); 6] = [
            (
                "api_db_pool_connections_in_use",
                "Pool connections checked out by requests.",
                f64::from(size.saturating_sub(idle)),
            ),
            ("api_db_pool_connections_idle", "Open pool connections not in use.", f64::from(idle)),
            (
                "api_db_pool_connections_max",
                "Pool ceiling (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW).",
                f64::from(sqlx.options().get_max_connections()),
            ),
            ("api_subscriptions", "Running subscriptions.", rt.subscriber_count() as f64),
            (
                "api_listener_connected",
                "1 while the change listener is connected to the database, 0 while it reconnects.",
                if rt.listener_connected() { 1.0 } else { 0.0 },
            ),
            (
                "api_listener_lag_seconds",
                "Commit-to-broadcast delay of the latest change event.",
                rt.lag_ms() as f64 / 1000.0,
            ),
        ];
        for (name, help, value) in figures {
            gauge(&mut encoder, name, help, value)?;
        }
        Ok(())
    }
}

/// The latest database statistics, as the refresh task last read them.
#[derive(Debug, Default)]
struct DatabaseFigures {
    latest: Mutex<Option<DatabaseStats>>,
}

/// One reading of the pg_stat views.
#[derive(Debug)]
struct DatabaseStats {
    /// Size, cache hit ratio and NOTIFY queue usage of the database.
    database: Option<(f64, f64, f64)>,
    /// Name, size with indexes and estimated live rows of each table.
    tables: Vec<(String, f64, f64)>,
    /// Table, index and scans of each index.
    indexes: Vec<(String, String, f64)>,
}

impl Collector for DatabaseFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // Held while a few hundred lines are written; only the refresh task
        // (every 15 s) ever waits on it, never a request.
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(stats) = latest.as_ref() else { return Ok(()) };
        if let Some((size, hit, queue)) = stats.database {
            gauge(&mut encoder, "api_db_size_bytes", "Size of the database.", size)?;
            gauge(&mut encoder, "api_db_cache_hit_ratio", "Buffer cache hits over all block reads.", hit)?;
            gauge(&mut encoder, "api_db_notification_queue_usage", "Fraction of the NOTIFY queue in use.", queue)?;
        }
        let mut family = encoder.encode_descriptor(
            "api_db_table_size_bytes",
            "Size of each table with its indexes.",
            None,
            MetricType::Gauge,
        )?;
        for (table, size, _) in &stats.tables {
            ConstGauge::new(*size).encode(family.encode_family(&[("table", table.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "api_db_table_rows_estimate",
            "Estimated live rows of each table.",
            None,
            MetricType::Gauge,
        )?;
        for (table, _, rows) in &stats.tables {
            ConstGauge::new(*rows).encode(family.encode_family(&[("table", table.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "api_db_index_scans",
            "Scans of each index since statistics reset; 0 means never used.",
            None,
            MetricType::Counter,
        )?;
        for (table, index, scans) in &stats.indexes {
            ConstCounter::new(*scans)
                .encode(family.encode_family(&[("table", table.as_str()), ("index", index.as_str())])?)?;
        }
        Ok(())
    }
}

async fn database_stats(pool: &Pool) -> Result<DatabaseStats, sea_orm::DbErr> {
    // Sizes take a lock on each table: never wait behind a migration or a
    // LOCK TABLE while holding a pool connection that requests need.
    let tx = pool.begin_with("SET LOCAL lock_timeout = '200ms'; SET LOCAL statement_timeout = '5s'").await?;
    let stats = database_stats_in(&tx).await;
    tx.rollback().await?;
    stats
}

async fn database_stats_in(tx: &crate::db::Tx) -> Result<DatabaseStats, sea_orm::DbErr> {
    let one = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
    let database = tx
        .query_one_raw(one("SELECT pg_database_size(current_database())::float8 AS size,
                    coalesce(blks_hit::float8 / nullif(blks_hit + blks_read, 0), 1) AS hit,
                    pg_notification_queue_usage() AS queue
             FROM pg_stat_database WHERE datname = current_database()"))
        .await?
        .map(|row| {
            Ok::<_, sea_orm::DbErr>((row.try_get("", "size")?, row.try_get("", "hit")?, row.try_get("", "queue")?))
        })
        .transpose()?;
    let tables = tx
        .query_all_raw(one(
            "SELECT relname::text AS name, pg_total_relation_size(relid)::float8 AS size, n_live_tup::float8 AS rows
             FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname",
        ))
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "name")?, row.try_get("", "size")?, row.try_get("", "rows")?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    let indexes = tx
        .query_all_raw(one("SELECT relname::text AS tbl, indexrelname::text AS idx, idx_scan::float8 AS scans
             FROM pg_stat_user_indexes WHERE schemaname = 'public' ORDER BY relname, indexrelname"))
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "tbl")?, row.try_get("", "idx")?, row.try_get("", "scans")?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    Ok(DatabaseStats { database, tables, indexes })
}

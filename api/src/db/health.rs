//! Whether the database can be reached, so requests fail fast while it
//! cannot.
//!
//! sqlx's pool retries a refused connection until DATABASE_POOL_TIMEOUT
//! (30 s by default): with PostgreSQL down, every request and `/readyz`
//! would hang that long before answering 503, holding a client connection
//! and a task each. Instead, a probe is asked for when a caller has waited
//! [`SUSPECT_AFTER`] for a connection, when BEGIN or COMMIT fails because
//! the connection is gone, and when `/readyz` gets no answer in time: one
//! fresh connection with a short timeout, at most one at a time. If it
//! fails the database is marked unreachable: callers waiting for a
//! connection are released with SERVICE_UNAVAILABLE, new ones are refused
//! at once, and a prober retries every [`PROBE_EVERY`] until the database
//! answers again, when everything goes back to normal by itself.
//!
//! A busy database is not "down": when every pooled connection is taken
//! the probe still connects, and when the server has no connection slot
//! left for it (`too_many_connections`, as when `max_connections` or a
//! pooler's limit is sized to the pool) it has answered all the same.
//! Those callers keep waiting for the pool as before.
//!
//! Nor is one whose probe times out while other callers get connections:
//! under a burst on a small machine (a cold pool of 30 opening every
//! connection at once, each a fork and a SCRAM exchange, beside the server
//! and its clients on two cores), a fresh connection can take over a
//! second. Counting that as "down" refused every request with 503 for a
//! second or more (issue 11: the default pool's stall).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::{ConnectOptions, Connection};
use tokio::sync::watch;

/// How long a caller waits for a connection before the database is probed.
/// Well above a healthy acquire (sub-millisecond) and a busy pool's usual
/// wait, well below the 2 s in which `/readyz` must answer.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(500);
/// How long a probe may take to connect and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an unreachable database is probed again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Shared by every clone of a [`super::Pool`].
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where a probe connects: the pool's own options.
    options: PgConnectOptions,
    /// `true` while the database is known to be unreachable.
    down: watch::Sender<bool>,
    /// A probe (or the prober loop) is running: at most one at a time.
    probing: AtomicBool,
    /// Transactions started so far: moving during a probe that timed out
    /// means the database answers, only slowly.
    answered: AtomicU64,
}

impl Health {
    pub fn new(options: PgConnectOptions) -> Self {
        let (down, _) = watch::channel(false);
        Self { inner: Arc::new(Inner { options, down, probing: AtomicBool::new(false), answered: AtomicU64::new(0) }) }
    }

    /// Records that a transaction started: the database answers.
    pub fn answered(&self) {
        self.inner.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the database is known to be unreachable right now.
    pub fn is_down(&self) -> bool {
        *self.inner.down.borrow()
    }

    /// Resolves once the database is marked unreachable (at once if it is).
    pub async fn went_down(&self) {
        let mut down = self.inner.down.subscribe();
        // The sender lives as long as `self`: an error cannot happen here.
        let _ = down.wait_for(|down| *down).await;
    }

    /// Checks the database in the background, unless a check is running:
    /// marks it unreachable if a fresh connection fails, and then keeps
    /// probing until it answers again.
    pub fn suspect(&self) {
        if self.inner.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let health = self.clone();
        tokio::spawn(async move {
            let mut answered = health.inner.answered.load(Ordering::Relaxed);
            while let Err(err) = health.probe().await {
                let now = health.inner.answered.load(Ordering::Relaxed);
                if now != answered && !health.is_down() {
                    // Slow, not down: requests got connections meanwhile.
                    tracing::warn!(error = %err, "database slow to accept a connection; still serving");
                    break;
                }
                answered = now;
                if !health.is_down() {
                    tracing::error!(error = %err, "database unreachable: requests fail fast until it is back");
                    health.inner.down.send_replace(true);
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            if health.inner.down.send_replace(false) {
                tracing::info!("database reachable again");
            }
            health.inner.probing.store(false, Ordering::Release);
        });
    }

    async fn probe(&self) -> Result<(), String> {
        let check = async {
            let mut conn = match self.inner.options.connect().await {
                Ok(conn) => conn,
                // It answered: full, not gone (see the module doc).
                Err(sea_orm::sqlx::Error::Database(db)) if db.code().as_deref() == Some("53300") => return Ok(()),
                Err(err) => return Err(err.to_string()),
            };
            conn.ping().await.map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok(())
        };
        tokio::time::timeout(PROBE_TIMEOUT, check).await.unwrap_or_else(|_| Err("no answer within 1 s".into()))
    }
}

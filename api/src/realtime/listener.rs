//! The one listener of a server process.

use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

use super::{Realtime, log};
use crate::error::ApiResult;

/// Events read per query while catching up.
const BATCH: u64 = 1000;
/// How often old events (and expired sessions) are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Where a new listener starts: everything finished before it is history,
/// delivered only to subscriptions that ask for it with a cursor.
pub async fn start_position(pool: &crate::db::Pool) -> ApiResult<super::Cursor> {
    log::current_head(pool).await
}

/// The identity of the feed this server hands out cursors for: read once at
/// start (restart servers after `api restore`, which renews it).
pub async fn feed_identity(pool: &crate::db::Pool) -> ApiResult<super::FeedIdentity> {
    log::identity(pool).await
}

/// Puts the database in the trigger capture mode (this server runs no
/// sequencer). If it was in the logical mode, the transactions the slot had
/// not sequenced are stamped in the background once the transactions
/// running now have ended, and a slot left behind is reported: it keeps WAL
/// until it is dropped.
pub async fn use_trigger_capture(pool: &crate::db::Pool) -> ApiResult<()> {
    if log::leave_logical(pool).await? {
        tracing::warn!(
            "the database's capture was logical; switched it to trigger (every server of a database should have the same CAPTURE_MODE)"
        );
        let pool = pool.clone();
        tokio::spawn(async move {
            match log::restamp_after_running(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    restamped = n,
                    "stamped transactions the logical capture had left unsequenced (in transaction-id order)"
                ),
                Err(err) => tracing::error!(
                    error = err.message(),
                    "stamping the transactions left by the logical capture failed: restart to retry"
                ),
            }
        });
    }
    if log::slot_exists(pool).await? {
        tracing::warn!(
            "the logical capture's replication slot still exists and keeps WAL: drop it (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'app_changes_%') if no server uses CAPTURE_MODE=logical"
        );
    }
    Ok(())
}

/// Runs the listener until the returned task is aborted.
pub fn spawn(rt: Realtime) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        let mut last_prune: Option<Instant> = None;
        loop {
            match listen(&rt, &mut backoff, &mut last_prune).await {
                Ok(()) => return,
                Err(err) => {
                    rt.set_listener_connected(false);
                    tracing::warn!(error = %err, retry_in = ?backoff, "realtime listener lost the database; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    })
}

/// One connection's worth of listening. Returns on a database error; the
/// caller reconnects, and the catch-up read at the start of the next call
/// delivers whatever was committed meanwhile.
async fn listen(rt: &Realtime, backoff: &mut Duration, last_prune: &mut Option<Instant>) -> Result<(), String> {
    let mut listener = PgListener::connect(secrecy::ExposeSecret::expose_secret(&rt.config().listen_url))
        .await
        .map_err(|e| e.to_string())?;
    // A lost connection comes back as `None` below, and this function
    // returns so that the caller reconnects (once: not sqlx as well).
    listener.eager_reconnect(false);
    listener.listen(migration::CHANGES_CHANNEL).await.map_err(|e| e.to_string())?;
    catch_up(rt).await.map_err(|e| e.message())?;
    rt.set_listener_connected(true);
    *backoff = BACKOFF_MIN;
    tracing::info!(head = %rt.head(), "realtime listener connected");
    let mut poll = tokio::time::interval(rt.config().poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            notification = listener.try_recv() => match notification {
                Ok(Some(_)) => {}
                // Starting over says exactly when the listener is back (the
                // connected gauge) and catches up from the log on the way.
                Ok(None) => return Err("the LISTEN connection dropped".into()),
                Err(err) => return Err(err.to_string()),
            },
            _ = poll.tick() => {
                if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    *last_prune = Some(Instant::now());
                    match log::prune(rt.feed(), rt.config().retention.as_secs(), rt.head()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "pruned the change log"),
                        Err(err) => tracing::warn!(error = err.message(), "pruning the change log failed"),
                    }
                    // Expired sessions and their refresh tokens, on the same
                    // timer, on the request pool in a task of its own: the
                    // feed's one connection keeps delivering events.
                    let pool = rt.pool().clone();
                    tokio::spawn(async move {
                        match crate::accounts::prune_sessions(&pool).await {
                            Ok(crate::accounts::Pruned { sessions: 0, tokens: 0 }) => {}
                            Ok(n) => tracing::info!(sessions = n.sessions, tokens = n.tokens, "pruned expired sessions"),
                            Err(err) => tracing::warn!(error = err.message(), "pruning expired sessions failed"),
                        }
                    });
                }
            }
        }
        catch_up(rt).await.map_err(|e| e.message())?;
    }
}

/// Broadcasts everything committed past the head.
async fn catch_up(rt: &Realtime) -> ApiResult<()> {
    loop {
        let batch = log::read_after(rt.feed(), rt.head(), &[], BATCH).await?;
        let full = batch.len() as u64 == BATCH;
        for event in batch {
            rt.publish(event);
        }
        if !full {
            return Ok(());
        }
    }
}

//! Realtime: committed PostgreSQL changes to every allowed subscriber, none
//! lost, none leaked.
//!
//! - Capture (migration 000003): statement-level triggers append each change
//!   to `change_log` inside the writing transaction and send a payload-less
//!   `pg_notify` as a wake-up.
//! - [`listener`]: one task per server process LISTENs on its own connection,
//!   reads the log past its cursor in commit order (each writing transaction
//!   is stamped with a sequence number at commit, under a lock, so a late
//!   commit is never skipped), and fans events out through a bounded broadcast channel owned
//!   by [`Realtime`]. After a dropped connection it reconnects with backoff
//!   and catches up from the log.
//! - [`stream`]: each subscription filters events in memory with its
//!   viewer's row policy; it replays from the log when given a cursor or
//!   when it falls behind the channel, and deduplicates by cursor at the seam.
//!   A replay from a cursor shows only rows the viewer may see now (`now`).
//! - [`sequencer`]: in the logical capture mode (migration 000014) the
//!   triggers only append to the log, and one server's sequencer stamps the
//!   commit order from a logical replication slot and sends the wake-up.
//! - [`change`]: one change event type and one stream for every table
//!   subscribers watch; a domain implements [`Published`] for its entity.
//! - `cursor`: cursors are signed, bound to the database's feed and to
//!   the viewer, so they cannot be forged or carried elsewhere.
//! - The websocket transport is in `http::ws`. A delivery's path: the
//!   listener's broadcast wakes every subscription's task (each a task of its
//!   own on the multi-thread runtime, so one event's fan-out runs on every
//!   core); the task filters the event, takes its audience's shared payload
//!   ([`shared`]), splices its id and cursor in, and writes the frame to the
//!   socket itself (`http::ws_outbox`: no writer task, no channel). Frames
//!   that are ready together (several subscriptions on one socket, or a
//!   subscriber with several events at hand) leave in one write.

pub mod change;
mod cursor;
pub mod drivers;
mod graphql;
pub mod listener;
mod log;
mod now;
pub mod sequencer;
pub mod shared;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub use change::{Change, Changes, EventSchema, Published, changes, my_changes, owned_changes};
pub use cursor::{Cursor, CursorKeys, FeedIdentity};
pub use graphql::RealtimeQuery;
pub use log::{ChangeEvent, Operation, renew_epoch};
pub use sequencer::SequencerState;
use tokio::sync::{broadcast, watch};

use crate::db::Pool;

/// What happened to a row.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChangeOperation {
    /// The row was created.
    Inserted,
    /// The row was changed.
    Updated,
    /// The row was deleted (or hidden from this viewer); the event carries
    /// it as it was, or, replayed for a viewer who may not see the row now,
    /// as a tombstone that only identifies it.
    Deleted,
}

impl From<log::Operation> for ChangeOperation {
    fn from(op: log::Operation) -> Self {
        match op {
            log::Operation::Insert => Self::Inserted,
            log::Operation::Update => Self::Updated,
            log::Operation::Delete => Self::Deleted,
        }
    }
}

impl ChangeEvent {
    /// The row, as the domain's storage model (after the change, or before
    /// a delete). Decoded once and shared by every subscriber of the event.
    pub fn decode_row<T>(&self) -> Result<T, crate::error::ApiError>
    where
        T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if let Some(model) = self.decoded.get().and_then(|any| any.downcast_ref::<T>()) {
            return Ok(model.clone());
        }
        let row = self.row().ok_or_else(|| crate::error::ApiError::internal("change event without a row"))?;
        let model = T::deserialize(row)
            .map_err(|e| crate::error::ApiError::internal(format!("change event row of {}: {e}", self.table)))?;
        let _ = self.decoded.set(Box::new(model.clone()));
        Ok(model)
    }
}

/// A live event as broadcast to every subscription stream, with the
/// payloads its subscribers share (see [`shared`]).
#[derive(Clone)]
pub struct Live {
    pub event: Arc<ChangeEvent>,
    pub share: Arc<shared::EventShare>,
}

/// What a websocket operation knows about its session: when the token
/// expires (unix seconds; subscriptions end then), and the change-feed
/// position at which the account was last checked (account changes after it
/// end subscriptions; earlier ones are history).
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub expires_at: Option<i64>,
    pub checked_at: Cursor,
}

/// Settings of the realtime machinery.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Where to LISTEN: a direct connection, bypassing a transaction-mode
    /// pooler. A secret (it may hold a password): `Debug` shows it redacted.
    pub listen_url: secrecy::SecretString,
    /// Events buffered per process. A subscriber further behind than this
    /// catches up from the log instead of slowing everyone else down.
    pub buffer: usize,
    /// How long the log keeps events; older cursors are refused.
    pub retention: Duration,
    /// How often the listener reads the log without a notification: picks up
    /// transactions that were held back behind a slow one.
    pub poll_interval: Duration,
}

/// How this server's change feed gets its commit order (see
/// [`crate::config::CaptureMode`]).
#[derive(Debug, Clone)]
pub enum Capture {
    /// The writers stamp themselves (migrations 000003 and 000012).
    Trigger,
    /// A sequencer stamps from a logical slot; this server runs a candidate
    /// that connects with `url`.
    Logical { url: secrecy::SecretString, state: Arc<SequencerState> },
}

impl Capture {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Logical { .. } => "logical",
        }
    }

    /// Whether this server is the one stamping the feed now.
    pub fn is_sequencer(&self) -> bool {
        matches!(self, Self::Logical { state, .. } if state.is_leader())
    }
}

/// The handle that resolvers and the listener share. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// The request pool: replays for subscribers that resubscribe.
    pool: Pool,
    /// The listener's own connection (see [`crate::db::connect_feed`]).
    feed: Pool,
    /// One `Arc` per event: each subscriber's receive is one reference
    /// count (on a line both cores share) rather than one per field.
    events: broadcast::Sender<Arc<Live>>,
    /// The last position the listener has broadcast.
    head: watch::Sender<Cursor>,
    config: RealtimeConfig,
    /// Times a subscriber fell behind the buffer and caught up from the log.
    lag_recoveries: AtomicU64,
    /// Milliseconds from the commit of the latest event to its broadcast.
    lag_ms: AtomicU64,
    /// Whether the listener is connected (false while it reconnects).
    connected: AtomicBool,
    /// Signs the cursors this server hands out and verifies those it gets.
    cursors: CursorKeys,
    /// Sessions that ended (their `sessions` row was deleted: signed out,
    /// refresh token reused, password changed, account deleted), as the
    /// change log reports them to every server. Websocket connections of
    /// such a session close at once. Its own channel, not `events`: each
    /// connection waits on it, and wakes only for session endings.
    ended_sessions: broadcast::Sender<uuid::Uuid>,
    /// The capture mode, set once at start (trigger until then).
    capture: std::sync::OnceLock<Capture>,
}

/// Session endings buffered per process. A connection that falls further
/// behind (a burst of sign-outs) re-checks its session in the database.
const ENDED_SESSIONS_BUFFER: usize = 256;

impl Realtime {
    pub fn new(pool: Pool, feed: Pool, start: Cursor, config: RealtimeConfig, cursors: CursorKeys) -> Self {
        let (events, _) = broadcast::channel(config.buffer.max(16));
        let (head, _) = watch::channel(start);
        let (ended_sessions, _) = broadcast::channel(ENDED_SESSIONS_BUFFER);
        Self {
            inner: Arc::new(Inner {
                pool,
                feed,
                events,
                head,
                config,
                lag_recoveries: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
                connected: AtomicBool::new(false),
                cursors,
                ended_sessions,
                capture: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets the capture mode (once, at start; later calls are ignored).
    pub fn set_capture(&self, capture: Capture) {
        let _ = self.inner.capture.set(capture);
    }

    /// The capture mode this server runs.
    pub fn capture(&self) -> &Capture {
        self.inner.capture.get().unwrap_or(&Capture::Trigger)
    }

    /// A write committed through this server: in the logical mode, the
    /// sequencer (if this server leads) stamps it without waiting for its
    /// next poll. Nothing in the trigger mode, where the writer stamps.
    pub fn written(&self) {
        if let Capture::Logical { state, .. } = self.capture() {
            state.written();
        }
    }

    /// Starts this server's sequencer candidate, in the logical mode.
    pub fn spawn_sequencer(&self) -> Option<tokio::task::JoinHandle<()>> {
        match self.capture() {
            Capture::Logical { url, state } => Some(sequencer::spawn(url.clone(), state.clone())),
            Capture::Trigger => None,
        }
    }

    pub fn config(&self) -> &RealtimeConfig {
        &self.inner.config
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn feed(&self) -> &Pool {
        &self.inner.feed
    }

    /// The keys cursors are signed and verified with.
    pub fn cursors(&self) -> &CursorKeys {
        &self.inner.cursors
    }

    /// The newest position committed to the log, as the database has it now
    /// (the listener's [`Realtime::head`] may not have reached it yet).
    pub async fn committed_head(&self) -> crate::error::ApiResult<Cursor> {
        Ok(log::bounds(self.pool()).await?.head)
    }

    /// A position at or past every change visible in the database now, once
    /// this server has broadcast up to it: where an account check that
    /// reads the account now may say "changes after this end the
    /// subscription". (The websocket's check takes [`Realtime::head`]: a
    /// change the check already saw but the listener had not broadcast
    /// yet, such as a deactivation undone since, then ends the
    /// subscription, which errs on the safe side; the window is wider in
    /// the logical mode.)
    ///
    /// It waits until the committed head ([`log::settle`]: in the logical
    /// mode, once the sequencer has stamped what is visible now) has been
    /// broadcast; otherwise a change the check already saw (a deactivation
    /// undone since) would look newer than the check and end the
    /// subscription.
    pub async fn settled_head(&self) -> Cursor {
        let settle = async {
            let committed = self.committed_head().await?;
            let mut head = self.inner.head.subscribe();
            let _ = head.wait_for(|at| *at >= committed).await;
            Ok::<(), crate::error::ApiError>(())
        };
        let within = log::SETTLE_WITHIN * 2;
        match tokio::time::timeout(within, settle).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = err.message(), "settling the change feed's head failed"),
            Err(_) => tracing::warn!("the change feed did not settle within {within:?}"),
        }
        self.head()
    }

    /// The position up to which events have been broadcast.
    pub fn head(&self) -> Cursor {
        *self.inner.head.borrow()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Live>> {
        self.inner.events.subscribe()
    }

    /// Ids of sessions as they end, from now on.
    pub fn session_endings(&self) -> broadcast::Receiver<uuid::Uuid> {
        self.inner.ended_sessions.subscribe()
    }

    /// How many subscription streams are attached.
    pub fn subscriber_count(&self) -> usize {
        self.inner.events.receiver_count()
    }

    /// Times a subscriber fell behind the buffer and caught up from the log.
    pub fn lag_recoveries(&self) -> u64 {
        self.inner.lag_recoveries.load(Ordering::Relaxed)
    }

    /// Milliseconds between the latest event's commit and its broadcast.
    pub fn lag_ms(&self) -> u64 {
        self.inner.lag_ms.load(Ordering::Relaxed)
    }

    /// Whether the listener is connected and caught up with the log (false
    /// from a lost connection until the reconnect's catch-up read is done).
    pub fn listener_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    fn set_listener_connected(&self, connected: bool) {
        self.inner.connected.store(connected, Ordering::Relaxed);
    }

    fn record_lag(&self) {
        self.inner.lag_recoveries.fetch_add(1, Ordering::Relaxed);
    }

    fn publish(&self, event: ChangeEvent) {
        let cursor = event.cursor;
        let lag = event.committed_at.elapsed().as_millis();
        self.inner.lag_ms.store(u64::try_from(lag).unwrap_or(u64::MAX), Ordering::Relaxed);
        // Head first: a subscriber that reads the head after subscribing
        // treats everything up to it as the past, and receives the rest.
        self.inner.head.send_replace(cursor);
        if event.table == "sessions"
            && event.op == log::Operation::Delete
            && let Ok(session) = event.key.parse::<uuid::Uuid>()
        {
            // No receivers: no websocket is open right now.
            let _ = self.inner.ended_sessions.send(session);
        }
        // No receivers is not an error: nobody is subscribed right now.
        let _ = self.inner.events.send(Arc::new(Live { event: Arc::new(event), share: Arc::default() }));
    }
}

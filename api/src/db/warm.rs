//! Connections kept warm between transactions, in front of sqlx's pool.
//!
//! sqlx pings every connection it gets back (`return_to_pool` sends a Sync
//! and waits for the answer), unconditionally: one more round trip per
//! transaction, two wake-ups of the backend and a spawned task, after every
//! request (issue 11 asks for no health check per acquire or release). Its
//! options can skip the check on *acquire* but not that one. So a
//! transaction that ended cleanly does not give its connection back to
//! sqlx: it leaves it here, still checked out, and the next transaction
//! takes it from here (last in, first out, so a hot connection stays hot).
//!
//! What sqlx would do with an idle connection still happens, a little
//! later: a connection left here longer than [`KEEP_FOR`] (give or take a
//! quarter of it) goes back to sqlx (pinged then, once), where the idle
//! timeout, `min_connections` and the ping-if-idle-for-30-s on acquire
//! apply as before; and one that has gone from transaction to transaction
//! for [`VISIT_SQLX_EVERY`] goes back too after its transaction, so that
//! sqlx's `max_lifetime` still retires it.
//! A connection that failed, or whose transaction did not end cleanly
//! (other than a READ ONLY one's queued end, below), is never left here:
//! sqlx checks or closes it as it always did.
//!
//! A connection left by a READ ONLY transaction still owes that
//! transaction's ROLLBACK, queued on it and sent with its next use
//! (`db::tx`). If no transaction takes it within [`SETTLE`] to twice that
//! (the task looks every `SETTLE`), a task sends the ROLLBACK on its own,
//! so no connection idles inside a transaction (holding its tables'
//! `ACCESS SHARE` locks) for longer. The task runs
//! only while such connections wait here: an idle server has none.
//!
//! A transaction that names the viewer role it will run as takes the most
//! recently left connection whose last such transaction ran as that role,
//! else the most recent one. PostgreSQL makes the plan of a statement that
//! row-level security applies to for one role, and makes it again (after
//! analysing the statement again) whenever it runs as another: pgbench with
//! a page of places, prepared, whose transactions switch between two roles
//! at random ran 18 % fewer transactions a second than with one role
//! (BENCHMARKS, queries stage 21).
//!
//! No connection waits here while a transaction waits for one: whoever
//! finds this stash empty registers as waiting before asking sqlx, and a
//! connection ended while anyone waits goes back through sqlx (ping and
//! all), which hands it to the longest waiter. Both steps happen under the
//! one lock, so a connection cannot slip in here unseen by a waiter. Under
//! saturation the pool is as fair as sqlx's; below it, no ping.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, PgPool, Postgres};

/// How long a connection may wait here for its next transaction before it
/// goes back to sqlx (a burst's extra connections are closed by sqlx's idle
/// timeout from there).
pub const KEEP_FOR: Duration = Duration::from_secs(1);

/// How long a connection may serve transaction after transaction without
/// going back through sqlx (which checks its lifetime and pings it).
pub const VISIT_SQLX_EVERY: Duration = Duration::from_secs(60);

/// How long a connection may wait here with its last (READ ONLY)
/// transaction's end unsent before that is sent on its own. Under load the
/// next transaction comes sooner and carries it; below that, this bounds
/// how long a read's locks outlive it.
pub const SETTLE: Duration = Duration::from_millis(20);

/// A connection out of sqlx's pool, and since when: see [`VISIT_SQLX_EVERY`].
pub struct Leased {
    conn: PoolConnection<Postgres>,
    since: Instant,
    /// Its last transaction's ROLLBACK is queued on it, unsent.
    owing: bool,
    /// It waited here since its last use (rather than coming from sqlx,
    /// which checks a connection idle for long).
    kept: bool,
    /// The viewer role its last transaction that named one ran as.
    role: Option<&'static str>,
}

impl Leased {
    /// Its queued end has gone out (with whatever statement used it last).
    pub fn settled(&mut self) {
        self.owing = false;
    }

    /// Whether it came out of this stash since its last use, rather than
    /// from sqlx.
    pub fn was_kept(&self) -> bool {
        self.kept
    }
}

impl std::ops::Deref for Leased {
    type Target = PoolConnection<Postgres>;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Leased {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// The stash; see the module doc.
#[derive(Default)]
pub struct Warm {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Most recently ended last, with when it ended.
    idle: Vec<(Leased, Instant)>,
    /// Callers waiting on sqlx for a connection.
    waiting: usize,
    /// Set when the pool closes: nothing is kept any more.
    closed: bool,
    /// The task that sends owed ends ([`SETTLE`]) is running.
    settling: bool,
}

impl Warm {
    /// Starts the task that gives connections idle for [`KEEP_FOR`] back
    /// to sqlx; it ends when the stash is dropped.
    pub fn new() -> Arc<Self> {
        let warm = Arc::new(Self::default());
        let weak: Weak<Self> = Arc::downgrade(&warm);
        tokio::spawn(async move {
            // Four looks per KEEP_FOR: a connection unused for KEEP_FOR goes
            // back within a quarter of it more.
            let mut tick = tokio::time::interval(KEEP_FOR / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(warm) = weak.upgrade() else { return };
                if warm.lock().closed {
                    return;
                }
                // Dropped outside the lock: each drop spawns sqlx's return.
                let stale = warm.take_idle_since(Instant::now().checked_sub(KEEP_FOR));
                drop(warm);
                drop(stale);
            }
        });
        warm
    }

    /// A connection for a transaction that will run as `role` (if it
    /// names one): the most recently ended one kept here that last ran as
    /// `role`, else the most recently ended one, else one from sqlx
    /// (waiting as sqlx waits, up to its acquire timeout).
    pub async fn acquire(&self, pool: &PgPool, role: Option<&'static str>) -> Result<Leased, sqlx::Error> {
        {
            let mut state = self.lock();
            let same_role = role.and_then(|role| state.idle.iter().rposition(|(leased, _)| leased.role == Some(role)));
            if let Some(at) = same_role.or_else(|| state.idle.len().checked_sub(1)) {
                // `remove`, not `swap_remove`: the rest stay in the order
                // they were left, which `take_idle_since` relies on.
                let (mut leased, _) = state.idle.remove(at);
                leased.kept = true;
                leased.role = role.or(leased.role);
                return Ok(leased);
            }
            state.waiting += 1;
        }
        // Counted down however the wait ends, cancellation included.
        let _waiting = Waiting(self);
        // Boxed: sqlx's acquire future, which may open a connection, is
        // 14.5 KB. Inline, it made this future, `Tx::begin`'s and the task
        // every request spawns for it as large: copied each time one was
        // built or moved, and the task a large allocation (issue 11:
        // memmove was 5 % of the server's samples; boxed, 5 % less CPU
        // per request, BENCHMARKS stage 10). Only this path, the rare one,
        // pays for the box.
        let conn = Box::pin(pool.acquire()).await?;
        Ok(Leased { conn, since: Instant::now(), owing: false, kept: false, role })
    }

    /// Takes back the connection of a transaction that ended cleanly.
    pub fn release(&self, leased: Leased) {
        let mut state = self.lock();
        if state.waiting > 0 || state.closed || leased.since.elapsed() >= VISIT_SQLX_EVERY {
            drop(state);
            // sqlx pings it (which sends an owed end first) and hands it to
            // whoever waits longest, or closes it if it has lived long
            // enough.
            drop(leased);
            return;
        }
        state.idle.push((leased, Instant::now()));
    }

    /// [`Warm::release`] for a connection whose transaction's end is
    /// queued on it, unsent: sent within [`SETTLE`] if no transaction
    /// takes the connection first.
    pub fn release_owing(self: &Arc<Self>, mut leased: Leased) {
        leased.owing = true;
        self.release(leased);
        let mut state = self.lock();
        if state.settling || !state.idle.iter().any(|(leased, _)| leased.owing) {
            return;
        }
        state.settling = true;
        drop(state);
        tokio::spawn(settle(Arc::downgrade(self)));
    }

    /// Gives every kept connection back to sqlx and keeps none from now on,
    /// so that closing sqlx's pool (which waits for every connection) ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.give_back_all();
    }

    /// Gives every kept connection back to sqlx, which pings each (sending
    /// an owed end first) and closes those that do not answer: for when
    /// one of them was found lost, as the others likely are (a restart).
    pub fn give_back_all(&self) {
        let idle = std::mem::take(&mut self.lock().idle);
        // Dropped outside the lock: each drop spawns sqlx's return.
        drop(idle);
    }

    /// Connections kept here now, for /metrics (sqlx counts them in use).
    pub fn len(&self) -> usize {
        self.lock().idle.len()
    }

    /// Removes the connections kept here since before `cutoff` (none
    /// while the clock is younger than [`KEEP_FOR`]: `None`).
    fn take_idle_since(&self, cutoff: Option<Instant>) -> Vec<Leased> {
        let Some(cutoff) = cutoff else { return Vec::new() };
        let mut state = self.lock();
        // Oldest first: `idle` is in the order connections were left.
        let stale = state.idle.iter().take_while(|(_, since)| *since < cutoff).count();
        state.idle.drain(..stale).map(|(leased, _)| leased).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing in the critical sections can panic halfway through.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Warm {
    /// sqlx returns a dropped connection with a task of its own, which
    /// needs a runtime: without one (the last pool dropped after its
    /// runtime), the connections are detached from sqlx and closed here.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if state.idle.is_empty() {
            return;
        }
        // With min_connections > 0 (any pool the server opens), sqlx's
        // detach spawns a task that opens a replacement: it gets a
        // throwaway runtime, dropped at once with the task unpolled.
        let Ok(spare) = tokio::runtime::Builder::new_current_thread().build() else {
            // Defensive (a runtime without I/O or timers opens nothing):
            // leaked rather than a panic in a drop.
            state.idle.drain(..).for_each(std::mem::forget);
            return;
        };
        let _entered = spare.enter();
        for (leased, _) in state.idle.drain(..) {
            drop(leased.conn.detach());
        }
    }
}

/// Sends the ends owed by connections that waited here for [`SETTLE`],
/// until none owes one.
async fn settle(warm: Weak<Warm>) {
    loop {
        tokio::time::sleep(SETTLE).await;
        let Some(warm) = warm.upgrade() else { return };
        let (due, more) = {
            let mut state = warm.lock();
            let cutoff = Instant::now().checked_sub(SETTLE);
            let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|(leased, since)| leased.owing && cutoff.is_some_and(|cutoff| *since <= cutoff));
            state.idle = kept;
            let more = state.idle.iter().any(|(leased, _)| leased.owing);
            state.settling = more;
            (due, more)
        };
        // Pinged together, each bounded: one connection that hangs holds up
        // no other. A ping sends what is queued first and waits for it all.
        let pings = due.into_iter().map(|(mut leased, _)| async move {
            match tokio::time::timeout(SETTLE_PING_TIMEOUT, sqlx::Connection::ping(&mut *leased.conn)).await {
                Ok(Ok(())) => {
                    leased.owing = false;
                    Some(leased)
                }
                Ok(Err(_)) | Err(_) => {
                    leased.conn.close_on_drop();
                    None
                }
            }
        });
        for leased in futures_util::future::join_all(pings).await.into_iter().flatten() {
            warm.release(leased);
        }
        if !more {
            return;
        }
    }
}

/// How long [`settle`] waits for one connection's answer before it closes
/// that connection.
const SETTLE_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// One caller waiting on sqlx; see [`Warm::acquire`].
struct Waiting<'a>(&'a Warm);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

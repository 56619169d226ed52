//! The event sources of one connection's shared subscriptions, polled by
//! one task.
//!
//! A subscription whose payloads are shared polls its event source in a
//! task apart from async-graphql's (`stream::driven`). With a task per
//! subscription, the tasks one event wakes run in the order of the
//! broadcast's waiter list, which interleaves every connection's: graphql-ws
//! multiplexes a page's subscriptions over one socket, yet the outbox's
//! batching (the first writer yields once so that the connection's other
//! subscriptions queue theirs, and one `send` carries them all,
//! `http::ws_outbox`) rarely found a sibling's message queued. `bench
//! fanout --per-socket 5` made 0.87 `sendto` calls per delivery, nearly one
//! each. Here the connection's sources are futures of one
//! [`FuturesUnordered`] in one task: the sources an event wakes run back to
//! back in that task's poll, after the first one's write has yielded, so it
//! writes them all at once; and the event wakes one task per connection
//! instead of one per subscription.
//!
//! A connection with one subscription has nothing to batch: its source
//! runs in a task of its own, as the drivers' set of futures would cost
//! every delivery a wake more (and ~1.7 KiB per connection: 9.5 µs per
//! delivery against 8.2 in `bench fanout`). The connection's [`Drivers`]
//! start with its second shared subscription; a source running alone then
//! moves into them within a few wakes.
//!
//! The sources of one connection share its task's cooperative budget
//! (tokio's 128 operations per poll): a connection running many busy
//! subscriptions (up to MAX_OPERATIONS) may have some of them polled at
//! the task's next turn rather than in the same one, unbatched. Its own
//! subscriptions only wait for each other.
//!
//! What a task of its own gave each source is kept: it is stopped when its
//! [`Driver`] is dropped (the subscription's end), and a panic is caught and
//! reported to that subscription alone, the connection's other sources
//! running on. The stop and the report are wrapped around the source
//! before it first runs ([`prepare_in`]) and travel with it from a task of its
//! own into the drivers, so the task it started in ends there; the
//! source's state is inline in that one allocation, and its [`Stop`] where
//! the caller keeps it (a subscription's tap, which its deliveries read
//! anyway). At 10,000 sources each wake is a cache miss per pointer
//! followed: the source behind two boxes of its own, `futures`'
//! `Abortable` with its flag in a third allocation, and a channel of new
//! sources looked at beside the set at every wake were about a tenth of the
//! server's CPU per delivery in `bench fanout --per-socket 5`.
//!
//! Hand-written rather than a crate's: tokio's `JoinSet` and `LocalSet` run
//! each future as a task of its own (one wake and one poll each, as before),
//! and futures' `FuturesUnordered` needs an owner to poll it and a way in for
//! sources that start later, which is this module.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

/// What the drivers' task polls: a source, or the wait for the next one.
type Polled = BoxFuture<'static, Ended>;

/// How one of the drivers' futures ended.
enum Ended {
    /// A source ended, or no more will come (every [`Drivers`] dropped).
    Done,
    /// A source was handed over, and the channel the next one comes by.
    Arrival { source: Polled, started: mpsc::UnboundedReceiver<Polled> },
}

/// Waits for the next source handed to the drivers: itself one of the
/// futures the task polls, so the channel is looked at only when a source
/// arrives. Polling it beside the set (a `select!`) looked at it at every
/// wake of the task, each event's: 4 % of the server's CPU in `bench fanout
/// --per-socket 5`, for a channel that is nearly always empty.
fn arrival(mut started: mpsc::UnboundedReceiver<Polled>) -> Polled {
    async move {
        match started.recv().await {
            Some(source) => Ended::Arrival { source, started },
            None => Ended::Done,
        }
    }
    .boxed()
}

/// Where a connection's event sources run; cheap to clone. The task ends
/// once every clone is dropped and the sources it still polls have ended
/// (stopped with their subscriptions when the connection closes).
#[derive(Clone)]
pub struct Drivers {
    start: mpsc::UnboundedSender<Polled>,
}

impl Drivers {
    /// Starts the connection's task.
    fn start() -> Self {
        let (start, started) = mpsc::unbounded_channel::<Polled>();
        tokio::spawn(async move {
            let mut running = FuturesUnordered::new();
            running.push(arrival(started));
            while let Some(ended) = running.next().await {
                if let Ended::Arrival { source, started } = ended {
                    running.push(source);
                    running.push(arrival(started));
                }
            }
        });
        Self { start }
    }

    /// Runs `wrapped` in this connection's task (or, should that task be
    /// gone, which it cannot be while a clone of `self` lives, in one of
    /// its own rather than not at all).
    fn hand(&self, wrapped: Polled) {
        if let Err(mpsc::error::SendError(wrapped)) = self.start.send(wrapped) {
            tokio::spawn(wrapped);
        }
    }
}

/// How often (in wakes) a source running alone looks for company.
pub const LOOK_EVERY: u32 = 16;

/// One connection's shared subscriptions' sources: how many run, and the
/// [`Drivers`], started when a second one does (other operations, a query
/// over the socket, do not count).
#[derive(Default)]
pub struct Company {
    sources: AtomicUsize,
    drivers: OnceLock<Drivers>,
}

/// A source's place in its [`Company`], given up when its driver drops.
struct Member(Arc<Company>);

impl Drop for Member {
    fn drop(&mut self) {
        self.0.sources.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a source's [`Driver`] stops it: set, and the source's task woken,
/// when the driver drops; looked at before each poll of the source. One
/// source's: once stopped, it stays so (a subscription's tap serves its one
/// source; a second would share its waker and its stop).
///
/// Its own allocation would be one more cache miss at each wake of 10,000
/// sources (`futures`' `Abortable` was 4 % of the server's CPU in `bench
/// fanout --per-socket 5`, nearly all of it that load), so a caller may keep
/// it in memory the source touches anyway ([`Stoppable`], [`prepare_in`]).
#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

impl Stop {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// True once stopped; else wakes `cx` when it is.
    fn poll_stopped(&self, cx: &Context<'_>) -> bool {
        if self.stopped.load(Ordering::Acquire) {
            return true;
        }
        self.waker.register(cx.waker());
        self.stopped.load(Ordering::Acquire)
    }
}

/// Where a source's [`Stop`] lives.
pub trait Stoppable: Send + Sync + 'static {
    fn stop_flag(&self) -> &Stop;
}

impl Stoppable for Stop {
    fn stop_flag(&self) -> &Stop {
        self
    }
}

/// A source made ready to run, not started: its stop and its panic report
/// travel with it, from a task of its own into the drivers, in one
/// allocation with the source's state (see [`prepare_in`]).
pub struct Prepared<S: ?Sized + Stoppable = Stop> {
    running: Running<S>,
    wrapped: Polled,
}

/// Wraps `source` to run with [`Prepared::run`], its [`Stop`] in `stop`.
/// Made ahead of the run so that a caller can hold it, a few words, until
/// the source should start, and the source's state is still in the one
/// allocation the drivers poll: a pointer fewer to follow at each wake of
/// 10,000 sources (a cache miss each).
pub fn prepare_in<F, S>(source: F, stop: Arc<S>) -> Prepared<S>
where
    F: Future<Output = ()> + Send + 'static,
    S: ?Sized + Stoppable,
{
    let (report, outcome) = oneshot::channel();
    let wrapped = Wrapped { source: Some(source), stop: stop.clone(), report: Some(report) };
    Prepared { running: Running { stop, outcome }, wrapped: Box::pin(wrapped) }
}

/// [`prepare_in`] with a [`Stop`] of its own (tests: the server keeps a
/// subscription's in its tap).
#[cfg(test)]
pub fn prepare<F: Future<Output = ()> + Send + 'static>(source: F) -> Prepared {
    prepare_in(source, Arc::new(Stop::default()))
}

/// Runs `source` (see [`Prepared::run`]; tests).
#[cfg(test)]
pub fn run<F: Future<Output = ()> + Send + 'static>(source: F, company: &Arc<Company>) -> Driver {
    prepare(source).run(company)
}

impl<S: ?Sized + Stoppable> Prepared<S> {
    /// Runs the source: with the connection's other sources if it has
    /// company, else in a task of its own, which hands it over to the
    /// company within [`LOOK_EVERY`] wakes after that starts, and ends.
    pub fn run(self, company: &Arc<Company>) -> Driver<S> {
        let Self { running, wrapped } = self;
        let member = Member(company.clone());
        if company.sources.fetch_add(1, Ordering::Relaxed) >= 1 {
            company.drivers.get_or_init(Drivers::start);
        }
        match company.drivers.get() {
            Some(drivers) => drivers.hand(wrapped),
            None => alone(wrapped, company.clone()),
        }
        Driver { running, _member: member }
    }
}

/// Polls `wrapped` in a task of its own until it ends or the connection's
/// drivers start, then hands it to them.
fn alone(mut wrapped: Polled, company: Arc<Company>) {
    tokio::spawn(async move {
        // Looked at every LOOK_EVERY wakes, not each: the company is in
        // memory of its own, a cache miss per delivery of a lone source
        // (2 % of its CPU in `bench fanout`); the first wake looks too.
        let mut wakes = 0_u32;
        let joined = std::future::poll_fn(|cx| {
            wakes = wakes.wrapping_add(1);
            if wakes % LOOK_EVERY == 1
                && let Some(drivers) = company.drivers.get()
            {
                return Poll::Ready(Some(drivers.clone()));
            }
            wrapped.as_mut().poll(cx).map(|_| None)
        })
        .await;
        if let Some(drivers) = joined {
            drivers.hand(wrapped);
        }
    });
}

/// One source as it runs: stopped when dropped.
pub struct Driver<S: ?Sized + Stoppable = Stop> {
    running: Running<S>,
    _member: Member,
}

impl<S: ?Sized + Stoppable> Driver<S> {
    /// Waits for the source's end: true if it panicked (or the task that
    /// ran it did, which a source's end must not be mistaken for).
    pub async fn panicked(&mut self) -> bool {
        (&mut self.running.outcome).await.unwrap_or(true)
    }
}

/// The source's end as its [`Driver`] sees it.
struct Running<S: ?Sized + Stoppable> {
    stop: Arc<S>,
    /// True when the source panicked; closed without a value when it was
    /// stopped (only ever by this `Running`'s drop) or when the task that
    /// polled it ended without it (a panic there, the runtime shutting
    /// down).
    outcome: oneshot::Receiver<bool>,
}

impl<S: ?Sized + Stoppable> Drop for Running<S> {
    fn drop(&mut self) {
        self.stop.stop_flag().stop();
    }
}

pin_project_lite::pin_project! {
    /// A source with its stop and its panic report. Written out rather
    /// than an `async` block: one moving the source into a pinned local
    /// would keep a second, unused copy of the source's space (memory per
    /// idle subscriber).
    struct Wrapped<F, S: ?Sized> {
        #[pin]
        source: Option<F>,
        stop: Arc<S>,
        report: Option<oneshot::Sender<bool>>,
    }
}

impl<F: Future<Output = ()>, S: ?Sized + Stoppable> Future for Wrapped<F, S> {
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(source) = this.source.as_mut().as_pin_mut() else { return Poll::Ready(Ended::Done) };
        let stopped = this.stop.stop_flag().poll_stopped(cx);
        let result = if stopped {
            Ok(())
        } else {
            // Unwinding out of a source leaves nothing of the task's other
            // sources half done: each holds only its own state.
            match std::panic::catch_unwind(AssertUnwindSafe(|| source.poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) => Ok(()),
                Err(_panic) => Err(()),
            }
        };
        // Dropped in a catch too: a panic in a source's drop (its state's
        // destructors run here, not while polling) must not end the task,
        // and with it the connection's other sources.
        let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| this.source.set(None)));
        let panicked = result.is_err() || dropped.is_err();
        if (!stopped || panicked)
            && let Some(report) = this.report.take()
        {
            let _ = report.send(panicked);
        }
        Poll::Ready(Ended::Done)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    use tokio::sync::mpsc::unbounded_channel;

    use super::*;

    /// `future`'s output, or a failure after 5 s (not a hung test).
    async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future).await.unwrap_or_else(|_| panic!("{what}: not within 5 s"))
    }

    /// A source that reports which task polls it for each event it gets,
    /// and panics at the event "panic".
    fn reporting(
        mut events: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
        seen: tokio::sync::mpsc::UnboundedSender<Option<tokio::task::Id>>,
    ) -> BoxFuture<'static, ()> {
        async move {
            while let Some(event) = events.recv().await {
                assert_ne!(event, "panic", "a source's bug");
                let _ = seen.send(tokio::task::try_id());
            }
        }
        .boxed()
    }

    #[tokio::test]
    async fn a_panicking_source_is_reported_to_its_own_driver_and_the_others_run_on() {
        let company = Arc::new(Company::default());
        let (steady_events, events) = unbounded_channel();
        let (seen, mut saw) = unbounded_channel();
        let _steady = run(reporting(events, seen.clone()), &company);
        let (panicking_events, events) = unbounded_channel();
        let mut panicking = run(reporting(events, seen), &company);
        assert!(company.drivers.get().is_some(), "two sources: the drivers started");

        panicking_events.send("panic").unwrap_or_else(|_| panic!("the source is gone"));
        assert!(within("the panic reported", panicking.panicked()).await);

        steady_events.send("still there").unwrap_or_else(|_| panic!("the steady source is gone"));
        within("the other source polled", saw.recv()).await.unwrap_or_else(|| panic!("the other source is gone"));
    }

    #[tokio::test]
    async fn a_dropped_driver_stops_its_source_alone_or_in_company() {
        for sources in [1, 2] {
            let company = Arc::new(Company::default());
            let mut kept = Vec::new();
            let mut senders = Vec::new();
            let (seen, mut saw) = unbounded_channel();
            for _ in 0..sources {
                let (send, events) = unbounded_channel();
                kept.push(run(reporting(events, seen.clone()), &company));
                senders.push(send);
            }
            // Running: it takes an event.
            senders[0].send("one").unwrap_or_else(|_| panic!("the source is gone"));
            within("polled", saw.recv()).await;

            drop(kept.remove(0));

            // The source (which holds the receiving end) is gone.
            within("the source gone with its driver", senders[0].closed()).await;
            assert_eq!(company.sources.load(Ordering::Relaxed), sources - 1, "its place given up");
        }
    }

    #[tokio::test]
    async fn a_source_running_alone_moves_into_its_connections_drivers_when_a_second_one_starts() {
        // Arrange: one source alone.
        let company = Arc::new(Company::default());
        let (events, received) = unbounded_channel();
        let (seen, mut saw) = unbounded_channel();
        let mut driver = run(reporting(received, seen.clone()), &company);
        events.send("alone").unwrap_or_else(|_| panic!("the source is gone"));
        let alone = within("polled alone", saw.recv()).await;
        assert!(company.drivers.get().is_none(), "one source: no drivers");

        // Act: a second source starts the drivers; events wake the first.
        let (_second_events, second) = unbounded_channel();
        let _second = run(reporting(second, seen), &company);
        let mut moved = false;
        for _ in 0..=LOOK_EVERY {
            events.send("in company").unwrap_or_else(|_| panic!("the source is gone"));
            if within("polled", saw.recv()).await != alone {
                moved = true;
                break;
            }
        }

        // Assert: polled by another task now (the drivers'), and its panic
        // is still its own driver's to report.
        assert!(moved, "moved into the drivers' task within {LOOK_EVERY} wakes");
        events.send("panic").unwrap_or_else(|_| panic!("the source is gone"));
        assert!(within("the panic reported", driver.panicked()).await);
    }

    #[tokio::test]
    async fn a_source_that_moved_into_the_drivers_leaves_no_task_of_its_own_behind() {
        let alive = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let before = alive();
        let company = Arc::new(Company::default());
        let (events, received) = unbounded_channel();
        let (seen, mut saw) = unbounded_channel();
        let _first = run(reporting(received, seen.clone()), &company);
        assert_eq!(alive(), before + 1, "alone: a task of its own");
        // Polled once alone, so that it next looks for company only
        // LOOK_EVERY wakes later.
        events.send("alone").unwrap_or_else(|_| panic!("the source is gone"));
        within("polled alone", saw.recv()).await;
        let (_second_events, second) = unbounded_channel();
        let _second = run(reporting(second, seen), &company);
        assert_eq!(alive(), before + 2, "the drivers' task too");

        // Woken often enough to look for its company again, the first moves.
        for _ in 0..=LOOK_EVERY {
            events.send("wake").unwrap_or_else(|_| panic!("the source is gone"));
            within("polled", saw.recv()).await;
        }

        within("only the drivers' task left", async {
            while alive() > before + 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        events.send("still running").unwrap_or_else(|_| panic!("the source is gone"));
        within("polled by the drivers", saw.recv()).await.unwrap_or_else(|| panic!("the source is gone"));
    }

    #[tokio::test]
    async fn a_panic_in_a_sources_drop_is_its_own_and_the_drivers_run_on() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("a source's state panicking as it is dropped");
            }
        }
        let company = Arc::new(Company::default());
        let (steady_events, events) = unbounded_channel();
        let (seen, mut saw) = unbounded_channel();
        let _steady = run(reporting(events, seen), &company);
        let mut bomb = run(
            async {
                let _bomb = Bomb;
            }
            .boxed(),
            &company,
        );
        assert!(within("the drop's panic reported", bomb.panicked()).await);
        steady_events.send("still there").unwrap_or_else(|_| panic!("the steady source is gone"));
        within("the other source polled", saw.recv()).await.unwrap_or_else(|| panic!("the other source is gone"));
    }

    #[tokio::test]
    async fn the_drivers_task_ends_with_the_connections_last_source() {
        let alive = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let before = alive();
        let company = Arc::new(Company::default());
        let first = run(std::future::pending().boxed(), &company);
        let second = run(std::future::pending().boxed(), &company);
        assert!(alive() > before);

        drop((first, second, company));

        within("every task of the connection ended", async {
            while alive() > before {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
}

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
//! What a task of its own gave each source is kept: it is aborted when its
//! [`Driver`] is dropped (the subscription's end), and a panic is caught and
//! reported to that subscription alone, the connection's other sources
//! running on.
//!
//! Hand-written rather than a crate's: tokio's `JoinSet` and `LocalSet` run
//! each future as a task of its own (one wake and one poll each, as before),
//! and futures' `FuturesUnordered` needs an owner to poll it and a way in for
//! sources that start later, which is this module.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use futures_util::future::{AbortHandle, Abortable, BoxFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

/// Where a connection's event sources run; cheap to clone. The task ends
/// once every clone is dropped and the sources it still polls have ended
/// (aborted with their subscriptions when the connection closes).
#[derive(Clone)]
pub struct Drivers {
    start: mpsc::UnboundedSender<BoxFuture<'static, ()>>,
}

impl Drivers {
    /// Starts the connection's task.
    fn start() -> Self {
        let (start, mut started) = mpsc::unbounded_channel::<BoxFuture<'static, ()>>();
        tokio::spawn(async move {
            let mut running = FuturesUnordered::new();
            loop {
                tokio::select! {
                    biased;
                    source = started.recv() => match source {
                        Some(source) => running.push(source),
                        None => break,
                    },
                    Some(()) = running.next(), if !running.is_empty() => {}
                }
            }
            while running.next().await.is_some() {}
        });
        Self { start }
    }

    /// Runs `source` in this connection's task (or, should that task be
    /// gone, which it cannot be while a clone of `self` lives, in one of
    /// its own rather than not at all).
    fn run(&self, source: BoxFuture<'static, ()>) -> Running {
        let (running, wrapped) = Running::wrap(source);
        if let Err(mpsc::error::SendError(wrapped)) = self.start.send(wrapped) {
            tokio::spawn(wrapped);
        }
        running
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

/// Runs `source`: with the connection's other sources if it has company,
/// else in a task of its own, which hands it over to the company within
/// [`LOOK_EVERY`] wakes after that starts.
pub fn run(source: BoxFuture<'static, ()>, company: &Arc<Company>) -> Driver {
    let member = Member(company.clone());
    if company.sources.fetch_add(1, Ordering::Relaxed) >= 1 {
        company.drivers.get_or_init(Drivers::start);
    }
    if let Some(drivers) = company.drivers.get() {
        return Driver { running: drivers.run(source), _member: member };
    }
    let company = company.clone();
    let task = tokio::spawn(async move {
        let mut source = source;
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
            source.as_mut().poll(cx).map(|()| None)
        })
        .await;
        let Some(drivers) = joined else { return };
        // This task stays, standing for the source: aborted (the
        // subscription's end), it drops `running`, which aborts the
        // source; the source's panic is this task's.
        let mut running = drivers.run(source);
        if running.panicked().await {
            std::panic::resume_unwind(Box::new("a subscription's event source panicked"));
        }
    });
    Driver { running: Running::Task(task), _member: member }
}

/// One source as it runs: aborted when dropped.
pub struct Driver {
    running: Running,
    _member: Member,
}

impl Driver {
    /// Waits for the source's end: true if it panicked (or the task that
    /// ran it did, which a source's end must not be mistaken for).
    pub async fn panicked(&mut self) -> bool {
        self.running.panicked().await
    }
}

enum Running {
    /// In a task of its own: the task's handle says it all, at no cost
    /// per poll.
    Task(tokio::task::JoinHandle<()>),
    /// In a connection's task ([`Drivers::run`]).
    Shared {
        abort: AbortHandle,
        /// True when the source panicked; closed without a value when it
        /// was aborted (only ever by this `Running`'s drop) or when the
        /// drivers' task ended without it (a panic there, the runtime
        /// shutting down).
        outcome: oneshot::Receiver<bool>,
    },
}

impl Running {
    fn wrap(source: BoxFuture<'static, ()>) -> (Self, BoxFuture<'static, ()>) {
        let (abort, registration) = AbortHandle::new_pair();
        let (report, outcome) = oneshot::channel();
        let wrapped = async move {
            let mut source = Some(Abortable::new(source, registration));
            // Unwinding out of a source leaves nothing of the task's other
            // sources half done: each holds only its own state.
            let result = AssertUnwindSafe(async {
                match source.as_mut() {
                    Some(source) => source.await,
                    None => Ok(()),
                }
            })
            .catch_unwind()
            .await;
            // Dropped in a catch too: a panic in a source's drop (its
            // state's destructors run here, not while polling) must not
            // end the task, and with it the connection's other sources.
            let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| drop(source.take())));
            let panicked = result.is_err() || dropped.is_err();
            if matches!(result, Ok(Err(_aborted))) && !panicked {
                return;
            }
            let _ = report.send(panicked);
        };
        (Self::Shared { abort, outcome }, wrapped.boxed())
    }

    async fn panicked(&mut self) -> bool {
        match self {
            Self::Task(task) => task.await.is_err_and(|err| err.is_panic()),
            Self::Shared { outcome, .. } => outcome.await.unwrap_or(true),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Self::Task(task) => task.abort(),
            Self::Shared { abort, .. } => abort.abort(),
        }
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

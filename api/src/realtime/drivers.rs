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
//! delivery against 8.2 in `bench fanout`). The connection's [`Company`] is
//! started with its second subscription; a source running alone then moves
//! into it within a few wakes.
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
    pub fn start() -> Self {
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
    pub fn run(&self, source: BoxFuture<'static, ()>) -> Driver {
        let (driver, wrapped) = Driver::wrap(source);
        if let Err(mpsc::error::SendError(wrapped)) = self.start.send(wrapped) {
            tokio::spawn(wrapped);
        }
        driver
    }
}

/// How often (in wakes) a source running alone looks for company.
pub const LOOK_EVERY: u32 = 16;

/// A connection's [`Drivers`], once it has a second subscription.
pub type Company = Arc<OnceLock<Drivers>>;

/// Runs `source`: with the connection's other sources if it has company,
/// else in a task of its own, which hands it over to the company within
/// [`LOOK_EVERY`] wakes after that starts.
pub fn run(source: BoxFuture<'static, ()>, company: &Company) -> Driver {
    if let Some(drivers) = company.get() {
        return drivers.run(source);
    }
    let company = company.clone();
    Driver::Task(tokio::spawn(async move {
        let mut source = source;
        // Looked at every LOOK_EVERY wakes, not each: the company is in
        // memory of its own, a cache miss per delivery of a lone source
        // (2 % of its CPU in `bench fanout`); the first wake looks too.
        let mut wakes = 0_u32;
        let joined = std::future::poll_fn(|cx| {
            wakes = wakes.wrapping_add(1);
            if wakes % LOOK_EVERY == 1
                && let Some(drivers) = company.get()
            {
                return Poll::Ready(Some(drivers.clone()));
            }
            source.as_mut().poll(cx).map(|()| None)
        })
        .await;
        let Some(drivers) = joined else { return };
        // This task stays, standing for the source: aborted (the
        // subscription's end), it drops `driver`, which aborts the source;
        // the source's panic is this task's.
        let mut driver = drivers.run(source);
        if driver.panicked().await {
            std::panic::resume_unwind(Box::new("a subscription's event source panicked"));
        }
    }))
}

/// One source as it runs: aborted when dropped.
pub enum Driver {
    /// In a task of its own ([`run`] without company): the task's handle
    /// says it all, at no cost per poll.
    Task(tokio::task::JoinHandle<()>),
    /// In a connection's task ([`Drivers::run`]).
    Shared {
        abort: AbortHandle,
        /// True when the source panicked; closed without a value when it
        /// was aborted or its task dropped (the runtime shutting down).
        outcome: oneshot::Receiver<bool>,
    },
}

impl Driver {
    fn wrap(source: BoxFuture<'static, ()>) -> (Self, BoxFuture<'static, ()>) {
        let (abort, registration) = AbortHandle::new_pair();
        let (report, outcome) = oneshot::channel();
        let wrapped = async move {
            // Unwinding out of a source leaves nothing of the task's other
            // sources half done: each holds only its own state.
            let result = AssertUnwindSafe(Abortable::new(source, registration)).catch_unwind().await;
            if let Ok(Err(_aborted)) = result {
                return;
            }
            let _ = report.send(result.is_err());
        };
        (Self::Shared { abort, outcome }, wrapped.boxed())
    }

    /// Waits for the source's end: true if it panicked.
    pub async fn panicked(&mut self) -> bool {
        match self {
            Self::Task(task) => task.await.is_err_and(|err| err.is_panic()),
            Self::Shared { outcome, .. } => outcome.await.unwrap_or(false),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        match self {
            Self::Task(task) => task.abort(),
            Self::Shared { abort, .. } => abort.abort(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_panicking_source_is_reported_to_its_own_driver_and_the_others_run_on() {
        let drivers = Drivers::start();
        let ticks = Arc::new(AtomicUsize::new(0));
        let counted = ticks.clone();
        let (go, wait) = oneshot::channel::<()>();
        let _steady = drivers.run(
            async move {
                let _ = wait.await;
                counted.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            .boxed(),
        );
        let mut panicking = drivers.run(async { panic!("a source's bug") }.boxed());
        assert!(panicking.panicked().await);
        go.send(()).unwrap_or_else(|()| panic!("the steady source is gone"));
        tokio::time::timeout(Duration::from_secs(5), async {
            while ticks.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the other source stopped with the panicking one"));
        let mut ended = drivers.run(async {}.boxed());
        assert!(!ended.panicked().await);
    }

    #[tokio::test]
    async fn a_dropped_driver_stops_its_source() {
        let drivers = Drivers::start();
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = Flag(dropped.clone());
        let driver = drivers.run(
            async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            }
            .boxed(),
        );
        tokio::task::yield_now().await;
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(driver);
        tokio::time::timeout(Duration::from_secs(5), async {
            while dropped.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the source outlived its driver"));
        let mut alone = run(async { panic!("alone") }.boxed(), &Company::default());
        assert!(alone.panicked().await);
    }

    #[tokio::test]
    async fn a_source_running_alone_moves_into_its_connections_company_and_stays_in_its_drivers_hands() {
        // Arrange: a source alone, woken by `events`, saying which task
        // polls it.
        let company = Company::default();
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        let (seen, mut saw) = tokio::sync::mpsc::unbounded_channel::<(&'static str, Option<tokio::task::Id>)>();
        let mut driver = run(
            async move {
                while let Some(event) = received.recv().await {
                    if event == "panic" {
                        panic!("a source's bug");
                    }
                    let _ = seen.send((event, tokio::task::try_id()));
                }
            }
            .boxed(),
            &company,
        );
        events.send("alone").unwrap_or_else(|_| panic!("the source is gone"));
        let (_, alone) = saw.recv().await.unwrap_or_else(|| panic!("polled alone"));

        // Act: company starts; the next events wake the source.
        company.get_or_init(Drivers::start);
        let mut moved = false;
        for _ in 0..=LOOK_EVERY {
            events.send("in company").unwrap_or_else(|_| panic!("the source is gone"));
            let (_, polled_by) = saw.recv().await.unwrap_or_else(|| panic!("polled in company"));
            if polled_by != alone {
                moved = true;
                break;
            }
        }

        // Assert: polled by another task now (the drivers'), and its panic
        // is still its own driver's to report.
        assert!(moved, "moved into the drivers' task within {LOOK_EVERY} wakes");
        events.send("panic").unwrap_or_else(|_| panic!("the source is gone"));
        assert!(driver.panicked().await);
    }

    #[tokio::test]
    async fn a_source_that_moved_into_company_stops_when_its_driver_is_dropped() {
        let company = Company::default();
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (seen, mut saw) = tokio::sync::mpsc::unbounded_channel::<Option<tokio::task::Id>>();
        let driver = run(
            async move {
                while received.recv().await.is_some() {
                    let _ = seen.send(tokio::task::try_id());
                }
            }
            .boxed(),
            &company,
        );
        let mut polled_by = Vec::new();
        events.send(()).unwrap_or_else(|_| panic!("the source is gone"));
        polled_by.push(saw.recv().await.unwrap_or_else(|| panic!("polled")));
        company.get_or_init(Drivers::start);
        for _ in 0..=LOOK_EVERY {
            events.send(()).unwrap_or_else(|_| panic!("the source is gone"));
            polled_by.push(saw.recv().await.unwrap_or_else(|| panic!("polled")));
        }
        assert_ne!(polled_by.first(), polled_by.last(), "moved into the drivers' task");

        drop(driver);

        // The source (which holds the receiving end) is gone.
        tokio::time::timeout(Duration::from_secs(5), events.closed())
            .await
            .unwrap_or_else(|_| panic!("the source outlived its driver"));
    }
}

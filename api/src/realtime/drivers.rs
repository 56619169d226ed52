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

    /// Runs `source` in this connection's task; `None` when that task is
    /// gone (it cannot be while a clone of `self` lives, but a source is
    /// then run in a task of its own rather than lost).
    pub fn run(&self, source: BoxFuture<'static, ()>) -> Driver {
        let (driver, source) = Driver::wrap(source);
        if let Err(mpsc::error::SendError(source)) = self.start.send(source) {
            tokio::spawn(source);
        }
        driver
    }
}

/// Runs `source` in a task of its own (no connection to share one with).
pub fn run_alone(source: BoxFuture<'static, ()>) -> Driver {
    let (driver, source) = Driver::wrap(source);
    tokio::spawn(source);
    driver
}

/// One source as it runs: aborted when dropped.
pub struct Driver {
    abort: AbortHandle,
    /// True when the source panicked; closed without a value when it was
    /// aborted or its task dropped (the runtime shutting down).
    outcome: oneshot::Receiver<bool>,
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
        (Self { abort, outcome }, wrapped.boxed())
    }

    /// Waits for the source's end: true if it panicked.
    pub async fn panicked(&mut self) -> bool {
        (&mut self.outcome).await.unwrap_or(false)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.abort.abort();
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
        let mut alone = run_alone(async { panic!("alone") }.boxed());
        assert!(alone.panicked().await);
    }
}

//! A websocket's outgoing messages, written to the socket by the tasks that
//! produce them, several frames per write where they can be.
//!
//! The profile of a fan-out (`bench fanout`, issue 13) put most of the
//! server's CPU in the kernel's `sendto`, one per delivery, and a task hop
//! per delivery in front of it (each subscription's task handed its message
//! to the connection's writer task through a channel). Here there is no
//! writer task: a producer queues its message, and if nobody is writing to
//! the socket it becomes the writer, and writes everything queued (its own
//! message and whatever other operations of the connection queued
//! meanwhile) as frames into one buffer, then flushes once. A producer that
//! finds another writing leaves its message to that writer, so it never
//! waits for a socket it does not have to (unless the queue is full:
//! [`OUTBOX`] bounds what a slow reader can make the server hold, and the
//! producer then waits its turn, which holds back only this connection's
//! subscriptions; they catch up from the change log).
//!
//! Frames leave in queue order. A message is taken off the queue only once
//! the sink is ready to accept it, in the same poll that hands it to the
//! sink: a writer cancelled in between (its subscription aborted by a
//! `complete`) loses nothing of the other operations' messages, and a frame
//! the sink accepted but did not flush yet goes out with the next write.
//!
//! Batching: when a connection carries several subscriptions (graphql-ws
//! multiplexes them over one socket), one event wakes all of them at once;
//! the writer yields once before writing, so the others have queued theirs
//! and one write carries all. A lone subscription writes at once. A stream
//! that knows more deliveries follow right away (its broadcast holds more
//! events) queues without writing ([`Outbox::queue`]) and flushes with the
//! last.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{Sink, SinkExt};

/// Messages queued per connection before a producer waits for the socket.
pub const OUTBOX: usize = 64;

/// How long one write may take to reach the client's socket; a client
/// that stops reading is disconnected instead of pinning its tasks.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

type WsSink = SplitSink<WebSocket, Message>;

#[derive(Default)]
struct Queue {
    messages: VecDeque<Message>,
    /// The socket is closed, failed or timed out: messages are dropped.
    closed: bool,
}

/// One connection's outgoing messages and its socket's write half.
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Held by whoever writes now; `None` once the socket is done.
    sink: tokio::sync::Mutex<Option<WsSink>>,
    /// Subscriptions running on the connection: with more than one, a
    /// writer waits a moment for the others' frames (see the module docs).
    operations: AtomicUsize,
}

impl Outbox {
    pub fn new(sink: WsSink) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            sink: tokio::sync::Mutex::new(Some(sink)),
            operations: AtomicUsize::new(0),
        }
    }

    /// Tells the outbox how many subscriptions the connection runs.
    pub fn set_operations(&self, n: usize) {
        self.operations.store(n, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `message` and returns the number queued; false when the socket is done.
    fn push(&self, message: Message) -> Option<usize> {
        let mut queue = self.lock();
        if queue.closed {
            return None;
        }
        queue.messages.push_back(message);
        Some(queue.messages.len())
    }

    /// Sends `message`: written now by this task, or by the task writing
    /// right now. False when the socket is done.
    pub async fn send(&self, message: Message) -> bool {
        let Some(queued) = self.push(message) else { return false };
        self.write(queued > OUTBOX).await;
        true
    }

    /// Queues `message` without writing, when more follow at once; the
    /// next [`Outbox::send`] or [`Outbox::flush`] writes it. Waits for the
    /// socket if the queue is full. False when the socket is done.
    pub async fn queue(&self, message: Message) -> bool {
        let Some(queued) = self.push(message) else { return false };
        if queued > OUTBOX {
            self.write(true).await;
        }
        true
    }

    /// Writes whatever is queued.
    pub async fn flush(&self) {
        if !self.lock().messages.is_empty() {
            self.write(false).await;
        }
    }

    /// Sends `message` and returns once it is out (or the socket is done):
    /// the close frame, which shutdown waits for.
    pub async fn send_and_wait(&self, message: Message) {
        if self.push(message).is_some() {
            self.write(true).await;
        }
    }

    /// Writes the queue. `wait`: wait for a writer at work to finish and
    /// write after it (a full queue, or the caller needs its message out);
    /// otherwise leave the queue to it.
    async fn write(&self, mut wait: bool) {
        loop {
            let mut sink = if wait {
                self.sink.lock().await
            } else {
                match self.sink.try_lock() {
                    Ok(sink) => sink,
                    Err(_) => return,
                }
            };
            if self.operations.load(Ordering::Relaxed) > 1 {
                // The connection's other subscriptions were woken by the
                // same event: let them queue theirs, then write all at once.
                tokio::task::yield_now().await;
            }
            self.drain(&mut sink).await;
            drop(sink);
            // A message queued after the last look at the queue but before
            // the sink was released found it taken: write it now.
            if self.lock().messages.is_empty() {
                return;
            }
            wait = false;
        }
    }

    /// Feeds every queued message to the sink and flushes once; on an
    /// error, a timeout or a close frame the socket is done.
    async fn drain(&self, slot: &mut Option<WsSink>) {
        let Some(sink) = slot.as_mut() else {
            self.close_queue();
            return;
        };
        // The timeout is per step, not for the whole queue: a client that
        // reads steadily but slowly keeps its socket while others keep
        // queueing; one that stops reading for SEND_TIMEOUT loses it.
        let written = async {
            loop {
                // Ready first, then off the queue and into the sink in one
                // go: cancelled at the await, the message stays queued.
                let ready = std::future::poll_fn(|cx| Sink::poll_ready(std::pin::Pin::new(&mut *sink), cx));
                tokio::time::timeout(SEND_TIMEOUT, ready).await.map_err(axum::Error::new)??;
                let Some(message) = self.lock().messages.pop_front() else { break };
                let closing = matches!(message, Message::Close(_));
                sink.start_send_unpin(message)?;
                if closing {
                    tokio::time::timeout(SEND_TIMEOUT, sink.flush()).await.map_err(axum::Error::new)??;
                    return Ok(false);
                }
            }
            tokio::time::timeout(SEND_TIMEOUT, sink.flush()).await.map_err(axum::Error::new)??;
            Ok::<bool, axum::Error>(true)
        }
        .await;
        if !matches!(written, Ok(true)) {
            *slot = None;
            self.close_queue();
        }
    }

    fn close_queue(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.messages = VecDeque::new();
    }
}

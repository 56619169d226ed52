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
//! The writer encodes the frames itself and writes them on the socket's
//! write half (`ws_socket`: no tungstenite sink, no lock shared with the
//! reader): with `try_write_vectored` (payloads not copied), or, under
//! [`SMALL_WRITE`] bytes, as one copied buffer with `try_write`. When the
//! socket would block it awaits `writable()` and goes on; a batch must be
//! out within SEND_TIMEOUT of its first wait.
//!
//! Frames leave in queue order. The writer moves a batch of them off the
//! queue into the writer's own state, behind the writer's lock, and drops
//! each only once the kernel took all of its bytes: a writer cancelled at
//! its one await (its subscription aborted by a `complete`) loses nothing
//! of the other operations' messages, and the next writer carries on where
//! it stopped, mid-frame if need be.
//!
//! Batching: when a connection carries several subscriptions (graphql-ws
//! multiplexes them over one socket), one event wakes all of them at once;
//! the writer yields once before writing, so the others have queued theirs
//! and one write carries all. A lone subscription writes at once. A stream
//! that knows more deliveries follow right away (its broadcast holds more
//! events) queues without writing ([`Outbox::queue`]) and flushes with the
//! last.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::Message;
use prometheus_client::metrics::counter::Counter;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::serve::ConnectionSlot;
use super::ws_socket::Frame;

/// Messages queued per connection before a producer waits for the socket.
pub const OUTBOX: usize = 64;

/// How long one write may take to reach the client's socket; a client
/// that stops reading is disconnected instead of pinning its tasks.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of frames handed to one write, when several are queued.
const WRITE_BATCH: usize = 64 * 1024;
/// Frames handed to one write (two slices each; IOV_MAX is 1024).
const WRITE_FRAMES: usize = 32;

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// The socket is closed, failed or timed out: messages are dropped.
    closed: bool,
}

/// The writing side: the socket's write half, and the frames taken off the
/// queue for the write in progress.
struct Writer {
    /// `None` once the socket is done (dropping it sends the FIN).
    socket: Option<OwnedWriteHalf>,
    /// Oldest first; the first has `written` of its bytes out already.
    batch: VecDeque<Frame>,
    written: usize,
    /// When the batch first had to wait for the socket: all of it must be
    /// out within SEND_TIMEOUT of that, so a client that reads a trickle
    /// (a few bytes before each timeout) cannot hold the writer for ever.
    waiting_since: Option<Instant>,
}

/// One connection's outgoing messages and its socket's write half.
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Held by whoever writes now.
    writer: tokio::sync::Mutex<Writer>,
    /// Subscriptions running on the connection: with more than one, a
    /// writer waits a moment for the others' frames (see the module docs).
    operations: AtomicUsize,
    /// Told when tungstenite queued a reply (Pong, Close) that no task
    /// writes yet: the connection's task writes it (see `ws::serve`).
    replies: Notify,
    /// Its place under MAX_CONNECTIONS, until both halves are gone (the
    /// read half holds this outbox).
    _slot: ConnectionSlot,
    /// Counts the socket's writes (`api_ws_writes`).
    writes: Counter,
    /// [`SEND_TIMEOUT`] (shorter in tests).
    send_timeout: Duration,
}

impl Outbox {
    pub fn new(socket: OwnedWriteHalf, slot: ConnectionSlot, writes: Counter) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            writer: tokio::sync::Mutex::new(Writer {
                socket: Some(socket),
                batch: VecDeque::new(),
                written: 0,
                waiting_since: None,
            }),
            operations: AtomicUsize::new(0),
            replies: Notify::new(),
            _slot: slot,
            writes,
            send_timeout: SEND_TIMEOUT,
        }
    }

    #[cfg(test)]
    fn with_send_timeout(mut self, send_timeout: Duration) -> Self {
        self.send_timeout = send_timeout;
        self
    }

    /// Tells the outbox how many subscriptions the connection runs.
    pub fn set_operations(&self, n: usize) {
        self.operations.store(n, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame` and returns the number queued; `None` when the socket is done.
    fn push(&self, frame: Frame) -> Option<usize> {
        self.push_for(frame, None)
    }

    /// [`Outbox::push`] for an operation: `None` too once `live` is false
    /// ([`Outbox::retire`]), checked under the queue's lock, so nothing of
    /// an operation is queued after its `complete` was handled.
    fn push_for(&self, frame: Frame, live: Option<&AtomicBool>) -> Option<usize> {
        let mut queue = self.lock();
        if queue.closed || live.is_some_and(|live| !live.load(Ordering::Relaxed)) {
            return None;
        }
        queue.frames.push_back(frame);
        Some(queue.frames.len())
    }

    /// Refuses every later message of the operation `live` belongs to
    /// (its task and its event source may still run a moment after their
    /// abort, on the other core).
    pub fn retire(&self, live: &AtomicBool) {
        let _queue = self.lock();
        live.store(false, Ordering::Relaxed);
    }

    /// The socket is done (written a close frame, failed or timed out).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Queues tungstenite's own reply (already framed) and tells the
    /// connection's task to write it.
    pub fn push_reply(&self, bytes: Bytes) {
        if self.push(Frame::raw(bytes)).is_some() {
            self.replies.notify_one();
        }
    }

    /// Resolves when a reply of tungstenite's waits to be written.
    pub async fn reply_queued(&self) {
        self.replies.notified().await;
    }

    /// Sends `message`: written now by this task, or by the task writing
    /// right now. False when the socket is done.
    pub async fn send(&self, message: Message) -> bool {
        self.send_for(message, None).await
    }

    /// [`Outbox::send`] for an operation (see [`Outbox::push_for`]).
    pub async fn send_for(&self, message: Message, live: Option<&AtomicBool>) -> bool {
        let Some(queued) = self.push_for(message.into(), live) else { return false };
        self.write(queued > OUTBOX).await;
        true
    }

    /// Queues `message` without writing, when more follow at once; the
    /// next [`Outbox::send`] or [`Outbox::flush`] writes it. Waits for the
    /// socket if the queue is full. False when the socket is done.
    pub async fn queue(&self, message: Message, live: Option<&AtomicBool>) -> bool {
        let Some(queued) = self.push_for(message.into(), live) else { return false };
        if queued > OUTBOX {
            self.write(true).await;
        }
        true
    }

    /// Writes whatever is queued, unless another task is writing it (then
    /// it is left to that task, or, with the queue full, written after it).
    pub async fn flush(&self) {
        let queued = self.lock().frames.len();
        if queued > 0 {
            self.write(queued > OUTBOX).await;
        }
    }

    /// Writes whatever is queued and returns once it is out (or the socket
    /// is done), waiting for a writer at work if need be.
    pub async fn flush_and_wait(&self) {
        self.write(true).await;
    }

    /// Sends `message` and returns once it is out (or the socket is done):
    /// the close frame, which shutdown waits for.
    pub async fn send_and_wait(&self, message: Message) {
        if self.push(message.into()).is_some() {
            self.write(true).await;
        }
    }

    /// Writes the queue. `wait`: wait for a writer at work to finish and
    /// write after it (a full queue, or the caller needs its message out);
    /// otherwise leave the queue to it.
    async fn write(&self, mut wait: bool) {
        loop {
            let mut writer = if wait {
                self.writer.lock().await
            } else {
                match self.writer.try_lock() {
                    Ok(writer) => writer,
                    Err(_) => return,
                }
            };
            // Cancelled while it holds the writer (its subscription aborted
            // by a `complete`), a task may leave frames others queued for
            // it: the connection's task is then told to write them.
            let stranded = WakeOnDrop { notify: &self.replies, armed: true };
            if self.operations.load(Ordering::Relaxed) > 1 {
                // The connection's other subscriptions were woken by the
                // same event: let them queue theirs, then write all at once.
                tokio::task::yield_now().await;
            }
            self.drain(&mut writer).await;
            stranded.disarm();
            drop(writer);
            // A message queued after the last look at the queue but before
            // the writer was released found it taken: write it now.
            if self.lock().frames.is_empty() {
                return;
            }
            wait = false;
        }
    }

    /// Writes every queued frame; on an error, a timeout or a close frame
    /// the socket is done.
    async fn drain(&self, writer: &mut Writer) {
        let done = match writer.socket.as_ref() {
            None => true,
            Some(socket) => {
                match self.write_all(socket, &mut writer.batch, &mut writer.written, &mut writer.waiting_since).await {
                    Ok(open) => !open,
                    Err(err) => {
                        tracing::debug!(error = %err, "websocket write failed");
                        true
                    }
                }
            }
        };
        if done {
            writer.socket = None;
            writer.batch = VecDeque::new();
            self.close_queue();
        }
    }

    /// Writes the batch and then the queue until both are empty: Ok(false)
    /// once a close frame is out.
    async fn write_all(
        &self,
        socket: &OwnedWriteHalf,
        batch: &mut VecDeque<Frame>,
        written: &mut usize,
        waiting_since: &mut Option<Instant>,
    ) -> io::Result<bool> {
        loop {
            if batch.len() < WRITE_FRAMES {
                self.refill(batch);
            }
            if batch.is_empty() {
                *waiting_since = None;
                return Ok(true);
            }
            let result = write_some(socket, batch, *written);
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.writes.inc();
                    // Frames wholly out leave the batch; a close frame ends it.
                    let mut out = *written + n;
                    while let Some(frame) = batch.front() {
                        if out < frame.len() {
                            break;
                        }
                        out -= frame.len();
                        let frame = batch.pop_front();
                        if frame.is_some_and(|f| f.close) {
                            return Ok(false);
                        }
                    }
                    *written = out;
                    if batch.is_empty() {
                        *waiting_since = None;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // The deadline is per batch (at most WRITE_BATCH bytes),
                    // not for the whole queue: a client that reads steadily
                    // but slowly keeps its socket while others keep
                    // queueing; one that stops reading, or reads a trickle,
                    // loses it after SEND_TIMEOUT.
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    tokio::time::timeout_at((since + self.send_timeout).into(), socket.writable())
                        .await
                        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "websocket send timeout"))??;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Moves queued frames into the batch, up to a write's worth.
    fn refill(&self, batch: &mut VecDeque<Frame>) {
        if batch.back().is_some_and(|frame| frame.close) {
            return;
        }
        let mut bytes: usize = batch.iter().map(Frame::len).sum();
        let mut queue = self.lock();
        while batch.len() < WRITE_FRAMES && bytes < WRITE_BATCH {
            let Some(frame) = queue.frames.pop_front() else { break };
            bytes += frame.len();
            let close = frame.close;
            batch.push_back(frame);
            if close {
                // Nothing after a close frame.
                break;
            }
        }
    }

    fn close_queue(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.frames = VecDeque::new();
        drop(queue);
        // The connection's task ends the connection (`ws::serve`): a client
        // that no longer reads must not keep it open by sending pongs.
        self.replies.notify_one();
    }
}

/// Below this many bytes a write is copied into one buffer and sent with
/// `send`, not handed to `writev` as slices: the profile of a fan-out (one
/// small frame per socket per event) had `writev`'s own path (`vfs_writev`,
/// `fdget_pos`) at about 7 % of the server's CPU, against a copy of a
/// hundred bytes.
const SMALL_WRITE: usize = 1024;

/// One write of the batch's unwritten bytes (the first frame's first
/// `written` are out already); not async, so the small write's buffer is on
/// the stack of this call only, never in a waiting task's state.
fn write_some(socket: &OwnedWriteHalf, batch: &VecDeque<Frame>, written: usize) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); 2 * WRITE_FRAMES];
    let mut used = 0;
    let mut skip = written;
    let mut total = 0;
    for frame in batch {
        for part in [frame.head(), &frame.payload[..]] {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices[used] = IoSlice::new(&part[skip..]);
            total += part.len() - skip;
            skip = 0;
            used += 1;
        }
    }
    if total > SMALL_WRITE {
        return socket.try_write_vectored(&slices[..used]);
    }
    let mut buffer = [0u8; SMALL_WRITE];
    let mut at = 0;
    for slice in &slices[..used] {
        buffer[at..at + slice.len()].copy_from_slice(slice);
        at += slice.len();
    }
    socket.try_write(&buffer[..at])
}

/// Tells the connection's task to look at the queue when dropped armed
/// (see [`Outbox::write`]): a writer cancelled while it held the socket.
struct WakeOnDrop<'a> {
    notify: &'a Notify,
    armed: bool,
}

impl WakeOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::extract::ws::{CloseFrame, Message};
    use tokio::io::AsyncReadExt;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    use futures_util::FutureExt;
    use prometheus_client::metrics::counter::Counter;

    use super::Outbox;
    use crate::http::serve::ConnectionSlot;
    use crate::realtime::drivers::{self, Company};

    /// The frames in `bytes` as (opcode, payload), as a client parses them.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while bytes.len() >= 2 {
            assert_eq!(bytes[0] & 0x80, 0x80, "FIN");
            assert_eq!(bytes[1] & 0x80, 0, "unmasked");
            let (len, start) = match bytes[1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                127 => (usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().expect("8"))).expect("fits"), 10),
                n => (usize::from(n), 2),
            };
            frames.push((bytes[0] & 0x0f, bytes[start..start + len].to_vec()));
            bytes = &bytes[start + len..];
        }
        assert!(bytes.is_empty(), "a frame cut short");
        frames
    }

    /// A connected pair on loopback: the client, and the server side's halves.
    async fn connected() -> (TcpStream, OwnedReadHalf, OwnedWriteHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let client = TcpStream::connect(listener.local_addr().expect("its address")).await.expect("connected");
        let (server, _) = listener.accept().await.expect("accepted");
        let (read, write) = server.into_split();
        (client, read, write)
    }

    /// Reads until `count` whole frames are in (within 5 s).
    async fn read_frames(client: &mut TcpStream, count: usize) -> Vec<(u8, Vec<u8>)> {
        let mut bytes = Vec::new();
        while frames(&bytes).len() < count {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                .await
                .expect("the frames within 5 s")
                .expect("read");
            assert!(n > 0, "closed");
            bytes.extend_from_slice(&buf[..n]);
        }
        frames(&bytes)
    }

    /// Messages of 0 to 70,000 bytes (all three length encodings), far
    /// more than the socket's buffers hold while the client does not read.
    fn message(producer: usize, i: usize) -> Message {
        let filler = "x".repeat((i * 7_919) % 70_001);
        Message::Text(format!("{producer}:{i}:{filler}").into())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn sibling_subscriptions_registered_far_apart_leave_in_one_write_when_the_connections_drivers_run_them() {
        // Arrange: one connection with two subscriptions, the first started
        // alone (it had no company yet), and 100 other subscribers
        // registered between them. How far apart a task per subscription
        // was polled depended on the scheduler (in `bench fanout
        // --per-socket 5`, on 2 workers, nearly always too far for the first
        // writer's yield: 0.87 writes per delivery, against 0.2 with the
        // drivers); polled by one task, the two are polled in one go
        // whatever the order they were woken in.
        let (mut client, _read, write) = connected().await;
        let writes = Counter::default();
        let out = Arc::new(Outbox::new(write, ConnectionSlot::detached(), writes.clone()));
        out.set_operations(2);
        let (events, _) = tokio::sync::broadcast::channel::<usize>(64);
        let company = Arc::new(Company::default());
        let registered = || async {
            // Every task polled to its `recv`: registered as a waiter.
            for _ in 0..50 {
                tokio::spawn(async {}).await.expect("a task");
            }
        };
        let sibling = |id: usize| {
            let (out, mut events) = (out.clone(), events.subscribe());
            async move {
                while let Ok(n) = events.recv().await {
                    out.send(Message::Text(format!("{id}:{n}").into())).await;
                }
            }
            .boxed()
        };
        // Sent by a task of the runtime, as the change feed sends: every
        // waiter is woken before any of them runs.
        let send = |n: usize| {
            let events = events.clone();
            async move { tokio::spawn(async move { events.send(n).expect("subscribers") }).await.expect("sent") }
        };
        let _first = drivers::run(sibling(1), &company);
        registered().await;
        let others: Vec<_> = (0..100)
            .map(|_| {
                let mut events = events.subscribe();
                tokio::spawn(async move { while events.recv().await.is_ok() {} })
            })
            .collect();
        registered().await;
        let _second = drivers::run(sibling(2), &company);
        registered().await;
        // The first events move the first sibling into the drivers.
        for n in 0..=drivers::LOOK_EVERY as usize {
            send(n).await;
            read_frames(&mut client, 2).await;
        }
        // The writer's count is taken under its lock: wait for it.
        out.flush_and_wait().await;
        let before = writes.get();

        // Act: one event.
        send(100).await;

        // Assert: both frames, in one write.
        let mut texts: Vec<Vec<u8>> =
            read_frames(&mut client, 2).await.into_iter().map(|(_, payload)| payload).collect();
        texts.sort();
        assert_eq!(texts, [b"1:100".to_vec(), b"2:100".to_vec()]);
        out.flush_and_wait().await;
        assert_eq!(writes.get() - before, 1, "one write for the event's two deliveries");
        others.iter().for_each(tokio::task::JoinHandle::abort);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_loses_its_socket_within_the_send_timeout_and_its_connection_is_told() {
        // Arrange: small buffers on both sides (accepted sockets inherit
        // the listener's), and a client that reads nothing.
        let listener = tokio::net::TcpSocket::new_v4().expect("a socket");
        listener.set_send_buffer_size(4096).expect("send buffer");
        listener.bind("127.0.0.1:0".parse().expect("an address")).expect("bound");
        let listener = listener.listen(8).expect("listening");
        let client = tokio::net::TcpSocket::new_v4().expect("a socket");
        client.set_recv_buffer_size(4096).expect("receive buffer");
        let _client = client.connect(listener.local_addr().expect("its address")).await.expect("connected");
        let (server, _) = listener.accept().await.expect("accepted");
        let (_read, write) = server.into_split();
        let out = Arc::new(
            Outbox::new(write, ConnectionSlot::detached(), Counter::default())
                .with_send_timeout(Duration::from_millis(300)),
        );

        // Act: send until the outbox refuses.
        let started = std::time::Instant::now();
        while out.send(Message::Text("x".repeat(1000).into())).await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still writing to a client that reads nothing after 10 s"
            );
        }

        // Assert: the socket is done, and the connection's task is woken
        // to end the connection (a client that reads nothing must not keep
        // it by sending pongs).
        assert!(out.is_closed());
        tokio::time::timeout(Duration::from_secs(1), out.reply_queued())
            .await
            .expect("the connection's task is told that the socket is done");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_of_several_producers_arrive_whole_and_in_order_through_a_full_socket_and_an_aborted_writer() {
        // Arrange: a connected pair; the client reads nothing at first.
        let (mut client, _read, write) = connected().await;
        let out = Arc::new(Outbox::new(write, ConnectionSlot::detached(), Counter::default()));
        out.set_operations(5);

        // Act: four producers, and a fifth aborted while it may be writing.
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let out = out.clone();
                tokio::spawn(async move {
                    for i in 0..60 {
                        assert!(out.send(message(p, i)).await, "the socket is open");
                    }
                })
            })
            .collect();
        let victim = {
            let out = out.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    out.send(message(9, i)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        victim.abort();
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut received))
                .await
                .expect("the server closes within 30 s")
                .expect("read");
            received
        });
        for producer in producers {
            producer.await.expect("a producer");
        }
        out.send_and_wait(Message::Close(Some(CloseFrame { code: 1000, reason: "done".into() }))).await;
        drop(out);
        let received = reader.await.expect("the reader");

        // Assert: every frame whole, each producer's in order, the close last.
        let frames = frames(&received);
        let (last, texts) = frames.split_last().expect("frames");
        assert_eq!(last.0, 0x8, "the close frame last");
        assert_eq!(&last.1[..2], &1000u16.to_be_bytes());
        let mut next = [0usize; 10];
        for (opcode, payload) in texts {
            assert_eq!(*opcode, 0x1);
            let text = std::str::from_utf8(payload).expect("UTF-8");
            let mut parts = text.splitn(3, ':');
            let producer: usize = parts.next().and_then(|p| p.parse().ok()).expect("a producer");
            let i: usize = parts.next().and_then(|i| i.parse().ok()).expect("an index");
            assert_eq!(parts.next().map(str::len), Some((i * 7_919) % 70_001), "whole");
            assert_eq!(i, next[producer], "producer {producer} in order");
            next[producer] += 1;
        }
        assert_eq!(&next[..4], &[60; 4], "every message of the four producers");
    }
}

//! The accept loop, in place of `axum::serve`, which has no timeouts and no
//! cap: 1,100 idle TCP connections used to exhaust the open-files limit and
//! lock every client out. It follows `axum::serve` (one task per connection,
//! hyper's HTTP/1 with upgrades, graceful shutdown that stops accepting and
//! finishes the requests in flight) and adds:
//!
//! - a cap on open connections (MAX_CONNECTIONS): beyond it the server stops
//!   accepting, so new connections wait in the kernel's accept queue and are
//!   served as soon as others close, and the process never runs out of file
//!   descriptors;
//! - a header-read timeout (HTTP_HEADER_READ_TIMEOUT): a new connection must
//!   send its first request head within it, and a later request's head must
//!   be complete within it of its first byte (slowloris);
//! - an idle timeout (HTTP_IDLE_TIMEOUT): a keep-alive connection that sends
//!   no new request, or a client that stops reading its response, is closed;
//! - at the cap, connections that have waited a second or more for a
//!   complete request (idle, or still sending its head) are closed to make
//!   way for those queued behind them: a flood of idle connections then
//!   delays a new client by about a second, not by a header timeout per
//!   wave of MAX_CONNECTIONS. Requests in flight and websockets are left
//!   alone.
//!
//! hyper's own header timeout starts whenever the connection waits for a
//! request, so it cannot tell a slow head from an idle keep-alive connection;
//! a small per-connection watchdog applies both instead.
//!
//! An upgraded connection (a websocket) keeps its slot until it closes: the
//! slot travels with the socket, and it is never closed to make way. So
//! websockets have caps of their own below this one (MAX_WS_CONNECTIONS,
//! MAX_WS_PER_IP; http/ws_caps.rs): an upgrade past them gets a 503 at
//! once, and the slots they leave are always there for plain HTTP, where
//! making way works. A socket whose client stops answering pings is closed
//! by its protocol (http/ws.rs).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once, upgraded ones included (those are capped
    /// lower, before the upgrade: see http/ws_caps.rs).
    pub max_connections: usize,
    /// How long a request head may take (see the module doc).
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request and nothing to send.
    pub idle_timeout: Duration,
}

/// How often, at most, a full server says so in the log.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// At the cap, a connection that has waited this long for a complete
/// request makes way for the connections queued behind it; checked this
/// often while the cap holds. Long enough for any client that means to
/// send a request right after connecting or after its last response.
const MAKE_WAY_AFTER: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for the HTTP requests in flight, as
/// `axum::serve(..).with_graceful_shutdown(shutdown)` does. Handlers can
/// extract `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // As in axum::serve: connection tasks watch `signal_tx.closed()` to
    // begin their graceful shutdown, and hold `close_rx` until they end.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    let open = Arc::new(Open::default());
    let shared = Shared { router, limits, open: Arc::clone(&open), signal_tx, close_rx };
    let mut warned_full: Option<Instant> = None;
    'serve: loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    warned_full = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "MAX_CONNECTIONS reached: connections waiting for a request make way, new ones wait until others close"
                    );
                }
                let mut make_way = tokio::time::interval(MAKE_WAY_AFTER);
                loop {
                    tokio::select! {
                        slot = Arc::clone(&slots).acquire_owned() => match slot {
                            Ok(slot) => break slot,
                            Err(_) => break 'serve, // never closed
                        },
                        _ = make_way.tick() => {
                            let closing = open.make_way(MAKE_WAY_AFTER);
                            tracing::debug!(closing, "at MAX_CONNECTIONS: closing connections that wait for a request");
                        }
                        () = shared.signal_tx.closed() => break 'serve,
                    }
                }
            }
        };
        let (stream, remote) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = shared.signal_tx.closed() => break,
        };
        tokio::spawn(connection(stream, remote, slot, shared.clone()));
    }
    drop(shared);
    drop(listener);
    close_tx.closed().await;
    Ok(())
}

/// The next connection. Errors are retried as axum does: a connection that
/// failed before it was accepted is skipped; anything else (EMFILE, say) is
/// logged and retried after a second, when some descriptors may be free.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(err) => {
                tracing::error!(error = %err, "cannot accept a connection; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What every connection task shares with the accept loop.
#[derive(Clone)]
struct Shared {
    router: Router,
    limits: ConnectionLimits,
    open: Arc<Open>,
    /// Closed once shutdown begins (as in axum::serve).
    signal_tx: watch::Sender<()>,
    /// Held by each connection task until it ends: shutdown waits for all.
    close_rx: watch::Receiver<()>,
}

/// Serves one connection until it ends, is upgraded, times out, or shutdown
/// lets its last request finish.
async fn connection(stream: TcpStream, remote: SocketAddr, slot: OwnedSemaphorePermit, shared: Shared) {
    let Shared { router, limits, open, signal_tx, close_rx } = shared;
    let activity = Arc::new(Activity::new());
    let _registered = open.register(Arc::clone(&activity));
    let io = TokioIo::new(Watched { inner: stream, activity: Arc::clone(&activity), _slot: slot });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: axum::http::Request<Incoming>| {
            activity.request_started();
            // Exactly what Router::into_make_service_with_connect_info adds.
            request.extensions_mut().insert(ConnectInfo(remote));
            let response = router.clone().oneshot(request.map(Body::new));
            let activity = Arc::clone(&activity);
            async move {
                let response: Result<_, Infallible> = response.await;
                activity.request_finished();
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No timer, so hyper's own header timeout is off: the watchdog below
    // applies HTTP_HEADER_READ_TIMEOUT and HTTP_IDLE_TIMEOUT.
    builder.header_read_timeout(None).keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
    let mut shutdown = pin!(signal_tx.closed().fuse());
    loop {
        let deadline = activity.deadline(limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, %remote, "connection ended with an error");
                }
                break;
            }
            () = &mut shutdown => conn.as_mut().graceful_shutdown(),
            () = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)) => {
                if activity.deadline(limits).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%remote, "closing a connection: no complete request in time");
                    break;
                }
            }
            () = activity.changed.notified() => {}
        }
    }
    activity.done();
    drop(close_rx);
}

/// The connections hyper is serving (upgraded ones are not), to find those
/// that can make way at the cap.
#[derive(Default)]
struct Open {
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Open {
    fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).insert(id, activity);
        Registered { open: Arc::clone(self), id }
    }

    /// Tells every connection that has waited `after` or more for a
    /// complete request to close; returns how many were told.
    fn make_way(&self, after: Duration) -> usize {
        let connections = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        connections.values().filter(|activity| activity.make_way(after)).count()
    }
}

/// A connection's place in [`Open`], given up when the task ends.
struct Registered {
    open: Arc<Open>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open.connections.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}

/// Where a connection is in its request cycle, shared by the socket
/// wrapper, the service and the watchdog. Times are milliseconds since
/// `epoch`.
struct Activity {
    epoch: Instant,
    phase: AtomicU8,
    /// A response has been sent: waiting now is keep-alive idleness.
    served: AtomicBool,
    /// When the connection began waiting for its next request.
    waiting_since: AtomicU64,
    /// When the first byte of the next request arrived ([`NONE`]: not yet).
    head_started: AtomicU64,
    /// When the response last made progress on the socket.
    last_write: AtomicU64,
    /// Told to close at the cap (see [`Open::make_way`]).
    making_way: AtomicBool,
    /// Wakes the watchdog when a deadline may have moved.
    changed: Notify,
}

const WAITING: u8 = 0;
const IN_REQUEST: u8 = 1;
/// hyper is done with the connection (closed or upgraded): stop watching.
const DONE: u8 = 2;
const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(WAITING),
            served: AtomicBool::new(false),
            waiting_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            last_write: AtomicU64::new(0),
            making_way: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn request_started(&self) {
        self.phase.store(IN_REQUEST, Ordering::Release);
        self.head_started.store(NONE, Ordering::Release);
        // Its request came in time after all: it must not be cut off while
        // its response is written.
        self.making_way.store(false, Ordering::Release);
        self.changed.notify_one();
    }

    fn request_finished(&self) {
        let now = self.now();
        self.waiting_since.store(now, Ordering::Release);
        self.last_write.store(now, Ordering::Release);
        self.served.store(true, Ordering::Release);
        self.phase.store(WAITING, Ordering::Release);
        self.changed.notify_one();
    }

    fn done(&self) {
        self.phase.store(DONE, Ordering::Release);
    }

    /// Closes the connection if it has waited `after` or more for a
    /// complete request (since it was accepted, or since its last response
    /// made progress); whether it will.
    fn make_way(&self, after: Duration) -> bool {
        if self.phase.load(Ordering::Acquire) != WAITING {
            return false;
        }
        let since = self.waiting_since.load(Ordering::Acquire).max(self.last_write.load(Ordering::Acquire));
        if self.now().saturating_sub(since) < u64::try_from(after.as_millis()).unwrap_or(u64::MAX) {
            return false;
        }
        self.making_way.store(true, Ordering::Release);
        self.changed.notify_one();
        true
    }

    fn on_read(&self) {
        if self.phase.load(Ordering::Acquire) == WAITING && self.head_started.load(Ordering::Acquire) == NONE {
            self.head_started.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        if self.phase.load(Ordering::Acquire) == WAITING {
            self.last_write.store(self.now(), Ordering::Release);
        }
    }

    /// When the connection must be closed unless something happens first;
    /// `None` while a request is being handled (its body has its own
    /// deadline, see http::limits) or once hyper is done with it.
    fn deadline(&self, limits: ConnectionLimits) -> Option<Instant> {
        if self.phase.load(Ordering::Acquire) != WAITING {
            return None;
        }
        if self.making_way.load(Ordering::Acquire) {
            return Some(self.epoch);
        }
        let since = self.waiting_since.load(Ordering::Acquire);
        let head_started = self.head_started.load(Ordering::Acquire);
        let at = if !self.served.load(Ordering::Acquire) {
            // A new connection: its first head, from the moment it was accepted.
            self.epoch + Duration::from_millis(since) + limits.header_read_timeout
        } else if head_started != NONE {
            self.epoch + Duration::from_millis(head_started) + limits.header_read_timeout
        } else {
            let last = since.max(self.last_write.load(Ordering::Acquire));
            self.epoch + Duration::from_millis(last) + limits.idle_timeout
        };
        Some(at)
    }
}

/// The accepted socket, reporting progress to the watchdog, and holding the
/// connection's slot until it is closed (after an upgrade too). Public to
/// the http module so a websocket upgrade can take the `TcpStream` back
/// (`Upgraded::downcast::<TokioIo<Watched>>`, http/ws_socket.rs).
pub(super) struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

/// A connection's place under MAX_CONNECTIONS, held by an upgraded socket
/// that no longer goes through [`Watched`]: released when dropped.
pub(super) struct ConnectionSlot {
    _slot: OwnedSemaphorePermit,
}

#[cfg(test)]
impl ConnectionSlot {
    /// A slot under a cap of its own, for tests of the socket's users.
    pub(super) fn detached() -> Self {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned();
        Self { _slot: permit.expect("a fresh semaphore has a permit") }
    }
}

impl Watched {
    /// The socket and its slot. hyper is done with the connection by then
    /// (the watchdog stopped at the upgrade), so nothing is left to watch.
    pub(super) fn into_parts(self) -> (TcpStream, ConnectionSlot) {
        (self.inner, ConnectionSlot { _slot: self._slot })
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{ConnectionLimits, serve};

    /// Handlers (per-IP rate limits, say) read the client's address as
    /// they would under `into_make_service_with_connect_info`.
    #[tokio::test]
    async fn handlers_see_the_client_address_as_connect_info() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("its address");
        let router =
            Router::new().route("/", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }));
        let limits = ConnectionLimits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits, async move {
            let _ = stopped.await;
        }));

        let mut client = TcpStream::connect(address).await.expect("connected");
        let me = client.local_addr().expect("the client's address");
        client.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.expect("sent");
        let mut response = String::new();
        client.read_to_string(&mut response).await.expect("a response");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(&me.to_string()), "{response} does not name {me}");

        let _ = stop.send(());
        server.await.expect("the server task").expect("a clean stop");
    }
}

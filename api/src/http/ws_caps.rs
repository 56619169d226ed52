//! How many websockets may be open: on the whole server, and from one
//! client address.
//!
//! An upgraded connection keeps its slot of MAX_CONNECTIONS for as long as
//! it lives, and the accept loop never closes a websocket to make way (see
//! http/serve.rs). Without a cap of their own, one host could open
//! MAX_CONNECTIONS sockets, answer their pings, and leave every other client
//! waiting in the accept queue. So websockets get fewer slots than there
//! are connections (MAX_WS_CONNECTIONS; the rest stay for plain HTTP) and
//! each client address at most MAX_WS_PER_IP of them (IPv6 per /64, the
//! address taken as the sign-in rate limits take it). An upgrade past
//! either cap is refused at once with 503 TOO_MANY_CONNECTIONS and a
//! `Retry-After`, rather than queued: the client learns why and when to
//! come back, and its connection frees its slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::ClientIp;
use crate::error::ApiError;

/// Seconds a refused client is told to wait: long enough not to hammer a
/// full server, short enough that a slot freed meanwhile is soon used.
const RETRY_AFTER: u64 = 5;

/// How often, at most, a full server says so in the log.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The websocket caps and the sockets open now. Shared by every upgrade.
pub struct WsCaps {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    /// Sockets per client host; an address leaves the map with its last
    /// socket, so the map is never larger than the sockets open. `None`:
    /// the address is unknown (a server without connect info).
    per_ip: HashMap<Option<IpAddr>, usize>,
    warned_full: Option<Instant>,
}

impl WsCaps {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self { max_total, max_per_ip, open: Mutex::new(Open::default()) }
    }

    /// A place for one more websocket from `ip`, held until the returned
    /// [`WsSlot`] is dropped; TOO_MANY_CONNECTIONS past either cap.
    pub fn acquire(self: &Arc<Self>, ip: ClientIp) -> Result<WsSlot, ApiError> {
        let host = ip.per_host();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            if open.warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                open.warned_full = Some(Instant::now());
                tracing::warn!(
                    max_ws_connections = self.max_total,
                    "MAX_WS_CONNECTIONS reached: new websockets get 503"
                );
            }
            return Err(refused("too many websockets are open on this server"));
        }
        let from_host = open.per_ip.get(&host).copied().unwrap_or(0);
        if from_host >= self.max_per_ip {
            tracing::debug!(max_ws_per_ip = self.max_per_ip, "MAX_WS_PER_IP reached for a client address");
            return Err(refused("too many websockets are open from your address"));
        }
        open.total += 1;
        open.per_ip.insert(host, from_host + 1);
        Ok(WsSlot { caps: Arc::clone(self), host })
    }
}

fn refused(message: &str) -> ApiError {
    ApiError::TooManyConnections {
        message: format!("{message}; close one or retry in {RETRY_AFTER} s"),
        retry_after: RETRY_AFTER,
    }
}

/// One open websocket's place in [`WsCaps`], given back on drop.
pub struct WsSlot {
    caps: Arc<WsCaps>,
    host: Option<IpAddr>,
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_ip.get_mut(&self.host) {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&self.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientIp {
        ClientIp(Some(s.parse().expect("an address")))
    }

    #[test]
    fn each_cap_refuses_with_a_code_and_a_closed_socket_frees_its_place() {
        let caps = Arc::new(WsCaps::new(3, 2));
        let a1 = caps.acquire(ip("10.0.0.1")).expect("first from a");
        let _a2 = caps.acquire(ip("10.0.0.1")).expect("second from a");
        let Err(err) = caps.acquire(ip("10.0.0.1")) else { panic!("third from a: per address") };
        assert_eq!(err.code(), "TOO_MANY_CONNECTIONS");
        assert_eq!(err.retry_after(), Some(RETRY_AFTER));
        let _b1 = caps.acquire(ip("10.0.0.2")).expect("first from b");
        let Err(err) = caps.acquire(ip("10.0.0.3")) else { panic!("fourth in all: server-wide") };
        assert_eq!(err.code(), "TOO_MANY_CONNECTIONS");
        drop(a1);
        let _c1 = caps.acquire(ip("10.0.0.3")).expect("a freed place is reused");
        assert_eq!(caps.open.lock().expect("lock").per_ip.len(), 3);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_block_and_forgotten_with_their_last_socket() {
        let caps = Arc::new(WsCaps::new(100, 1));
        let first = caps.acquire(ip("2001:db8::1")).expect("first in the /64");
        assert!(caps.acquire(ip("2001:db8::2")).is_err(), "same /64");
        let _other = caps.acquire(ip("2001:db8:0:1::1")).expect("another /64");
        drop(first);
        assert_eq!(caps.open.lock().expect("lock").per_ip.len(), 1);
    }
}

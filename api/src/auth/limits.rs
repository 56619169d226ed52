//! Rate limits on signing up and signing in, per client IP and per login.
//!
//! With open sign-up on the public internet, these are what stand between
//! an attacker and password guessing or mass account creation; hashing is
//! deliberately slow, so they also keep sign-in floods from costing CPU.
//! Each limit is a GCRA bucket per key (governor): a burst of N, refilled
//! evenly over the period. Past it a request gets RATE_LIMITED with the
//! seconds to wait (`extensions.retryAfter`, and `Retry-After` over HTTP).
//!
//! Memory is bounded: keys are 64-bit hashes (of the login in lower case,
//! of the IP with IPv6 taken per /64, the block one host usually has), and
//! each limiter holds at most `max_keys` of them. When full, keys whose
//! bucket is back to full are dropped; if it is still full (a flood of
//! distinct logins or addresses), every new request shares one bucket until
//! it drains: sign-ins slow down for everyone rather than the memory grow or
//! the limit fall away.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use governor::clock::{Clock, MonotonicClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::error::{ApiError, ApiResult};

/// The settings of [`RateLimits`] (see `config.rs` for each one's meaning).
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    pub sign_in_per_ip_per_minute: u32,
    pub sign_in_per_login_per_minute: u32,
    pub sign_up_per_ip_per_hour: u32,
    pub sign_up_per_login_per_hour: u32,
    pub max_keys: usize,
    pub trust_forwarded_for: bool,
}

/// The address a request came from: the TCP peer, or (behind a trusted
/// proxy) the last address of `X-Forwarded-For`. `None` when unknown; such
/// requests share one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The host the address stands for: IPv6 by its /64 (see [`per_host`]).
    /// Per-address limits count by this.
    pub fn per_host(self) -> Option<IpAddr> {
        self.0.map(per_host)
    }
}

/// The TCP peer of an HTTP request, when the server was started with
/// connect info (an extractor that never fails, unlike `ConnectInfo`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0)))
    }
}

/// The limits of sign-up and sign-in. Shared by every request.
pub struct RateLimits {
    sign_in_ip: Limit,
    sign_in_login: Limit,
    sign_up_ip: Limit,
    sign_up_login: Limit,
    trust_forwarded_for: bool,
    /// Keys hashes with a per-process random key, so they cannot be chosen to collide.
    hasher: std::hash::RandomState,
}

/// What a client is trying to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    SignIn,
    SignUp,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        let per_hour = |n: u32| Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            sign_in_ip: Limit::new(per_minute(config.sign_in_per_ip_per_minute), config.max_keys),
            sign_in_login: Limit::new(per_minute(config.sign_in_per_login_per_minute), config.max_keys),
            sign_up_ip: Limit::new(per_hour(config.sign_up_per_ip_per_hour), config.max_keys),
            sign_up_login: Limit::new(per_hour(config.sign_up_per_login_per_hour), config.max_keys),
            trust_forwarded_for: config.trust_forwarded_for,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Where a request comes from, given its TCP peer and headers.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> ClientIp {
        let forwarded = self
            .trust_forwarded_for
            .then(|| headers.get_all("x-forwarded-for").iter().next_back())
            .flatten()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        if peer.is_none() && forwarded.is_none() {
            // Every such request shares one bucket: the per-address limit
            // would become a server-wide one. Only a server started without
            // connect info gets here.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!("client address unknown (no connect info): per-address limits are shared");
            });
        }
        ClientIp(forwarded.or(peer.map(|peer| peer.ip())))
    }

    /// Counts one attempt from `ip` on `login` (an email or username): the
    /// IP's limit first, then the login's. RATE_LIMITED past either.
    pub fn check(&self, attempt: Attempt, ip: ClientIp, login: &str) -> ApiResult<()> {
        let (by_ip, by_login, what) = match attempt {
            Attempt::SignIn => (&self.sign_in_ip, &self.sign_in_login, "sign-in"),
            Attempt::SignUp => (&self.sign_up_ip, &self.sign_up_login, "sign-up"),
        };
        let ip_key = self.hasher.hash_one(ip.per_host());
        by_ip.check(ip_key).map_err(|wait| limited(&format!("too many {what} attempts from your address"), wait))?;
        let login_key = self.hasher.hash_one(login.trim().to_lowercase());
        by_login.check(login_key).map_err(|wait| limited(&format!("too many {what} attempts for this account"), wait))
    }
}

fn limited(message: &str, wait: Duration) -> ApiError {
    let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::RateLimited { message: format!("{message}; retry in {retry_after} s"), retry_after }
}

/// One address per host: IPv4 as is, IPv6 by its /64 (what one host or
/// household is usually given), IPv4-mapped IPv6 as IPv4.
fn per_host(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Every key once the map is full even after pruning.
const OVERFLOW_KEY: u64 = u64::MAX;

/// How often a full limiter may drop its idle keys (each pass walks the map).
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// One keyed limit with a bounded number of keys.
struct Limit {
    limiter: RateLimiter<u64, DashMapStateStore<u64>, MonotonicClock>,
    max_keys: usize,
    pruned_at: Mutex<Option<Instant>>,
}

impl Limit {
    fn new(quota: Quota, max_keys: usize) -> Self {
        Self { limiter: RateLimiter::dashmap_with_clock(quota, MonotonicClock), max_keys, pruned_at: Mutex::new(None) }
    }

    /// `Err(wait)` when `key` has no attempt left for `wait`.
    fn check(&self, key: u64) -> Result<(), Duration> {
        if self.limiter.len() >= self.max_keys {
            self.prune();
        }
        let key = if self.limiter.len() >= self.max_keys { OVERFLOW_KEY } else { key };
        self.limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    fn prune(&self) {
        // One pruner at a time, at most once per PRUNE_EVERY.
        let Ok(mut pruned_at) = self.pruned_at.try_lock() else { return };
        if pruned_at.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        *pruned_at = Some(Instant::now());
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if self.limiter.len() >= self.max_keys {
            // At most once per PRUNE_EVERY, however many requests overflow.
            tracing::warn!(keys = self.max_keys, "rate limit key table full: new requests share one bucket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: u32, per_login: u32, max_keys: usize) -> RateLimits {
        RateLimits::new(&RateLimitConfig {
            sign_in_per_ip_per_minute: per_ip,
            sign_in_per_login_per_minute: per_login,
            sign_up_per_ip_per_hour: per_ip,
            sign_up_per_login_per_hour: per_login,
            max_keys,
            trust_forwarded_for: false,
        })
    }

    fn ip(s: &str) -> ClientIp {
        ClientIp(Some(s.parse().expect("an address")))
    }

    #[test]
    fn a_login_is_limited_across_addresses_and_an_address_across_logins() {
        let limits = limits(3, 2, 1000);
        assert!(limits.check(Attempt::SignIn, ip("10.0.0.1"), "Ada").is_ok());
        assert!(limits.check(Attempt::SignIn, ip("10.0.0.2"), "ada").is_ok());
        let err = limits.check(Attempt::SignIn, ip("10.0.0.3"), " ADA ").expect_err("third try on one login");
        assert_eq!(err.code(), "RATE_LIMITED");
        assert!(limits.check(Attempt::SignIn, ip("10.0.0.1"), "bob").is_ok());
        assert!(limits.check(Attempt::SignIn, ip("10.0.0.1"), "carol").is_ok());
        let err = limits.check(Attempt::SignIn, ip("10.0.0.1"), "erin").expect_err("fourth from one IP");
        assert_eq!(err.code(), "RATE_LIMITED");
        assert!(err.retry_after().is_some_and(|s| (1..=20).contains(&s)), "{:?}", err.retry_after());
        // Sign-up has buckets of its own.
        assert!(limits.check(Attempt::SignUp, ip("10.0.0.1"), "dave").is_ok());
    }

    #[test]
    fn ipv6_hosts_are_counted_per_64_block() {
        let limits = limits(1, 100, 1000);
        assert!(limits.check(Attempt::SignIn, ip("2001:db8::1"), "a").is_ok());
        assert!(limits.check(Attempt::SignIn, ip("2001:db8::2"), "b").is_err());
        assert!(limits.check(Attempt::SignIn, ip("2001:db8:0:1::1"), "c").is_ok());
        assert_eq!(per_host("::ffff:10.1.2.3".parse().expect("v6")), "10.1.2.3".parse::<IpAddr>().expect("v4"));
    }

    #[test]
    fn a_flood_of_distinct_logins_keeps_the_key_table_bounded() {
        let limits = limits(1_000_000, 5, 100);
        for i in 0..10_000 {
            let _ = limits.check(Attempt::SignIn, ip("10.0.0.1"), &format!("user{i}"));
        }
        assert!(limits.sign_in_login.limiter.len() <= 101, "{}", limits.sign_in_login.limiter.len());
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let peer = Some("127.0.0.1:5000".parse().expect("addr"));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 198.51.100.7".parse().expect("header"));
        assert_eq!(limits(1, 1, 10).client_ip(peer, &headers), ip("127.0.0.1"));
        let trusting = RateLimits { trust_forwarded_for: true, ..limits(1, 1, 10) };
        assert_eq!(trusting.client_ip(peer, &headers), ip("198.51.100.7"));
    }
}

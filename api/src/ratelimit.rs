//! Per-client-IP token buckets for the public read routes, in a bounded table.
//!
//! Each client (an IPv4 address, or an IPv6 /64: one host usually holds a whole /64) has a
//! bucket of `rate_limit_burst` tokens refilled at `rate_limit_per_s`; a request takes one or is
//! answered `429 rate_limited` with `Retry-After` (seconds until a token is back). The table holds
//! at most `rate_limit_clients` entries: when full, entries whose bucket has refilled (idle
//! clients, which lose nothing by being forgotten) are dropped, and if none has, the least
//! recently seen client is. Without the client's address (a server not started with connect
//! info) nothing is limited.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::ApiConfig;
use crate::problem::{reason, Problem};
use crate::server::ApiCounters;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limiter's state (shared by every request).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_clients: usize,
    table: Mutex<HashMap<IpAddr, Bucket>>,
    counters: Arc<ApiCounters>,
}

/// The key a client is limited under: IPv4 address, or the /64 of an IPv6 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl RateLimiter {
    /// A limiter with the config's rate, burst and table size (rate 0: disabled).
    pub fn new(config: &ApiConfig, counters: Arc<ApiCounters>) -> Self {
        Self {
            rate: f64::from(config.rate_limit_per_s),
            burst: f64::from(config.rate_limit_burst.max(1)),
            max_clients: config.rate_limit_clients.max(1),
            table: Mutex::new(HashMap::new()),
            counters,
        }
    }

    /// Takes a token for `ip` at `now`: `Ok` or `Err(seconds to wait)`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u32> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let key = client_key(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&key) && table.len() >= self.max_clients {
            self.evict(&mut table, now);
        }
        let b = table.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / self.rate).ceil();
            // At most a day; the cast cannot overflow.
            Err(wait.clamp(1.0, 86_400.0) as u32)
        }
    }

    /// Makes room for one client.
    fn evict(&self, table: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let refill_s = self.burst / self.rate;
        table.retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < refill_s);
        if table.len() >= self.max_clients {
            if let Some(oldest) = table.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k) {
                table.remove(&oldest);
            }
        }
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.table.lock().map_or(0, |t| t.len())
    }
}

/// The middleware: `429 rate_limited` problem+json with `Retry-After` when the client's bucket
/// is empty.
pub async fn limit(State(limiter): State<Arc<RateLimiter>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip {
        if let Err(wait) = limiter.check(ip, Instant::now()) {
            limiter
                .counters
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
            return Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                reason::RATE_LIMITED,
                format!("too many requests from this client; retry in {wait} s"),
            )
            .retry_after(wait)
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(rate: u32, burst: u32, clients: usize) -> RateLimiter {
        RateLimiter::new(
            &ApiConfig {
                rate_limit_per_s: rate,
                rate_limit_burst: burst,
                rate_limit_clients: clients,
                ..ApiConfig::default()
            },
            Arc::default(),
        )
    }

    #[test]
    fn burst_then_refill_per_client() {
        let l = limiter(2, 3, 10);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::V4([0; 4].into()));
        let b: IpAddr = "10.0.0.2".parse().unwrap_or(IpAddr::V4([0; 4].into()));
        for _ in 0..3 {
            assert_eq!(l.check(a, t0), Ok(()));
        }
        assert_eq!(l.check(a, t0), Err(1));
        assert_eq!(l.check(b, t0), Ok(()), "another client has its own bucket");
        assert_eq!(l.check(a, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(l.check(a, t0 + Duration::from_millis(500)), Err(1));
    }

    #[test]
    fn ipv6_clients_share_their_64_and_the_table_stays_bounded() {
        let l = limiter(1, 1, 4);
        let t0 = Instant::now();
        let x: IpAddr = "2001:db8:1:2::1"
            .parse()
            .unwrap_or(IpAddr::V4([0; 4].into()));
        let y: IpAddr = "2001:db8:1:2::ffff"
            .parse()
            .unwrap_or(IpAddr::V4([0; 4].into()));
        assert_eq!(l.check(x, t0), Ok(()));
        assert_eq!(l.check(y, t0), Err(1), "same /64");
        for i in 0..100u8 {
            let _ = l.check(IpAddr::V4([192, 0, 2, i].into()), t0);
            assert!(l.tracked() <= 4);
        }
    }

    #[test]
    fn zero_rate_disables() {
        let l = limiter(0, 1, 1);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.check(IpAddr::V4([127, 0, 0, 1].into()), t0), Ok(()));
        }
    }
}

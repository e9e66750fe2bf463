//! Per-client rate limiting for the proxy's own POST endpoints (consent choices, feedback): a token bucket per
//! resolved client address — per /64 for IPv6, where one subscriber holds a whole prefix.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] buckets. When the table is full, buckets that have refilled (their
//! clients have been quiet long enough to be forgotten without losing anything) are swept, at most once a
//! second so that a flood of new addresses cannot turn every request into a sweep; a new client that still
//! finds the table full is refused until the next sweep — under such a flood refusing is the right answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most clients tracked at once (about 40 bytes each).
pub const MAX_CLIENTS: usize = 100_000;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6Prefix(u64),
}

impl Key {
    fn of(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(a) => Key::V4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Key::V4(u32::from(v4)),
                None => Key::V6Prefix((u128::from(a) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<Key, Bucket>,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_clients: usize,
    table: Mutex<Table>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::with_capacity(per_minute, burst, MAX_CLIENTS)
    }

    pub fn with_capacity(per_minute: u32, burst: u32, max_clients: usize) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            max_clients,
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Take one token for `ip` at `now`: `Ok` to go ahead, `Err(wait)` when the client must wait that long.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = Key::of(ip);
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !t.buckets.contains_key(&key) && t.buckets.len() >= self.max_clients {
            let due = t
                .last_sweep
                .is_none_or(|s| now.saturating_duration_since(s) >= SWEEP_EVERY);
            if due {
                t.last_sweep = Some(now);
                let (rate, burst) = (self.per_second, self.burst);
                t.buckets.retain(|_, b| {
                    b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
                });
            }
            if t.buckets.len() >= self.max_clients {
                return Err(SWEEP_EVERY);
            }
        }
        let b = t.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - b.tokens) / self.per_second).max(0.001),
            ))
        }
    }

    /// Clients tracked now (for tests).
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_refill_per_client() {
        let l = RateLimiter::new(60, 3); // one a second, three at once
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip("192.0.2.1"), t0).is_ok());
        }
        let wait = l.check(ip("192.0.2.1"), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another client is unaffected.
        assert!(l.check(ip("192.0.2.2"), t0).is_ok());
        // After a second, one more.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.check(ip("192.0.2.1"), t1).is_ok());
        assert!(l.check(ip("192.0.2.1"), t1).is_err());
        // Refill is capped at the burst.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.check(ip("192.0.2.1"), t2).is_ok());
        }
        assert!(l.check(ip("192.0.2.1"), t2).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let l = RateLimiter::new(60, 2);
        let t = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t).is_ok());
        assert!(l.check(ip("2001:db8:1:2:ffff::9"), t).is_ok());
        assert!(l.check(ip("2001:db8:1:2::abcd"), t).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t).is_ok());
        // A v4-mapped address is its IPv4 client.
        assert!(l.check(ip("192.0.2.7"), t).is_ok());
        assert!(l.check(ip("::ffff:192.0.2.7"), t).is_ok());
        assert!(l.check(ip("192.0.2.7"), t).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_quiet_clients() {
        let l = RateLimiter::with_capacity(60, 2, 100);
        let t0 = Instant::now();
        for i in 0..100u32 {
            assert!(l
                .check(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0)
                .is_ok());
        }
        assert_eq!(l.clients(), 100);
        // Full of active clients: a newcomer waits; known clients go on.
        assert!(l.check(ip("192.0.2.1"), t0).is_err());
        assert!(l.check(ip("10.0.0.5"), t0).is_ok());
        // Within the same second no second sweep runs.
        assert!(l
            .check(ip("192.0.2.1"), t0 + Duration::from_millis(500))
            .is_err());
        // Once the old clients have refilled they are forgotten and newcomers fit.
        let later = t0 + Duration::from_secs(10);
        assert!(l.check(ip("192.0.2.1"), later).is_ok());
        assert!(l.clients() <= 2, "{}", l.clients());
    }
}

//! Admission: `--max-connections` and `--max-connections-per-ip`.
//!
//! Two bounds, at two moments:
//!
//! - **At accept**, before any byte is read ([`Admission::connection_place`],
//!   [`Admission::accepted`]): at most `--max-connections` + [`HANDSHAKE_HEADROOM`]
//!   connections are open at once, in whatever step; the accept loop takes a place before it
//!   accepts, so the rest wait in the listen backlog (a flood of silent connections costs
//!   that many descriptors, not one per connection). When the peer is the client (no PROXY
//!   header or trusted proxy to name another), one address may hold at most
//!   `--max-connections-per-ip` + [`PER_IP_HEADROOM`]: more are closed at once, counted.
//! - **After the request head** ([`Admission::admit`]): a request is admitted so that a
//!   refusal can be a real HTTP answer (503 with `Retry-After`) that a browser or a load
//!   balancer understands. The headroom above is what lets an over-the-limit request be read
//!   and answered so. Each step before is also bounded in time (the PROXY header 5 s, the
//!   first bytes 3 s, TLS 10 s, the head `--handshake-timeout`) and buffer (16 KiB).
//!
//! The permit is held until the connection closes: a WebSocket session holds it for its whole
//! life, a web request until its answer is sent.
//!
//! Web requests have a share of the limit of their own ([`web_share`], half of it): a client
//! can hold a web answer as long as `--send-timeout` by not reading it, and without a share
//! a few such clients kept every WebSocket client at `503` (security review). A web request
//! over its share waits for a place (a page load's burst of requests is served, not
//! refused), without holding one of the sessions' places meanwhile, and gets `503` only if
//! none frees up within the wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry::metrics;

/// Connections beyond `--max-connections` that may be open at once, reading their first
/// bytes, TLS and request head: enough that requests over the limit are read and answered
/// 503 rather than left unanswered, few enough that a flood costs a bounded number of
/// descriptors.
pub const HANDSHAKE_HEADROOM: usize = 64;

/// Connections one address may hold beyond `--max-connections-per-ip` at accept, for the
/// same reason.
pub const PER_IP_HEADROOM: usize = 8;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total {
        limit: usize,
    },
    PerIp {
        limit: usize,
    },
    /// No web place freed up within the wait.
    Web {
        limit: usize,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Total { limit } => {
                write!(f, "{limit} connections at once (--max-connections)")
            }
            Refused::PerIp { limit } => write!(
                f,
                "{limit} connections at once from one address (--max-connections-per-ip)"
            ),
            Refused::Web { limit } => write!(
                f,
                "{limit} web requests at once (half of --max-connections)"
            ),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only addresses with a permit out; an entry goes when its count returns to zero, so the
    /// map is as large as the set of clients connected now, never the set ever seen.
    per_ip: HashMap<IpAddr, usize>,
    /// Open connections per peer address at accept (kept only with a per-address limit), in
    /// the same way.
    open_per_ip: HashMap<IpAddr, usize>,
}

/// Shared by every handler of one server.
#[derive(Debug, Clone)]
pub struct Admission {
    max_total: usize,
    max_per_ip: Option<usize>,
    counts: Arc<Mutex<Counts>>,
    /// The web requests' share, [`web_share`] places.
    web: Arc<Semaphore>,
    /// Places for open connections: `max_total` + [`HANDSHAKE_HEADROOM`].
    open: Arc<Semaphore>,
}

/// An open connection's place, from accept to close.
#[derive(Debug)]
pub struct Connection {
    _place: Option<OwnedSemaphorePermit>,
    /// Counted against the per-address bound at accept.
    ip: Option<(IpAddr, Arc<Mutex<Counts>>)>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((ip, counts)) = &self.ip {
            let mut counts = lock(counts);
            if let Some(n) = counts.open_per_ip.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    counts.open_per_ip.remove(ip);
                }
            }
        }
    }
}

/// How many of `max_total` places web requests may hold at once: half, at least one.
pub fn web_share(max_total: usize) -> usize {
    (max_total / 2).max(1)
}

/// Held while a request is served; gives its place back when dropped.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    ip: Option<IpAddr>,
    /// A web request's place in the web share, given back with the permit.
    _web: Option<OwnedSemaphorePermit>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_ip: Option<usize>) -> Admission {
        metrics::get()
            .max_connections
            .set(i64::try_from(max_total).unwrap_or(i64::MAX));
        Admission {
            max_total,
            max_per_ip,
            counts: Arc::default(),
            web: Arc::new(Semaphore::new(web_share(max_total))),
            open: Arc::new(Semaphore::new(max_total.saturating_add(HANDSHAKE_HEADROOM))),
        }
    }

    /// The total limit in force.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// A place for one more open connection: the accept loop waits for it before it accepts,
    /// so that over the bound new connections wait in the listen backlog.
    /// (`None` only if the places were closed, which nothing does.)
    pub async fn connection_place(&self) -> Option<OwnedSemaphorePermit> {
        self.open.clone().acquire_owned().await.ok()
    }

    /// Counts a connection accepted in `place` from `peer` (`None` when the peer is not the
    /// client: a load balancer or trusted proxy will name it later) against the per-address
    /// bound at accept; `Err` when that address holds too many already.
    pub fn accepted(
        &self,
        place: Option<OwnedSemaphorePermit>,
        peer: Option<IpAddr>,
    ) -> Result<Connection, Refused> {
        let (Some(ip), Some(per_ip)) = (peer.map(|ip| ip.to_canonical()), self.max_per_ip) else {
            return Ok(Connection {
                _place: place,
                ip: None,
            });
        };
        let bound = per_ip.saturating_add(PER_IP_HEADROOM);
        let mut counts = lock(&self.counts);
        let n = counts.open_per_ip.entry(ip).or_insert(0);
        if *n >= bound {
            return Err(Refused::PerIp { limit: per_ip });
        }
        *n += 1;
        Ok(Connection {
            _place: place,
            ip: Some((ip, self.counts.clone())),
        })
    }

    /// A permit for one more request from `ip` (`None`: a unix socket client, which only the
    /// total limit applies to), or the limit that refuses it.
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<Permit, Refused> {
        // IPv4 clients of a dual-stack listener arrive as mapped IPv6 addresses.
        let ip = ip.map(|ip| ip.to_canonical());
        let mut counts = lock(&self.counts);
        if counts.total >= self.max_total {
            return Err(Refused::Total {
                limit: self.max_total,
            });
        }
        if let (Some(ip), Some(limit)) = (ip, self.max_per_ip) {
            let n = counts.per_ip.entry(ip).or_insert(0);
            if *n >= limit {
                return Err(Refused::PerIp { limit });
            }
            *n += 1;
        }
        counts.total += 1;
        publish_places_held(counts.total);
        Ok(Permit {
            counts: self.counts.clone(),
            ip: ip.filter(|_| self.max_per_ip.is_some()),
            _web: None,
        })
    }

    /// A permit for a web request from `ip`: a place in the web share first, waited for up
    /// to `wait` (`None`: as long as it takes), then a place as [`Admission::admit`] gives.
    pub async fn admit_web(
        &self,
        ip: Option<IpAddr>,
        wait: Option<Duration>,
    ) -> Result<Permit, Refused> {
        let refused = Refused::Web {
            limit: web_share(self.max_total),
        };
        let place = self.web.clone().acquire_owned();
        let place = match wait {
            Some(wait) => tokio::time::timeout(wait, place)
                .await
                .map_err(|_| refused)?,
            None => place.await,
        };
        // The semaphore is never closed.
        let place = place.map_err(|_| refused)?;
        let mut permit = self.admit(ip)?;
        permit._web = Some(place);
        Ok(permit)
    }

    /// Requests being served now.
    #[cfg(test)]
    fn active(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        publish_places_held(counts.total);
        if let Some(ip) = self.ip
            && let Some(n) = counts.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

/// Publishes the places held, read under the counts' lock so that the gauge never shows a
/// stale count after the last change.
fn publish_places_held(total: usize) {
    metrics::get()
        .connection_places_held
        .set(i64::try_from(total).unwrap_or(i64::MAX));
}

/// The counts stay consistent even if a holder panicked (every update is a single step), so
/// a poisoned lock is used as it is.
fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_ip_limits_and_release() {
        let a = Admission::new(3, Some(2));
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = a.admit(Some(one)).unwrap();
        let p2 = a.admit(Some(one)).unwrap();
        assert_eq!(a.admit(Some(one)).unwrap_err(), Refused::PerIp { limit: 2 });
        // The same address seen as IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(a.admit(Some(mapped)).is_err());
        let p3 = a.admit(Some(two)).unwrap();
        assert_eq!(a.admit(None).unwrap_err(), Refused::Total { limit: 3 });
        drop(p1);
        let p4 = a.admit(None).unwrap();
        assert_eq!(a.active(), 3);
        drop((p2, p3, p4));
        assert_eq!(a.active(), 0);
        assert!(
            lock(&a.counts).per_ip.is_empty(),
            "no entry outlives its permits"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn web_requests_wait_within_their_share_and_never_take_the_sessions_places() {
        let a = Admission::new(4, None);
        assert_eq!(web_share(4), 2);
        let wait = Some(Duration::from_secs(10));
        let w1 = a.admit_web(None, wait).await.unwrap();
        let _w2 = a.admit_web(None, wait).await.unwrap();
        // A third waits for a web place, holding none of the others meanwhile...
        let third = tokio::spawn({
            let a = a.clone();
            async move { a.admit_web(None, wait).await }
        });
        tokio::task::yield_now().await;
        let sessions: Vec<_> = (0..2).map(|_| a.admit(None).unwrap()).collect();
        assert_eq!(a.active(), 4);
        // ...gets one as soon as one frees up (and a session place then too)...
        drop(sessions);
        drop(w1);
        let _third = third.await.unwrap().unwrap();
        // ...and is refused if none does within the wait.
        let started = tokio::time::Instant::now();
        assert_eq!(
            a.admit_web(None, wait).await.unwrap_err(),
            Refused::Web { limit: 2 }
        );
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(web_share(1), 1);
    }

    #[test]
    fn without_a_per_ip_limit_no_address_is_tracked() {
        let a = Admission::new(10, None);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let permits: Vec<_> = (0..10).map(|_| a.admit(Some(ip)).unwrap()).collect();
        assert!(lock(&a.counts).per_ip.is_empty());
        assert!(a.admit(Some(ip)).is_err());
        drop(permits);
        assert_eq!(a.active(), 0);
    }
}

//! Admission: `--max-connections` and `--max-connections-per-ip`.
//!
//! A request is admitted once its head has been read, so the refusal can be a real HTTP
//! answer (503 with `Retry-After`) that a browser or a load balancer understands. Before
//! that, each connection is bounded in time (the PROXY header 5 s, the first bytes 3 s, TLS
//! 10 s, the head `--handshake-timeout`) and in buffer (the head's 16 KiB), but not in
//! number: nothing limits how many connections are in those steps at once.
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
}

/// Shared by every handler of one server.
#[derive(Debug, Clone)]
pub struct Admission {
    max_total: usize,
    max_per_ip: Option<usize>,
    counts: Arc<Mutex<Counts>>,
    /// The web requests' share, [`web_share`] places.
    web: Arc<Semaphore>,
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
        Admission {
            max_total,
            max_per_ip,
            counts: Arc::default(),
            web: Arc::new(Semaphore::new(web_share(max_total))),
        }
    }

    /// The total limit in force.
    pub fn max_total(&self) -> usize {
        self.max_total
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

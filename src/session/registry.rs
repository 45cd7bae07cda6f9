//! The live sessions, as the operations port's `/sessions` lists them and `DELETE
//! /sessions/{id}` ends them (on only with `--admin-token`; see [`crate::telemetry::ops`]).
//!
//! A session is listed from the moment its relay begins until its log line is written: its
//! [`Listed`] guard takes it off the list on every way out of the task. What is listed is
//! what an operator needs to recognise a session (who, to what, over what, since when, how
//! much) and never what would let someone else use it: no path or query (a token may be in
//! either), no cookie, no header.
//!
//! With the admin API off the registry is [`Registry::off`]: sessions are not listed, and
//! pay nothing for it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::session::activity::Activity;
use crate::session::relay::Traffic;
use crate::session::stop::Stop;
use crate::session::{Close, close_code};

/// The close an operator's `DELETE` sends when it gives no reason of its own.
pub const DEFAULT_REASON: &str = "Closed by the operator";

/// A close frame's reason is at most 123 bytes (RFC 6455 5.5: 125 with the code).
const MAX_REASON: usize = 123;

/// The listed sessions by id.
type Map = Arc<Mutex<HashMap<u64, Arc<Entry>>>>;

/// The live sessions, shared by every handler and the operations port.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// `None`: the admin API is off and nothing is listed.
    sessions: Option<Map>,
}

/// What a session is listed with, from its handler.
#[derive(Debug)]
pub struct Facts {
    pub id: u64,
    /// The client as the proxy sees it (after a PROXY header or a trusted forwarded header).
    pub client: String,
    pub target: String,
    /// `http1` or `h2`.
    pub transport: &'static str,
    /// `hybi-13/binary`, `hixie-76/base64`, ...: the protocol version, then the
    /// subprotocol.
    pub protocol: String,
    /// `deflate` or `deflate-context` when permessage-deflate was negotiated.
    pub compression: Option<&'static str>,
    pub tls: bool,
}

/// One listed session: its facts, its live counts, and how an operator ends it.
#[derive(Debug)]
pub struct Entry {
    facts: Facts,
    started: SystemTime,
    /// Bytes each way, which the relay counts.
    pub traffic: Traffic,
    /// When data last passed (the registry keeps this clock running for every session).
    activity: Arc<Activity>,
    /// The operator's end of the session: the relay waits on it.
    pub eviction: Eviction,
}

/// An operator's request to end a session, and the close it asked for.
///
/// The relay waits on [`Eviction::stop`] as the signal that stops its target-to-client
/// direction at the next message boundary (the same [`Stop`] it uses itself once the
/// client's side ended), then closes with [`Eviction::close`]: a message being written is
/// finished first, or the session ends when its write is given up (`--send-timeout`).
#[derive(Debug, Default)]
pub struct Eviction {
    asked: Stop,
    close: OnceLock<Close>,
}

impl Eviction {
    /// Raised when an operator asks.
    pub fn stop(&self) -> &Stop {
        &self.asked
    }

    /// An operator asked.
    pub fn is_asked(&self) -> bool {
        self.close.get().is_some()
    }

    /// The close to send: 1008 with the operator's reason.
    pub fn close(&self) -> Close {
        self.close
            .get()
            .cloned()
            .unwrap_or_else(|| Close::new(close_code::POLICY_VIOLATION, DEFAULT_REASON))
    }

    /// Asks the session to end with `reason`; false if it was asked already.
    fn ask(&self, reason: &str) -> bool {
        let close = Close {
            code: close_code::POLICY_VIOLATION,
            reason: truncate(reason, MAX_REASON).to_string().into(),
        };
        let first = self.close.set(close).is_ok();
        if first {
            self.asked.ask();
        }
        first
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Keeps a session on the list; takes it off when dropped.
#[derive(Debug)]
pub struct Listed {
    entry: Arc<Entry>,
    sessions: Map,
}

impl Listed {
    pub fn entry(&self) -> &Entry {
        &self.entry
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        lock(&self.sessions).remove(&self.entry.facts.id);
    }
}

/// What ending a session answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to end; it closes with 1008 at its next step.
    Asked,
    /// Asked already, and closing.
    AlreadyAsked,
    /// No such session (never was, or ended).
    Unknown,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each change is one insert or remove: a poisoned map is consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// Sessions are not listed (the admin API is off).
    pub fn off() -> Registry {
        Registry { sessions: None }
    }

    /// Sessions are listed.
    pub fn on() -> Registry {
        Registry {
            sessions: Some(Arc::default()),
        }
    }

    pub fn is_on(&self) -> bool {
        self.sessions.is_some()
    }

    /// Lists a session whose relay begins now, with the facts `facts` gives; `None` (and
    /// nothing built) when the registry is off.
    pub fn list(&self, facts: impl FnOnce() -> Facts, activity: Arc<Activity>) -> Option<Listed> {
        let sessions = self.sessions.as_ref()?;
        let entry = Arc::new(Entry {
            facts: facts(),
            started: SystemTime::now(),
            traffic: Traffic::default(),
            activity,
            eviction: Eviction::default(),
        });
        lock(sessions).insert(entry.facts.id, entry.clone());
        Some(Listed {
            entry,
            sessions: sessions.clone(),
        })
    }

    /// The sessions now, oldest first.
    pub fn snapshot(&self) -> Vec<View> {
        let Some(sessions) = &self.sessions else {
            return Vec::new();
        };
        // Copied out under the lock, described after it: the lock is held for the copy only.
        let entries: Vec<Arc<Entry>> = lock(sessions).values().cloned().collect();
        let mut views: Vec<View> = entries.iter().map(|e| e.view()).collect();
        views.sort_by_key(|v| v.id);
        views
    }

    /// Asks session `id` to end with 1008 and `reason` (or [`DEFAULT_REASON`]).
    pub fn end(&self, id: u64, reason: Option<&str>) -> Ended {
        let Some(sessions) = &self.sessions else {
            return Ended::Unknown;
        };
        let Some(entry) = lock(sessions).get(&id).cloned() else {
            return Ended::Unknown;
        };
        if entry.eviction.ask(reason.unwrap_or(DEFAULT_REASON)) {
            Ended::Asked
        } else {
            Ended::AlreadyAsked
        }
    }
}

/// A session as `/sessions` shows it: the JSON contract of the admin API (README, "Live
/// sessions"); add fields, never rename them.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct View {
    pub id: u64,
    pub client: String,
    pub target: String,
    pub transport: String,
    /// The protocol version: `hybi-13`, `hybi-8`, `hixie-76`, `hixie-75`.
    pub protocol: String,
    /// `binary` or `base64`.
    pub subprotocol: String,
    /// `deflate`, `deflate-context`, or null.
    pub compression: Option<String>,
    pub tls: bool,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_seconds: f64,
    /// Payload bytes from the client to the target.
    pub bytes_from_client: u64,
    /// Payload bytes from the target to the client.
    pub bytes_to_client: u64,
    /// RFC 3339, UTC: when data last passed either way (the start, before any).
    pub last_activity: String,
    pub idle_seconds: f64,
    /// An operator asked it to end; it is closing.
    pub closing: bool,
}

impl Entry {
    fn view(&self) -> View {
        let f = &self.facts;
        let (protocol, subprotocol) = match f.protocol.split_once('/') {
            Some((version, sub)) => (version.to_string(), sub.to_string()),
            None => (f.protocol.clone(), "binary".to_string()),
        };
        let duration = self.activity.elapsed();
        let since_data = self.activity.since_data();
        let last = self.started + duration.saturating_sub(since_data);
        View {
            id: f.id,
            client: f.client.clone(),
            target: f.target.clone(),
            transport: f.transport.to_string(),
            protocol,
            subprotocol,
            compression: f.compression.map(str::to_string),
            tls: f.tls,
            started: rfc3339(self.started),
            duration_seconds: round_ms(duration),
            bytes_from_client: self.traffic.from_client.load(Ordering::Relaxed),
            bytes_to_client: self.traffic.to_client.load(Ordering::Relaxed),
            last_activity: rfc3339(last),
            idle_seconds: round_ms(since_data),
            closing: self.eviction.close.get().is_some(),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn round_ms(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: u64) -> Facts {
        Facts {
            id,
            client: "192.0.2.1:5000".into(),
            target: "vnc:5900".into(),
            transport: "h2",
            protocol: "hybi-13/base64".into(),
            compression: Some("deflate"),
            tls: true,
        }
    }

    fn activity() -> Arc<Activity> {
        Arc::new(Activity::new(None, None).kept_always())
    }

    #[test]
    fn off_lists_nothing_and_ends_nothing() {
        let r = Registry::off();
        assert!(r.list(|| facts(1), activity()).is_none());
        assert!(r.snapshot().is_empty());
        assert_eq!(r.end(1, None), Ended::Unknown);
    }

    #[test]
    fn a_session_is_listed_until_its_guard_drops() {
        let r = Registry::on();
        let a = r.list(|| facts(2), activity()).unwrap();
        let b = r.list(|| facts(1), activity()).unwrap();
        a.entry().traffic.to_client.store(42, Ordering::Relaxed);
        let views = r.snapshot();
        assert_eq!(views.iter().map(|v| v.id).collect::<Vec<_>>(), [1, 2]);
        let v = &views[1];
        assert_eq!(
            (v.protocol.as_str(), v.subprotocol.as_str()),
            ("hybi-13", "base64")
        );
        assert_eq!(v.bytes_to_client, 42);
        assert_eq!(v.compression.as_deref(), Some("deflate"));
        assert!(v.started.ends_with('Z'), "{}", v.started);
        drop(a);
        assert_eq!(r.snapshot().len(), 1);
        drop(b);
        assert!(r.snapshot().is_empty());
    }

    #[tokio::test]
    async fn ending_wakes_the_session_with_1008_and_the_reason() {
        let r = Registry::on();
        let listed = r.list(|| facts(7), activity()).unwrap();
        assert_eq!(r.end(8, None), Ended::Unknown);
        assert_eq!(r.end(7, Some("maintenance")), Ended::Asked);
        assert_eq!(r.end(7, None), Ended::AlreadyAsked);
        // Asked before the wait began: the wait completes at once (the permit).
        listed.entry().eviction.stop().asked().await;
        assert!(listed.entry().eviction.is_asked());
        let close = listed.entry().eviction.close();
        assert_eq!((close.code, close.reason.as_ref()), (1008, "maintenance"));
        assert!(r.snapshot()[0].closing);
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = truncate(&long, MAX_REASON);
        assert!(cut.len() <= MAX_REASON && cut.len() >= MAX_REASON - 1);
        assert!(long.starts_with(cut));
    }
}

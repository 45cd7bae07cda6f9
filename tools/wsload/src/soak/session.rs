//! The checksummed session: a WebSocket client (binary subprotocol) that sends its seeded
//! stream while it reads the echo and checks every byte of it, in order, then closes with 1000
//! and expects 1000 back. Well-behaved sessions and the slow-reader fault both run it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::pattern::{self, Rng};
use super::stats::Stats;

/// The TCP connect plus the opening handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes sent but not echoed and nothing arriving for this long: the data is counted lost.
/// Generous, so that a loaded machine is not mistaken for a lossy proxy.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Our close frame sent, the answer must come within this.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest message a well-behaved session sends now and then.
pub const HUGE: usize = 16 << 20;

/// What a session sends and how it reads.
pub struct Plan {
    /// Names the session's byte stream (see [`pattern::fill`]).
    pub seed: u64,
    pub sizes: Sizes,
    /// Mean pause between messages (each is uniform in 0..2×mean).
    pub think: Duration,
    /// No message is started after this.
    pub until: Instant,
    /// The reader waits this long before its first read (a slow reader).
    pub read_pause: Duration,
    /// And this long after each message it reads.
    pub read_delay: Duration,
}

pub enum Sizes {
    /// Mostly small, some up to 1 MiB, and 16 MiB with probability `huge_share`.
    Mixed { huge_share: f64 },
    /// `count` messages of `size` bytes.
    Fixed { size: usize, count: u64 },
}

impl Sizes {
    /// The next message's size, or `None` when the plan is done.
    fn next(&self, rng: &mut Rng, sent_messages: u64) -> Option<usize> {
        match *self {
            Sizes::Fixed { size, count } => (sent_messages < count).then_some(size),
            Sizes::Mixed { huge_share } => {
                if rng.chance(huge_share) {
                    return Some(HUGE);
                }
                let r = rng.unit();
                let (lo, hi) = if r < 0.55 {
                    (1, 256)
                } else if r < 0.85 {
                    (257, 16 << 10)
                } else if r < 0.97 {
                    ((16 << 10) + 1, 256 << 10)
                } else {
                    ((256 << 10) + 1, 1 << 20)
                };
                Some(rng.between(lo, hi) as usize)
            }
        }
    }
}

/// How a session failed; each is an error kind in the report.
#[derive(Debug)]
pub enum Failure {
    /// No session: the connect or the handshake failed (`refused_STATUS` for an HTTP answer).
    Connect { kind: String, detail: String },
    /// An echoed byte differs from the one sent at that offset, or more came back than was sent.
    Mismatch(String),
    /// The session ended (or stalled) with bytes sent and not echoed.
    Lost(String),
    /// The session was ended by the proxy (or a send failed) with nothing outstanding.
    Aborted(String),
    /// All data came back but the close handshake did not end with 1000.
    Close(String),
}

impl Failure {
    pub fn kind(&self) -> &str {
        match self {
            Failure::Connect { kind, .. } => kind,
            Failure::Mismatch(_) => "data_mismatch",
            Failure::Lost(_) => "data_lost",
            Failure::Aborted(_) => "aborted",
            Failure::Close(_) => "close_failed",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Failure::Connect { detail, .. } => detail,
            Failure::Mismatch(d) | Failure::Lost(d) | Failure::Aborted(d) | Failure::Close(d) => d,
        }
    }
}

/// Runs one session to its end. `stop` turning true ends the sending early (the echo is still
/// awaited and checked, and the session closed properly).
pub async fn run(
    url: &str,
    plan: Plan,
    mut rng: Rng,
    stats: &Stats,
    stop: &watch::Receiver<bool>,
) -> Result<(), Failure> {
    let connect_failed = |kind: &str, detail: String| Failure::Connect {
        kind: kind.to_owned(),
        detail,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| connect_failed("connect", e.to_string()))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("binary"));
    let ws = match timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => return Err(connect_failed("connect", "timed out".into())),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            return Err(connect_failed(
                &format!("refused_{status}"),
                format!("HTTP {status} instead of 101"),
            ));
        }
        Ok(Err(e)) => return Err(connect_failed("connect", e.to_string())),
        Ok(Ok((ws, _))) => ws,
    };
    if let tokio_tungstenite::MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_nodelay(true);
    }
    let (mut sink, mut stream) = ws.split();

    // Bytes handed to the sink so far: raised before each send, so an echo can never be ahead
    // of it.
    let sent = AtomicU64::new(0);
    // The writer's final total once it is done.
    let (done_tx, mut done_rx) = watch::channel(None::<u64>);

    let writer = async {
        let mut stop = stop.clone();
        let mut count = 0u64;
        let mut offset = 0u64;
        let result = loop {
            if *stop.borrow() || Instant::now() >= plan.until {
                break Ok(());
            }
            let Some(size) = plan.sizes.next(&mut rng, count) else {
                break Ok(());
            };
            let mut data = vec![0u8; size];
            pattern::fill(plan.seed, offset, &mut data);
            offset += size as u64;
            sent.store(offset, Ordering::Release);
            stats.bytes_sent.fetch_add(size as u64, Ordering::Relaxed);
            if let Err(e) = sink.send(Message::Binary(data.into())).await {
                break Err(format!("send failed after {offset} bytes: {e}"));
            }
            count += 1;
            stats.messages.fetch_add(1, Ordering::Relaxed);
            if size == HUGE {
                stats.huge_messages.fetch_add(1, Ordering::Relaxed);
            }
            if !plan.think.is_zero() {
                let max = plan.think.as_millis() as u64 * 2;
                let pause = Duration::from_millis(rng.between(0, max));
                tokio::select! {
                    () = sleep(pause) => {}
                    () = sleep_until(plan.until) => {}
                    _ = stop.changed() => {}
                }
            }
        };
        done_tx.send_replace(Some(offset));
        result
    };

    let reader = async {
        let mut scratch = Vec::new();
        let mut received = 0u64;
        if !plan.read_pause.is_zero() {
            sleep(plan.read_pause).await;
        }
        loop {
            if let Some(total) = *done_rx.borrow_and_update()
                && received >= total
            {
                return Ok(received);
            }
            let outstanding = |received: u64| sent.load(Ordering::Acquire).saturating_sub(received);
            tokio::select! {
                next = timeout(STALL_TIMEOUT, stream.next()) => match next {
                    Err(_) => {
                        let missing = outstanding(received);
                        if missing > 0 {
                            return Err(Failure::Lost(format!(
                                "nothing echoed for {}s with {missing} bytes outstanding \
                                 ({received} echoed)", STALL_TIMEOUT.as_secs())));
                        }
                    }
                    Ok(Some(Ok(Message::Binary(b)))) => {
                        let end = received + b.len() as u64;
                        if end > sent.load(Ordering::Acquire) {
                            return Err(Failure::Mismatch(format!(
                                "{end} bytes echoed, only {} sent", sent.load(Ordering::Acquire))));
                        }
                        pattern::verify(plan.seed, received, &b, &mut scratch)
                            .map_err(Failure::Mismatch)?;
                        received = end;
                        stats.bytes_echoed.fetch_add(b.len() as u64, Ordering::Relaxed);
                        if !plan.read_delay.is_zero() {
                            sleep(plan.read_delay).await;
                        }
                    }
                    Ok(Some(Ok(Message::Text(_)))) => {
                        return Err(Failure::Mismatch("a text message on a binary session".into()));
                    }
                    Ok(Some(Ok(Message::Close(c)))) => {
                        let what = format!("the proxy closed ({c:?})");
                        return Err(ended(what, outstanding(received), received));
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => {
                        return Err(ended(e.to_string(), outstanding(received), received));
                    }
                    Ok(None) => {
                        return Err(ended("connection ended".into(), outstanding(received), received));
                    }
                },
                _ = done_rx.changed() => {}
            }
        }
    };

    let (written, read) = tokio::join!(writer, reader);
    read?;
    written.map_err(Failure::Aborted)?;

    let close = async {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        sink.send(Message::Close(Some(frame)))
            .await
            .map_err(|e| format!("sending our close: {e}"))?;
        while let Some(m) = stream.next().await {
            match m {
                Ok(Message::Close(Some(f))) if f.code == CloseCode::Normal => return Ok(()),
                Ok(Message::Close(c)) => return Err(format!("answered with {c:?}")),
                Ok(Message::Binary(b)) => {
                    return Err(format!("{} bytes more than were sent", b.len()));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("no close answer: {e}")),
            }
        }
        Err("connection ended without a close answer".into())
    };
    match timeout(CLOSE_TIMEOUT, close).await {
        Err(_) => Err(Failure::Close(format!(
            "no close answer within {}s",
            CLOSE_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) if e.contains("more than were sent") => Err(Failure::Mismatch(e)),
        Ok(r) => r.map_err(Failure::Close),
    }
}

/// The session ended under us: data lost if any was outstanding, else aborted.
fn ended(what: String, missing: u64, received: u64) -> Failure {
    if missing > 0 {
        Failure::Lost(format!(
            "{what} with {missing} bytes not echoed ({received} were)"
        ))
    } else {
        Failure::Aborted(what)
    }
}

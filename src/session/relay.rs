//! The relay: bytes both ways between a client session and its target until either side ends,
//! then the close websockify would send.
//!
//! Each direction is a loop that holds at most one message or one read buffer, and awaits the
//! other side before reading more: a slow reader slows its writer (backpressure) instead of
//! making us buffer. The two loops run concurrently in the session's task, so neither side can
//! stall the other (an echoing target that is blocked writing to us is still read).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::clock::sleep_until;
use crate::edge::stream::{BULK_READ, TargetReader, TargetStream, TargetWriter};
use crate::process::shutdown::Shutdown;
use crate::session::record::Recorder;
use crate::session::{ClientRx, ClientTx, Close, Inbound, RecvError, close_code};
use crate::telemetry::metrics::Direction;

/// How long we wait for the client to answer our close frame before dropping the connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long, after the closing handshake and our FIN, we read and drop what the client still
/// sends (frames it sent before it saw our close) before dropping the connection; a client
/// that closes its side ends this at once.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What the relay needs besides the two ends.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Ping an idle client this often.
    pub heartbeat: Option<Duration>,
    /// `--session-idle-timeout`: end the session after this long without data either way.
    pub idle_timeout: Option<Duration>,
    /// Log each message's size and direction.
    pub traffic: bool,
    /// `--record`: this session's recording.
    pub record: Option<Recorder>,
}

/// Why and how a session ended, for the session's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client sent a close frame (its code, if any); we echoed it.
    ClientClosed(Option<Close>),
    /// The target hung up; we sent 1000 "Target closed" after its last bytes.
    TargetClosed,
    /// Reading from or writing to the target failed.
    TargetError(String),
    /// The client broke the protocol or a limit; we sent this close.
    ClientError(Close),
    /// The client's connection ended without a close frame.
    ClientGone(String),
    /// The server is shutting down; we sent 1001.
    Shutdown,
    /// The target could not be connected; we sent 1011 as websockify does.
    TargetUnreachable(String),
    /// No data either way for `--session-idle-timeout`; we sent 1001.
    IdleTimeout(Duration),
}

impl Ending {
    /// The close code sent or received, or 1006 when none was exchanged.
    pub fn code(&self) -> u16 {
        match self {
            Ending::ClientClosed(Some(c)) | Ending::ClientError(c) => c.code,
            Ending::ClientClosed(None) => 1005,
            Ending::TargetClosed => close_code::NORMAL,
            Ending::TargetError(_) | Ending::TargetUnreachable(_) => close_code::INTERNAL_ERROR,
            Ending::ClientGone(_) => close_code::ABNORMAL,
            Ending::Shutdown | Ending::IdleTimeout(_) => close_code::GOING_AWAY,
        }
    }

    /// The outcome as a metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Ending::ClientClosed(_) => "client_closed",
            Ending::TargetClosed => "target_closed",
            Ending::TargetError(_) => "target_error",
            Ending::ClientError(_) => "protocol_error",
            Ending::ClientGone(_) => "client_gone",
            Ending::Shutdown => "shutdown",
            Ending::TargetUnreachable(_) => "target_unreachable",
            Ending::IdleTimeout(_) => "idle_timeout",
        }
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::ClientClosed(Some(c)) => write!(f, "client closed with {c}"),
            Ending::ClientClosed(None) => f.write_str("client closed"),
            Ending::TargetClosed => f.write_str("target closed"),
            Ending::TargetError(e) => write!(f, "target error: {e}"),
            Ending::ClientError(c) => write!(f, "closed with {c}"),
            Ending::ClientGone(e) => write!(f, "client gone: {e}"),
            Ending::Shutdown => f.write_str("server shutting down"),
            Ending::TargetUnreachable(e) => write!(f, "target unreachable: {e}"),
            Ending::IdleTimeout(after) => {
                write!(
                    f,
                    "no data either way for {}s (--session-idle-timeout)",
                    after.as_secs()
                )
            }
        }
    }
}

/// Byte counts of one session, payload bytes as the target sees them.
#[derive(Debug, Default)]
pub struct Traffic {
    pub from_client: AtomicU64,
    pub to_client: AtomicU64,
}

/// How the client-to-target direction ended.
enum Upstream {
    Close(Option<Close>),
    Error(RecvError),
    TargetWrite(std::io::Error),
}

/// How the target-to-client direction ended.
enum Downstream {
    TargetEof,
    TargetRead(std::io::Error),
    ClientGone(String),
    Shutdown,
    Idle(Duration),
}

pub const TARGET_CLOSED: Close = Close::new(close_code::NORMAL, "Target closed");
pub const TARGET_ERROR: Close = Close::new(close_code::INTERNAL_ERROR, "Target connection error");
pub const GOING_AWAY: Close = Close::new(close_code::GOING_AWAY, "Going away");
pub const IDLE: Close = Close::new(close_code::GOING_AWAY, "Session idle timeout");

/// Relays until either side ends, closes the client side as websockify does, and reports how.
pub async fn relay<R: ClientRx, T: ClientTx>(
    mut rx: R,
    mut tx: T,
    target: TargetStream,
    options: &RelayOptions,
    traffic: &Traffic,
    mut shutdown: Shutdown,
) -> Ending {
    let (target_r, target_w) = target.into_split();
    let activity = Activity::new(options);

    // Boxed so that it can be dropped early, giving `rx` back to drain the client.
    let mut up = Box::pin(upstream(
        &mut rx,
        target_w,
        options.traffic,
        options.record.as_ref(),
        traffic,
        &activity,
    ));

    let first = {
        let down = downstream(
            target_r,
            &mut tx,
            options,
            traffic,
            &activity,
            &mut shutdown,
        );
        tokio::pin!(down);
        tokio::select! {
            end = &mut up => Ok(end),
            end = &mut down => Err(end),
        }
    };

    match first {
        Ok(Upstream::Close(close)) => {
            drop(up);
            if tx.finish().await.is_ok() {
                rx.linger(tokio::time::Instant::now() + CLOSE_LINGER).await;
            }
            Ending::ClientClosed(close)
        }
        Ok(Upstream::Error(RecvError::Protocol(close))) => {
            let _ = tx.close(&close).await;
            Ending::ClientError(close)
        }
        Ok(Upstream::Error(RecvError::Gone(why))) => Ending::ClientGone(why),
        Ok(Upstream::TargetWrite(e)) => {
            drop(up);
            if tx.close(&TARGET_ERROR).await.is_ok() {
                drain_until_close(&mut rx, tokio::time::Instant::now() + CLOSE_TIMEOUT).await;
            }
            Ending::TargetError(e.to_string())
        }
        Err(Downstream::ClientGone(why)) => Ending::ClientGone(why),
        Err(down) => {
            let (close, ending) = match down {
                Downstream::TargetEof => (TARGET_CLOSED, Ending::TargetClosed),
                Downstream::TargetRead(e) => (TARGET_ERROR, Ending::TargetError(e.to_string())),
                Downstream::Idle(after) => (IDLE, Ending::IdleTimeout(after)),
                _ => (GOING_AWAY, Ending::Shutdown),
            };
            if tx.close(&close).await.is_ok() {
                // Keep delivering what the client sends until its close answers ours.
                let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
                let delivered = tokio::time::timeout_at(deadline, &mut up).await;
                if let Ok(Upstream::TargetWrite(_)) = delivered {
                    // The target is gone too: the rest of the client's bytes go nowhere.
                    drop(up);
                    drain_until_close(&mut rx, deadline).await;
                }
            }
            ending
        }
    }
}

/// After our close, reads (and drops) what the client still sends until its close answers
/// ours. Closing with the client's bytes unread would reset the connection, and a reset can
/// destroy our close frame before the client reads it (a client busy sending a large message
/// reads late).
async fn drain_until_close<R: ClientRx>(rx: &mut R, deadline: tokio::time::Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(Inbound::Data(_) | Inbound::Part(_)) = rx.recv().await {}
    })
    .await;
}

/// When frames and data last passed either way, for the heartbeat and the idle timeout. A
/// session with neither reads no clock per message.
struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last frame either way (pings included).
    last_frame: AtomicU64,
    /// Milliseconds since `started` of the last data either way.
    last_data: AtomicU64,
    /// A heartbeat or an idle timeout is set: the times above are kept.
    kept: bool,
}

impl Activity {
    fn new(options: &RelayOptions) -> Activity {
        Activity {
            started: Instant::now(),
            last_frame: AtomicU64::new(0),
            last_data: AtomicU64::new(0),
            kept: options.heartbeat.is_some() || options.idle_timeout.is_some(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Data passed.
    fn data(&self) {
        if self.kept {
            let now = self.now();
            self.last_frame.store(now, Ordering::Relaxed);
            self.last_data.store(now, Ordering::Relaxed);
        }
    }

    /// A frame without data (our ping) passed.
    fn frame(&self) {
        self.last_frame.store(self.now(), Ordering::Relaxed);
    }

    /// When to ping: `heartbeat` after the last frame either way.
    fn ping_at(&self, heartbeat: Option<Duration>) -> Option<tokio::time::Instant> {
        self.after(&self.last_frame, heartbeat)
    }

    /// When the session is idle: `idle_timeout` after the last data either way.
    fn idle_at(&self, idle_timeout: Option<Duration>) -> Option<tokio::time::Instant> {
        self.after(&self.last_data, idle_timeout)
    }

    fn after(&self, last: &AtomicU64, wait: Option<Duration>) -> Option<tokio::time::Instant> {
        wait.map(|wait| {
            let last = Duration::from_millis(last.load(Ordering::Relaxed));
            tokio::time::Instant::from_std(self.started + last + wait)
        })
    }
}

/// Client to target: each message's payload written whole before the next is read.
async fn upstream<R: ClientRx>(
    rx: &mut R,
    mut target: TargetWriter,
    log_traffic: bool,
    record: Option<&Recorder>,
    traffic: &Traffic,
    activity: &Activity,
) -> Upstream {
    let metrics = crate::telemetry::metrics::get();
    loop {
        let (data, message_ends) = match rx.recv().await {
            Ok(Inbound::Data(data)) => (data, true),
            Ok(Inbound::Part(data)) => (data, false),
            Ok(Inbound::Close(close)) => {
                let _ = target.shutdown().await;
                return Upstream::Close(close);
            }
            Err(e) => return Upstream::Error(e),
        };
        activity.data();
        if log_traffic {
            tracing::info!(target: "websockify::traffic", bytes = data.len(), "client -> target");
        }
        if let Some(record) = record {
            record.received_from_client(&data);
        }
        if let Err(e) = target.write_all(&data).await {
            return Upstream::TargetWrite(e);
        }
        traffic
            .from_client
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if message_ends {
            metrics.relayed(Direction::FromClient, data.len());
        } else {
            metrics.relayed_bytes(Direction::FromClient, data.len());
        }
    }
}

/// Target to client: each read sent as one message, pings when idle, stops on shutdown.
async fn downstream<T: ClientTx>(
    mut target: TargetReader,
    tx: &mut T,
    options: &RelayOptions,
    traffic: &Traffic,
    activity: &Activity,
    shutdown: &mut Shutdown,
) -> Downstream {
    let metrics = crate::telemetry::metrics::get();
    // Borrowed only while the target sends (see `read_lazily`): idle sessions hold none.
    let mut buf = BytesMut::new();
    // One wait for the whole session: made anew for each message, it would join and leave
    // the shutdown signal's list of waiters (a lock each way) every time.
    let shutdown = shutdown.recv();
    tokio::pin!(shutdown);
    loop {
        let ping_at = activity.ping_at(options.heartbeat);
        let idle_at = activity.idle_at(options.idle_timeout);
        // Biased (polled in this order) rather than a random first branch per wake: the rare
        // ones come first, so that a target that always has data cannot starve them.
        let read = tokio::select! {
            biased;
            _ = &mut shutdown => return Downstream::Shutdown,
            // (A branch without a deadline is not polled at all.)
            _ = sleep_until(idle_at), if idle_at.is_some() => {
                // The client's data may have come while we slept: only a real silence ends it.
                if activity.idle_at(options.idle_timeout).is_some_and(|at| at <= tokio::time::Instant::now()) {
                    return Downstream::Idle(options.idle_timeout.unwrap_or_default());
                }
                continue;
            }
            _ = sleep_until(ping_at), if ping_at.is_some() => {
                activity.frame();
                if let Err(e) = tx.ping().await {
                    return Downstream::ClientGone(e.0);
                }
                continue;
            }
            read = target.read_lazily(&mut buf, BULK_READ) => read,
        };
        match read {
            Ok(0) => return Downstream::TargetEof,
            Ok(n) => {
                activity.data();
                if options.traffic {
                    tracing::info!(target: "websockify::traffic", bytes = n, "target -> client");
                }
                // The filled part becomes the message without a copy; the buffer's room is
                // reused once the message is written.
                let data = buf.split().freeze();
                if let Some(record) = &options.record {
                    record.sent_to_client(&data);
                }
                if let Err(e) = tx.send(data).await {
                    return Downstream::ClientGone(e.0);
                }
                traffic.to_client.fetch_add(n as u64, Ordering::Relaxed);
                metrics.relayed(Direction::ToClient, n);
            }
            Err(e) => return Downstream::TargetRead(e),
        }
    }
}

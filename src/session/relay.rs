//! The relay: bytes both ways between a client session and its target until either side ends,
//! then the close websockify would send.
//!
//! Each direction is a loop that holds at most one message or one read buffer, and awaits the
//! other side before reading more: a slow reader slows its writer (backpressure) instead of
//! making us buffer. The two loops run concurrently in the session's task, so neither side can
//! stall the other (an echoing target that is blocked writing to us is still read).
//!
//! No client can hold a session by not reading: every write to it races the session's clocks
//! (shutdown, `--session-idle-timeout`, the heartbeat) besides its own `--send-timeout`, and a
//! client that takes no byte is idle. A write given up ends the session; its close is then
//! tried for at most [`CLOSE_TIMEOUT`], and only if no frame was cut off.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::clock::sleep_until;
use crate::edge::stream::{BULK_READ, TargetReader, TargetStream, TargetWriter};
use crate::process::shutdown::Shutdown;
use crate::session::activity::Activity;
use crate::session::record::Recorder;
use crate::session::registry::Eviction;
use crate::session::stop::Stop;
use crate::session::{ClientRx, ClientTx, Close, Inbound, RecvError, SendError, close_code};
use crate::telemetry::metrics::Direction;

/// How long we wait for the client to answer our close frame before dropping the connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long, after the closing handshake and our FIN, we read and drop what the client still
/// sends (frames it sent before it saw our close) before dropping the connection; a client
/// that closes its side ends this at once.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What the relay needs besides the two ends and the session's [`Activity`] (its heartbeat
/// and idle timeout).
#[derive(Debug, Clone)]
pub struct RelayOptions {
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
    /// The client stopped answering (a ping that could not be written, or one it did not
    /// answer, or a message it took no byte of for `--send-timeout`); we sent 1001 if a close
    /// could still be written.
    Unresponsive(String),
    /// An operator ended it (`DELETE /sessions/{id}`); we sent this close (1008).
    Evicted(Close),
}

impl Ending {
    /// The close code sent or received, or 1006 when none was exchanged.
    pub fn code(&self) -> u16 {
        match self {
            Ending::ClientClosed(Some(c)) | Ending::ClientError(c) | Ending::Evicted(c) => c.code,
            Ending::ClientClosed(None) => 1005,
            Ending::TargetClosed => close_code::NORMAL,
            Ending::TargetError(_) | Ending::TargetUnreachable(_) => close_code::INTERNAL_ERROR,
            Ending::ClientGone(_) => close_code::ABNORMAL,
            Ending::Shutdown | Ending::IdleTimeout(_) | Ending::Unresponsive(_) => {
                close_code::GOING_AWAY
            }
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
            Ending::Unresponsive(_) => "client_unresponsive",
            Ending::Evicted(_) => "closed_by_operator",
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
            Ending::Unresponsive(why) => write!(f, "client unresponsive: {why}"),
            Ending::Evicted(c) => write!(f, "ended by an operator, closed with {c}"),
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

/// What the relay shares with the world outside the session: its byte counts, its clocks
/// (heartbeat, idle), and, when the session is listed, an operator's request to end it.
#[derive(Debug, Clone, Copy)]
pub struct Ties<'a> {
    pub traffic: &'a Traffic,
    pub activity: &'a Activity,
    pub eviction: Option<&'a Eviction>,
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
    Unresponsive(String),
    /// The relay asked it to stop, the client's side having ended; or an operator did.
    Stopped,
}

pub const TARGET_CLOSED: Close = Close::new(close_code::NORMAL, "Target closed");
pub const TARGET_ERROR: Close = Close::new(close_code::INTERNAL_ERROR, "Target connection error");
pub const GOING_AWAY: Close = Close::new(close_code::GOING_AWAY, "Going away");
pub const IDLE: Close = Close::new(close_code::GOING_AWAY, "Session idle timeout");
pub const UNRESPONSIVE: Close = Close::new(close_code::GOING_AWAY, "Client not responding");

/// Relays until either side ends, closes the client side as websockify does, and reports how.
///
/// The halves are borrowed, not moved in, and this is not an `async fn`: one keeps its
/// arguments beside the locals they go to, and this future lives as long as the session.
// An `async fn` would keep its arguments twice (see the doc comment).
#[allow(clippy::manual_async_fn)]
pub fn relay<'a, R: ClientRx, T: ClientTx>(
    rx: &'a mut R,
    tx: &'a mut T,
    target: TargetStream,
    options: &'a RelayOptions,
    ties: Ties<'a>,
    shutdown: &'a mut Shutdown,
) -> impl Future<Output = Ending> + Send + 'a {
    async move {
        let (target_r, target_w) = target.into_split();

        // Boxed so that it can be dropped early, giving `rx` back to drain the client.
        let mut up = Box::pin(upstream(
            &mut *rx,
            target_w,
            options.traffic,
            options.record.as_ref(),
            ties,
        ));

        // Tells the target-to-client direction to stop at its next message boundary: the relay
        // once the client's side ended, or an operator (a listed session's eviction raises
        // this same `Stop`, so that waiting for it costs the session nothing more).
        let own_stop = Stop::new();
        let stop = ties.eviction.map_or(&own_stop, Eviction::stop);
        let down = downstream(target_r, &mut *tx, options, ties, shutdown, stop);
        let first = Race {
            activity: ties.activity,
            up: &mut up,
            down,
            stop,
            up_ended: None,
            finishing: None,
        }
        .await;

        match first {
            Ok(Upstream::Close(close)) => {
                drop(up);
                if within_close_timeout(tx.finish()).await {
                    rx.linger(tokio::time::Instant::now() + CLOSE_LINGER).await;
                }
                Ending::ClientClosed(close)
            }
            Ok(Upstream::Error(RecvError::Protocol(close))) => {
                within_close_timeout(tx.close(&close)).await;
                Ending::ClientError(close)
            }
            Ok(Upstream::Error(RecvError::Gone(why))) => Ending::ClientGone(why),
            Ok(Upstream::TargetWrite(e)) => {
                drop(up);
                if within_close_timeout(tx.close(&TARGET_ERROR)).await {
                    drain_until_close(rx, tokio::time::Instant::now() + CLOSE_TIMEOUT).await;
                }
                Ending::TargetError(e.to_string())
            }
            Err(down) => {
                let (close, ending) = match down {
                    Downstream::ClientGone(why) => return Ending::ClientGone(why),
                    Downstream::TargetEof => (TARGET_CLOSED, Ending::TargetClosed),
                    Downstream::TargetRead(e) => (TARGET_ERROR, Ending::TargetError(e.to_string())),
                    Downstream::Idle(after) => (IDLE, Ending::IdleTimeout(after)),
                    Downstream::Unresponsive(why) => (UNRESPONSIVE, Ending::Unresponsive(why)),
                    // The relay asks to stop only once the client's side ended: stopped first, an
                    // operator asked.
                    Downstream::Stopped => match ties.eviction.filter(|e| e.is_asked()) {
                        Some(eviction) => {
                            let close = eviction.close();
                            (close.clone(), Ending::Evicted(close))
                        }
                        None => (GOING_AWAY, Ending::Shutdown),
                    },
                    Downstream::Shutdown => (GOING_AWAY, Ending::Shutdown),
                };
                if within_close_timeout(tx.close(&close)).await {
                    // Keep delivering what the client sends until its close answers ours.
                    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
                    let delivered = tokio::time::timeout_at(deadline, &mut up).await;
                    if let Ok(Upstream::TargetWrite(_)) = delivered {
                        // The target is gone too: the rest of the client's bytes go nowhere.
                        drop(up);
                        drain_until_close(rx, deadline).await;
                    }
                }
                ending
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Both directions until either ends; when the client's side ends first, the message to
    /// it being written is finished (within [`CLOSE_TIMEOUT`]) before any closing frame,
    /// which could not follow a frame cut off.
    ///
    /// A future of its own, awaited once, rather than a `select!` and a timeout in
    /// [`relay`]: a session's future is as large as its largest state and an idle session
    /// keeps it whole, and the compiler gives a local that lives across two awaits a place
    /// of its own beside every later step. Held here and awaited once, the target-to-client
    /// direction (the largest part of a session) shares its space with the closing steps
    /// that follow.
    struct Race<'a, U, D> {
        // Its `--busy-poll` clock.
        activity: &'a Activity,
        up: &'a mut U,
        #[pin]
        down: D,
        stop: &'a Stop,
        // The client's side ended first: how, and when finishing the message gives up.
        up_ended: Option<Upstream>,
        #[pin]
        finishing: Option<tokio::time::Sleep>,
    }
}

impl<U, D> Future for Race<'_, U, D>
where
    U: Future<Output = Upstream> + Unpin,
    D: Future<Output = Downstream>,
{
    type Output = Result<Upstream, Downstream>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let mut this = self.project();
        if this.up_ended.is_none() {
            // The target-to-client direction first: polled second, one connection's
            // throughput fell by a tenth (docs/performance.md, step 32).
            if let Poll::Ready(end) = this.down.as_mut().poll(cx) {
                return Poll::Ready(Err(end));
            }
            match std::pin::Pin::new(&mut **this.up).poll(cx) {
                Poll::Ready(end) => {
                    *this.up_ended = Some(end);
                    this.stop.ask();
                    this.finishing.set(Some(tokio::time::sleep(CLOSE_TIMEOUT)));
                }
                Poll::Pending => {
                    if this.activity.polls_for_client() {
                        poll_again_after_io(cx);
                    }
                    return Poll::Pending;
                }
            }
        }
        let finished = this.down.poll(cx).is_ready()
            || this
                .finishing
                .as_pin_mut()
                .is_some_and(|deadline| deadline.poll(cx).is_ready());
        match (finished, this.up_ended.take()) {
            (true, Some(end)) => Poll::Ready(Ok(end)),
            (false, end) => {
                *this.up_ended = end;
                Poll::Pending
            }
            // Never: the client's side ended before this point.
            (true, None) => Poll::Pending,
        }
    }
}

/// `--busy-poll`: has the runtime poll this task again as soon as it has looked for I/O
/// without sleeping, rather than wait to be woken. Through tokio's `yield_now`, which puts the
/// task behind the I/O driver's next turn (it then waits on nothing) and behind every task
/// ready to run; a task woken by hand would be run again before any I/O was looked at.
fn poll_again_after_io(cx: &mut std::task::Context<'_>) {
    // Its first poll registers the task to be run after the driver's turn, and is Pending.
    let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
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

/// A close (or the closing handshake's end) written within [`CLOSE_TIMEOUT`]: a client that
/// takes nothing gets no longer than that, whatever `--send-timeout` says.
async fn within_close_timeout(close: impl Future<Output = Result<(), SendError>>) -> bool {
    matches!(tokio::time::timeout(CLOSE_TIMEOUT, close).await, Ok(Ok(())))
}

/// Client to target: each message's payload written whole before the next is read.
async fn upstream<R: ClientRx>(
    rx: &mut R,
    mut target: TargetWriter,
    log_traffic: bool,
    record: Option<&Recorder>,
    ties: Ties<'_>,
) -> Upstream {
    let Ties {
        traffic, activity, ..
    } = ties;
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
        activity.heard_from_client();
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

/// Target to client: each read sent as one message, pings when idle, the pongs the receiving
/// half owes, stops on shutdown. Every write races the session's clocks ([`write`]).
async fn downstream<T: ClientTx>(
    mut target: TargetReader,
    tx: &mut T,
    options: &RelayOptions,
    ties: Ties<'_>,
    shutdown: &mut Shutdown,
    stop: &Stop,
) -> Downstream {
    let Ties {
        traffic, activity, ..
    } = ties;
    let metrics = crate::telemetry::metrics::get();
    // Borrowed only while the target sends (see `read_lazily`): idle sessions hold none.
    let mut buf = BytesMut::new();
    // One wait for the whole session: made anew for each message, it would join and leave
    // the shutdown signal's list of waiters (a lock each way) every time.
    let shutdown = shutdown.recv();
    tokio::pin!(shutdown);
    loop {
        // One timer for the idle timeout and the heartbeat, at the earlier of the two: the
        // session's future has room for every timer it waits on, idle or not.
        let clock = match (activity.idle_at(), activity.ping_at()) {
            (Some(idle), Some(ping)) => Some(idle.min(ping)),
            (idle, ping) => idle.or(ping),
        };
        // Biased (polled in this order) rather than a random first branch per wake: the rare
        // ones come first, so that a target that always has data cannot starve them.
        let read = tokio::select! {
            biased;
            _ = &mut shutdown => return Downstream::Shutdown,
            () = stop.asked() => return Downstream::Stopped,
            // (A branch without a deadline is not polled at all.)
            _ = sleep_until(clock), if clock.is_some() => {
                // The client's data may have come while we slept: only a real silence ends it.
                if activity.is_idle() {
                    return Downstream::Idle(activity.idle_timeout.unwrap_or_default());
                }
                let now = tokio::time::Instant::now();
                if activity.ping_at().is_some_and(|at| at <= now) {
                    activity.frame();
                    if let Err(end) = write(tx.ping(), ties, &mut shutdown).await {
                        return end;
                    }
                }
                continue;
            }
            () = tx.owed() => {
                if let Err(end) = write(tx.answer(), ties, &mut shutdown).await {
                    return end;
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
                if let Err(end) = write(tx.send(data), ties, &mut shutdown).await {
                    return end;
                }
                activity.sent_to_client();
                traffic.to_client.fetch_add(n as u64, Ordering::Relaxed);
                metrics.relayed(Direction::ToClient, n);
            }
            Err(e) => return Downstream::TargetRead(e),
        }
    }
}

/// A write to the client, raced against the session's clocks: shutdown, the idle timeout (a
/// client that takes no byte is idle) and the heartbeat (a ping that falls due while a write
/// cannot finish is a ping that cannot be written). Whichever ends first ends the session;
/// the write itself ends it when it fails (`--send-timeout` included). An operator's end
/// waits for the message being written (see [`Eviction`]).
fn write<'a, F, S>(write: F, ties: Ties<'a>, shutdown: &'a mut S) -> Raced<'a, F, S>
where
    F: Future<Output = Result<(), SendError>>,
    S: Future<Output = ()> + Unpin,
{
    Raced {
        write,
        activity: ties.activity,
        shutdown,
        clock: None,
    }
}

pin_project_lite::pin_project! {
    /// [`write`]'s future. Written out rather than an `async fn` with a `select!`, which
    /// would keep the write's future twice (the argument, and the pinned local it is moved
    /// into): every session's future has room for its largest write, idle or not.
    struct Raced<'a, F, S> {
        #[pin]
        write: F,
        activity: &'a Activity,
        shutdown: &'a mut S,
        // The earlier of the idle and heartbeat deadlines, made when first needed and moved
        // as they move (one timer for both: the session's future has room for it).
        #[pin]
        clock: Option<tokio::time::Sleep>,
    }
}

impl<F, S> Future for Raced<'_, F, S>
where
    F: Future<Output = Result<(), SendError>>,
    S: Future<Output = ()> + Unpin,
{
    type Output = Result<(), Downstream>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let mut this = self.project();
        // In this order, as a biased select: the write first, the rare ones after.
        if let Poll::Ready(written) = this.write.poll(cx) {
            return Poll::Ready(written.map_err(|e| match e {
                SendError::Unresponsive(why) => Downstream::Unresponsive(why),
                SendError::Gone(why) => Downstream::ClientGone(why),
            }));
        }
        if std::pin::Pin::new(&mut **this.shutdown).poll(cx).is_ready() {
            return Poll::Ready(Err(Downstream::Shutdown));
        }
        let activity = *this.activity;
        // A clock that fires while data passed (the client took bytes) is moved on, and
        // polled again so that it wakes us at its new deadline. (One that fired stays put
        // only if the clock went back: then the task yields rather than spin here.)
        let mut fired = None;
        loop {
            let at = match (activity.idle_at(), activity.ping_at()) {
                (Some(idle), Some(ping)) => idle.min(ping),
                (Some(at), None) | (None, Some(at)) => at,
                (None, None) => break,
            };
            if !due(this.clock.as_mut(), at, cx) {
                break;
            }
            if activity.is_idle() {
                let after = activity.idle_timeout.unwrap_or_default();
                return Poll::Ready(Err(Downstream::Idle(after)));
            }
            if activity
                .ping_at()
                .is_some_and(|at| at <= tokio::time::Instant::now())
            {
                let after = activity.heartbeat.unwrap_or_default().as_secs();
                return Poll::Ready(Err(Downstream::Unresponsive(format!(
                    "the client took no byte for {after}s, so a ping could not be written \
                     (--heartbeat)"
                ))));
            }
            if fired.replace(at) == Some(at) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        Poll::Pending
    }
}

/// Sets `clock` to `at` (made, or moved there) and polls it: true once `at` has passed.
fn due(
    mut clock: std::pin::Pin<&mut Option<tokio::time::Sleep>>,
    at: tokio::time::Instant,
    cx: &mut std::task::Context<'_>,
) -> bool {
    match clock.as_mut().as_pin_mut() {
        Some(sleep) if sleep.deadline() == at => {}
        Some(sleep) => sleep.reset(at),
        None => clock.set(Some(tokio::time::sleep_until(at))),
    }
    clock
        .as_pin_mut()
        .is_some_and(|sleep| sleep.poll(cx).is_ready())
}

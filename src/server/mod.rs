//! The server: the listener's accept loop, one [`handler::Handler`] task per connection, and
//! the lifecycle rules that end it (`--run-once`, `--timeout`, `--idle-timeout`, signals).
//!
//! Signals: SIGTERM/SIGINT stop accepting, turn `/readyz` to 503 and let sessions drain for
//! `--shutdown-grace`; then (or at a second signal) sessions are closed with 1001 "Going
//! away", and a third signal exits at once. SIGHUP reloads the certificate and re-creates the
//! token and auth plugins from their sources; a failed reload keeps what was there.
//!
//! - `listen`: binding TCP, unix and inetd sockets.
//! - `ops`: the `--metrics-listen` port: `/metrics`, `/healthz`, `/readyz`.
//! - `handler`: one connection from its first bytes to the session's log line.
//! - `sniff`: TLS, Flash or HTTP, from the first bytes.
//! - `tracker`: live connection and session counts the lifecycle rules watch.
//! - `workers`: which runtime a connection runs on (one per CPU with `--busy-poll`).

mod h2;
pub mod handler;
pub mod tracker;
pub mod workers;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use anyhow::Context;

use crate::clock::sleep_until;
use crate::config::Config;
use crate::config::Route;
use crate::edge::listen::Listener;
use crate::edge::tls::ServerTls;
use crate::gate::admission;
use crate::gate::{Auth, Gate, Targets};
use crate::plugin::Reloadable;
use crate::process::shutdown::Trigger;
use crate::process::wrap::Wrapper;
use crate::session::target::Target;
use crate::telemetry::ops::{self, Readiness};
use handler::{Handler, Shared};
use tracker::Tracker;

/// How long sessions get to finish their closing handshakes once they are told to close: the
/// relay's own close timeout and a little more.
const CLOSE_WAIT: Duration = Duration::from_secs(6);

/// Why the server stopped accepting connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Signal,
    RunOnce,
    Timeout,
    IdleTimeout,
    /// The wrapped program exited (`--wrap-mode exit`); the proxy exits with this status.
    WrapExited(i32),
}

impl StopReason {
    /// The process's exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            StopReason::WrapExited(code) => u8::try_from(code & 0xff).unwrap_or(1),
            _ => 0,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Signal => "signal received",
            StopReason::RunOnce => "--run-once: the WebSocket session began",
            StopReason::Timeout => "--timeout reached",
            StopReason::IdleTimeout => "--idle-timeout reached with no active connection",
            StopReason::WrapExited(code) => {
                return write!(f, "the wrapped command exited with status {code}");
            }
        })
    }
}

/// Where the requests to terminate come from: SIGTERM and SIGINT in the server, a channel in
/// the tests of the drain.
trait Terminations {
    /// Completes at the next request to terminate.
    fn recv(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

/// Terminating signals, SIGTERM and SIGINT.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

impl Terminations for Signals {
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Serves on an already bound listener.
pub async fn serve(config: Config, listener: Listener) -> anyhow::Result<StopReason> {
    let mut signals = Signals::new()?;
    let mut hangup = signal(SignalKind::hangup())?;
    let tls = ServerTls::load(&config.tls)?;
    let web = match &config.web {
        Some(w) => Some(crate::web::WebRoot::new(&w.dir, w.file_only, w.status)?),
        None => None,
    };
    if let Some(web) = &web {
        tracing::info!("serving files from {}", web.root().display());
        // The start page's last minutes; the task ends with the web root.
        if let Some(sampler) = web.status_sampler() {
            tokio::spawn(sampler);
        }
    }
    let readiness = Arc::new(Readiness::default());
    // The live sessions, listed only for the admin API.
    let sessions = match config.admin_token {
        Some(_) => crate::session::registry::Registry::on(),
        None => crate::session::registry::Registry::off(),
    };
    if let Some(addr) = &config.metrics_listen {
        let ops = Listener::bind(
            &crate::config::Listen::Tcp(addr.clone()),
            config.prefer_ipv6,
            config.limits.send_timeout,
        )
        .await
        .context("--metrics-listen")?;
        let admin = config
            .admin_token
            .clone()
            .map(|token| crate::telemetry::admin::Admin {
                token,
                sessions: sessions.clone(),
            });
        tracing::info!(
            "serving /metrics, /healthz and /readyz on {}",
            ops.describe()
        );
        if admin.is_some() {
            tracing::info!(
                "serving the admin API (/sessions) on {}, to requests with the --admin-token",
                ops.describe()
            );
        }
        tokio::spawn(ops::serve(ops, readiness.clone(), admin));
    }
    let auth = match &config.auth {
        Some(a) => {
            let plugin = crate::plugin::Plugin::load(
                &a.plugin,
                websockify_plugin_api::Kind::Auth,
                config.limits.max_plugin_calls,
            )
            .context("--auth-plugin")?;
            let instance = Reloadable::create(plugin, &a.source).context("--auth-plugin")?;
            tracing::info!(
                "auth plugin {} ready{}",
                instance.describe(),
                if a.web {
                    ", guarding the web directory too"
                } else {
                    ""
                }
            );
            Some(Auth {
                plugin: Arc::new(instance),
                web: a.web,
            })
        }
        None => None,
    };
    let target_tls = match &config.target_tls {
        Some(t) => Some(crate::edge::tls::client_config(t.ca.as_deref()).context("--ssl-target")?),
        None => None,
    };
    if config.tls.verify_client.is_none() && config.cafile_without_verify {
        tracing::warn!("--cafile has no effect without --verify-client");
    }
    // Last of the fallible steps: the wrapped program starts only once everything else is
    // ready.
    let (wrapper, targets) = match &config.route {
        Route::Static(target) => (None, Targets::Static(target.clone())),
        Route::Token(t) => {
            let plugin = crate::plugin::Plugin::load(
                &t.plugin,
                websockify_plugin_api::Kind::Resolver,
                config.limits.max_plugin_calls,
            )
            .context("--token-plugin")?;
            let instance = Reloadable::create(plugin, &t.source).context("--token-plugin")?;
            tracing::info!("token plugin {} ready", instance.describe());
            let plugin = Arc::new(instance);
            let host_token = t.host_token;
            (None, Targets::Token { plugin, host_token })
        }
        Route::Wrap(wrap) => {
            let port = listener
                .tcp_port()
                .context("wrap mode needs a TCP listen port")?;
            let wrapper = Wrapper::start(wrap, port)?;
            let target = Target::Loopback(wrapper.port);
            (Some(wrapper), Targets::Static(target))
        }
    };
    let admission = admission::Admission::new(
        config.limits.max_connections.unwrap_or_else(|| {
            let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
            crate::config::limits::connections_for_fd_limit(soft)
        }),
        config.limits.max_connections_per_ip,
    );
    tracing::info!(
        "serving at most {} connections at once{}",
        admission.max_total(),
        match config.limits.max_connections_per_ip {
            Some(n) => format!(", {n} per client address"),
            None => String::new(),
        }
    );
    warn_of_cookie_tokens(&targets, auth.as_ref());
    let config = Arc::new(config);
    let tracker = Tracker::new();
    let shutdown = Trigger::new();
    let where_ = listener.describe();
    match &tls {
        Some(tls) => {
            tracing::info!(
                "TLS with {} ({})",
                config.tls.cert.display(),
                if tls.ssl_only() {
                    "TLS only"
                } else {
                    "plain and TLS"
                }
            );
            tokio::spawn(tls.clone().watch(shutdown.subscribe()));
            if config.tls.min_version == crate::config::SslVersion::Tlsv1_1 {
                tracing::warn!(
                    "--ssl-version tlsv1_1: rustls has no TLS 1.1; the minimum is TLS 1.2"
                );
            }
        }
        None => tracing::info!("no TLS ({} not found)", config.tls.cert.display()),
    }
    // Kept until the sessions drained, below: its threads run them.
    let connections =
        workers::Connections::start(&config).context("starting the connection threads")?;
    // Ready before the line that tells the world we listen.
    readiness.set(true);
    tracing::info!("listening on {where_}");
    let shared = Arc::new(Shared {
        config: config.clone(),
        tls: tls.clone(),
        target_tls,
        web,
        gate: Gate::new(
            admission,
            auth,
            targets,
            config.limits.allow_target.clone(),
            config.prefer_ipv6,
        ),
        tracker: tracker.clone(),
        ids: Default::default(),
        sessions,
    });
    tracing::info!("proxying from {where_} to {}", shared.gate.targets());

    // In a block of its own: the lifecycle future borrows the wrapper, which is stopped later.
    let reason = {
        let stop = stop_accepting(&config, &tracker, wrapper.as_ref());
        tokio::pin!(stop);
        let peer_is_client = !config.proxy_protocol && config.trusted_proxies.is_none();
        loop {
            tokio::select! {
                reason = &mut stop => break reason,
                () = signals.recv() => break StopReason::Signal,
                _ = hangup.recv() => reload(tls.as_ref(), &shared.gate),
                accepted = accept(&listener, &shared.gate) => match accepted {
                    Ok((stream, client, place)) => {
                        let id = shared.next_id();
                        // Counted before any byte is read, the bound per address included
                        // when the peer is the client (not a balancer or a trusted proxy).
                        let peer = peer_is_client.then(|| client.ip()).flatten();
                        let connection = match shared.gate.accepted(place, peer) {
                            Ok(connection) => connection,
                            Err(refused) => {
                                crate::telemetry::metrics::get().handshake_failed(
                                    crate::telemetry::metrics::HandshakeFailure::MaxConnectionsPerIp,
                                    None,
                                );
                                tracing::debug!(id, %client, "closed at accept: over {refused}");
                                continue;
                            }
                        };
                        let handler = Handler {
                            shared: shared.clone(),
                            shutdown: shutdown.subscribe(),
                            id,
                            client,
                            local: config
                                .target_proxy_protocol
                                .and_then(|_| stream.local_addr()),
                            _place: Arc::new(connection),
                        };
                        connections.spawn(handler, stream);
                    }
                    Err(e) => accept_failed(e).await,
                },
            }
        }
    };
    // Closing the listener refuses new connections at once (and removes a unix socket file).
    drop(listener);
    readiness.set(false);
    tracing::info!("{reason}: no longer accepting connections");
    drain(
        reason,
        config.shutdown_grace,
        &tracker,
        &shutdown,
        &mut signals,
    )
    .await;
    // The sessions have ended; their recordings' writers may be behind (a slow disk).
    let unfinished = crate::session::record::all_written(crate::session::record::AT_EXIT).await;
    if unfinished > 0 {
        tracing::warn!(
            "exiting with {unfinished} recording(s) not finished after {} s: the disk did not keep up",
            crate::session::record::AT_EXIT.as_secs()
        );
    }
    connections.finish().await;
    if let Some(wrapper) = wrapper {
        wrapper.stop().await;
    }
    tracing::info!("exiting: {reason}");
    Ok(reason)
}

/// A token may come from a `token` cookie, which a browser sends with a request from any
/// page: without an Origin check, a page elsewhere can open a console with a user's cookie
/// (cross-site WebSocket hijacking). Said at start, since the operator may not know.
fn warn_of_cookie_tokens(targets: &Targets, auth: Option<&Auth>) {
    let checks_origin = auth.is_some_and(|a| {
        let name = a.plugin.name();
        name.rsplit('.').next().unwrap_or(name) == "ExpectOrigin"
    });
    if matches!(
        targets,
        Targets::Token {
            host_token: false,
            ..
        }
    ) && !checks_origin
    {
        tracing::warn!(
            "tokens are also read from a `token` cookie, which browsers send from any site: \
             without an Origin check another site can open a session with a user's cookie \
             (cross-site WebSocket hijacking); add --auth-plugin ExpectOrigin --auth-source \
             'https://your.site' unless your own auth plugin checks Origin"
        );
    }
}

/// Where the server is in its ending, after it stopped accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A lifecycle rule ended accepting: sessions run to their natural end.
    Waiting,
    /// A signal: sessions may finish on their own until the grace ends.
    Draining,
    /// Sessions were told to close (1001) and get [`CLOSE_WAIT`] to do so.
    Closing,
}

/// Waits for every connection to end, by the rules of the module doc.
async fn drain(
    reason: StopReason,
    grace: Duration,
    tracker: &Tracker,
    shutdown: &Trigger,
    signals: &mut impl Terminations,
) {
    let mut phase = Phase::Waiting;
    let mut deadline = None;
    let next = |phase: Phase| -> (Phase, Option<tokio::time::Instant>) {
        let now = tokio::time::Instant::now();
        match phase {
            Phase::Waiting if !grace.is_zero() => {
                // HTTP/2 connections say GOAWAY now: their sessions go on, no new stream.
                shutdown.drain();
                let n = tracker.counts().connections;
                if n > 0 {
                    tracing::info!(
                        "draining {n} connection(s) for up to {}s (--shutdown-grace)",
                        grace.as_secs()
                    );
                }
                (Phase::Draining, Some(now + grace))
            }
            _ => {
                let n = tracker.counts().connections;
                if n > 0 {
                    tracing::info!("closing {n} connection(s) with 1001 Going away");
                }
                shutdown.trigger();
                (Phase::Closing, Some(now + CLOSE_WAIT))
            }
        }
    };
    if reason == StopReason::Signal {
        (phase, deadline) = next(phase);
    }
    let all_done = tracker.wait_for(|c| c.connections == 0);
    tokio::pin!(all_done);
    loop {
        tokio::select! {
            _ = &mut all_done => return,
            () = signals.recv() => {
                if phase == Phase::Closing {
                    tracing::warn!("another signal: exiting without waiting for sessions");
                    return;
                }
                (phase, deadline) = next(phase);
            }
            () = sleep_until(deadline) => {
                if phase == Phase::Closing {
                    tracing::warn!(
                        "{} connection(s) did not close within {}s; exiting",
                        tracker.counts().connections,
                        CLOSE_WAIT.as_secs()
                    );
                    return;
                }
                tracing::info!("--shutdown-grace is over");
                (phase, deadline) = next(Phase::Draining);
            }
        }
    }
}

/// SIGHUP: the certificate and every plugin read again, none of it on an async worker (a
/// certificate on the blocking pool, a plugin on its own threads: reading a key, a file, a
/// network source or a database may wait). Each reports to the log and the reload metric.
fn reload(tls: Option<&Arc<ServerTls>>, gate: &Gate) {
    match tls {
        Some(tls) => drop(tls.reload_in_background("SIGHUP")),
        None => tracing::debug!("SIGHUP: no TLS certificate to reload"),
    }
    for (what, plugin) in gate.plugins() {
        let plugin = plugin.clone();
        tokio::spawn(async move {
            let reloaded = plugin.reload().await;
            crate::telemetry::metrics::get().reload(what, reloaded.is_ok());
            match reloaded {
                Ok(()) => tracing::info!("SIGHUP: {} reloaded from its source", plugin.name()),
                Err(e) => tracing::warn!(
                    "SIGHUP: reloading {} failed, keeping the previous one: {e:#}",
                    plugin.name()
                ),
            }
        });
    }
}

/// Resolves when a lifecycle rule says to stop accepting; never, if none is configured.
async fn stop_accepting(
    config: &Config,
    tracker: &Tracker,
    wrapper: Option<&Wrapper>,
) -> StopReason {
    let wrapped = async {
        match wrapper {
            Some(w) => crate::process::wrap::exit_code(w.wait_exit().await),
            None => std::future::pending().await,
        }
    };
    let timeout = async {
        match config.timeout {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    let run_once = async {
        if config.run_once {
            tracker.wait_for(|c| c.sessions_started > 0).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let idle = async {
        match config.idle_timeout {
            Some(idle) => idle_for(tracker, idle).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = timeout => StopReason::Timeout,
        () = run_once => StopReason::RunOnce,
        () = idle => StopReason::IdleTimeout,
        code = wrapped => StopReason::WrapExited(code),
    }
}

/// Completes once no connection has been open for `idle` in a row; a connection accepted
/// meanwhile starts the wait again, however briefly it stayed.
async fn idle_for(tracker: &Tracker, idle: Duration) {
    loop {
        let quiet = tracker.wait_for(|c| c.connections == 0).await;
        tokio::select! {
            () = tokio::time::sleep(idle) => return,
            _ = tracker.wait_for(|c| {
                c.connections > 0 || c.connections_accepted != quiet.connections_accepted
            }) => {}
        }
    }
}

/// The next connection, once a place for it is free (until then new connections wait in the
/// listen backlog).
async fn accept(
    listener: &Listener,
    gate: &Gate,
) -> std::io::Result<(
    crate::edge::stream::ClientStream,
    crate::request::ClientAddr,
    Option<tokio::sync::OwnedSemaphorePermit>,
)> {
    let place = gate.connection_place().await;
    let (stream, client) = listener.accept().await?;
    Ok((stream, client, place))
}

/// Accept errors are per connection (the client left) or a resource limit (out of file
/// descriptors): neither ends the server, and the latter gets a pause instead of a busy loop.
async fn accept_failed(e: std::io::Error) {
    // EMFILE and ENFILE on Linux: this process or the system is out of file descriptors.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) {
        tracing::warn!("accept: {e}; pausing 100 ms");
        tokio::time::sleep(Duration::from_millis(100)).await;
    } else {
        tracing::debug!("accept: {e}");
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio::time::{Instant, sleep};

    use super::*;

    const S: Duration = Duration::from_secs(1);

    impl Terminations for mpsc::UnboundedReceiver<()> {
        async fn recv(&mut self) {
            if mpsc::UnboundedReceiver::recv(self).await.is_none() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// When the trigger fires, as a task that reports the instant (or panics if it has not
    /// after a day of the paused clock, rather than hang the test).
    fn watch(trigger: &Trigger) -> tokio::task::JoinHandle<Instant> {
        let mut told = trigger.subscribe();
        tokio::spawn(async move {
            let fired = tokio::time::timeout(86_400 * S, told.recv()).await;
            assert!(fired.is_ok(), "never told to close");
            Instant::now()
        })
    }

    /// Sends a signal after each delay, counted from the start.
    fn signals_at(times: &[Duration]) -> mpsc::UnboundedReceiver<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        for &at in times {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(start + at).await;
                let _ = tx.send(());
            });
        }
        // Kept open by the spawned senders, then by this one for good.
        std::mem::forget(tx);
        rx
    }

    /// `--idle-timeout`'s wait, in a task that reports when it ended.
    fn idle(tracker: &Tracker, after: Duration) -> tokio::task::JoinHandle<Instant> {
        let tracker = tracker.clone();
        tokio::spawn(async move {
            idle_for(&tracker, after).await;
            Instant::now()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn idle_for_restarts_on_a_connection_that_came_and_went_between_two_looks() {
        let tracker = Tracker::new();
        let start = Instant::now();
        let idle = idle(&tracker, 10 * S);
        sleep(4 * S).await;
        // Opened and closed before the waiting task looks again.
        drop(tracker.connection());
        assert_eq!(idle.await.unwrap() - start, 4 * S + 10 * S);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_for_waits_while_a_connection_is_open() {
        let tracker = Tracker::new();
        let start = Instant::now();
        let idle = idle(&tracker, 10 * S);
        sleep(7 * S).await;
        let open = tracker.connection();
        sleep(30 * S).await;
        assert!(!idle.is_finished(), "idle with a connection open");
        drop(open);
        assert_eq!(idle.await.unwrap() - start, 37 * S + 10 * S);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_gives_the_grace_then_closes_with_1001_then_gives_up() {
        let (tracker, trigger) = (Tracker::new(), Trigger::new());
        let told = watch(&trigger);
        let _stuck = tracker.connection();
        let start = Instant::now();
        let mut none = signals_at(&[]);
        drain(StopReason::Signal, 30 * S, &tracker, &trigger, &mut none).await;
        assert_eq!(
            told.await.unwrap() - start,
            30 * S,
            "told to close at the grace's end"
        );
        assert_eq!(
            Instant::now() - start,
            30 * S + CLOSE_WAIT,
            "then waited CLOSE_WAIT"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_with_the_last_connection_and_tells_nobody() {
        let (tracker, trigger) = (Tracker::new(), Trigger::new());
        let connection = tracker.connection();
        tokio::spawn(async move {
            sleep(10 * S).await;
            drop(connection);
        });
        let start = Instant::now();
        let mut none = signals_at(&[]);
        drain(StopReason::Signal, 30 * S, &tracker, &trigger, &mut none).await;
        assert_eq!(Instant::now() - start, 10 * S);
        assert!(!trigger.subscribe().is_shutdown());
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_signal_closes_at_once_and_a_third_exits() {
        let (tracker, trigger) = (Tracker::new(), Trigger::new());
        let told = watch(&trigger);
        let _stuck = tracker.connection();
        let start = Instant::now();
        let mut signals = signals_at(&[5 * S, 7 * S]);
        drain(StopReason::Signal, 30 * S, &tracker, &trigger, &mut signals).await;
        assert_eq!(told.await.unwrap() - start, 5 * S);
        assert_eq!(Instant::now() - start, 7 * S);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_lifecycle_rule_sessions_run_on_until_a_signal() {
        let (tracker, trigger) = (Tracker::new(), Trigger::new());
        let told = watch(&trigger);
        let _stuck = tracker.connection();
        let start = Instant::now();
        let mut signals = signals_at(&[1000 * S]);
        drain(
            StopReason::Timeout,
            30 * S,
            &tracker,
            &trigger,
            &mut signals,
        )
        .await;
        assert_eq!(
            told.await.unwrap() - start,
            1030 * S,
            "the signal began the grace"
        );
        assert_eq!(Instant::now() - start, 1030 * S + CLOSE_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_grace_a_signal_closes_at_once() {
        let (tracker, trigger) = (Tracker::new(), Trigger::new());
        let told = watch(&trigger);
        let _stuck = tracker.connection();
        let start = Instant::now();
        let mut none = signals_at(&[]);
        drain(
            StopReason::Signal,
            Duration::ZERO,
            &tracker,
            &trigger,
            &mut none,
        )
        .await;
        assert_eq!(told.await.unwrap() - start, Duration::ZERO);
        assert_eq!(Instant::now() - start, CLOSE_WAIT);
    }
}

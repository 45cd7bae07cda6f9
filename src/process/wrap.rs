//! Wrap mode: `websockify [options] [source_addr:]source_port -- COMMAND ARGS...`.
//!
//! The proxy reserves a loopback port, starts COMMAND with the rebind shim preloaded
//! (`LD_PRELOAD`, `REBIND_OLD_PORT`, `REBIND_NEW_PORT`, exactly as websockify sets them), and
//! relays its sessions to that port. The program believes it listens on the proxy's port.
//!
//! - **No race for the port.** The reservation is a pair of sockets (`127.0.0.1:P` and
//!   `[::1]:P`) bound with `SO_REUSEADDR` that never listen: the kernel gives P to nobody
//!   else, while the program (whose socket the shim also marks `SO_REUSEADDR`) can bind and
//!   listen there. The reservation is held as long as the wrapper runs, across respawns.
//! - **`--wrap-mode`**: `exit` ends the proxy with the program's status (128 + signal when a
//!   signal killed it); `ignore` keeps serving; `respawn` starts it again at once if it ran
//!   for 10 s or more, else after a delay that doubles from 250 ms up to 30 s, warning
//!   "Command respawning too fast" as websockify does.
//! - **No orphan, no zombie.** The program runs in a process group of its own; stopping the
//!   wrapper sends SIGTERM to the whole group, SIGKILL after 5 s, and reaps the program.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use socket2::{Domain, Socket, Type};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::config::{Wrap, WrapMode};

/// The shim's file name, as websockify's `rebind.so` but with the `lib` prefix of a
/// shared library built by cargo.
pub const SHIM_NAME: &str = "librebind.so";

/// A program that lives at least this long is respawned at once.
const STABLE_RUN: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the program gets to exit after SIGTERM before SIGKILL.
const TERM_WAIT: Duration = Duration::from_secs(5);

/// Finds the shim: `--rebind-lib`, else next to the binary, in `../lib` or in
/// `../lib/websockify` (where packages put it).
pub fn find_shim(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            anyhow::bail!("--rebind-lib {}: no such file", path.display())
        };
    }
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    let dir = exe
        .canonicalize()
        .unwrap_or(exe)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let candidates = [
        dir.join(SHIM_NAME),
        dir.join("../lib").join(SHIM_NAME),
        dir.join("../lib/websockify").join(SHIM_NAME),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "wrap mode needs the rebind shim {SHIM_NAME}; looked in {}; build it with \
                 `cargo build --release --workspace` or give --rebind-lib",
                looked.join(", ")
            )
        })
}

/// A loopback port held for the wrapped program (see the module doc).
struct Reservation {
    port: u16,
    _sockets: Vec<Socket>,
}

fn reserve_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

impl Reservation {
    /// A port free on both loopback addresses (or on 127.0.0.1 alone where IPv6 is off).
    fn new() -> io::Result<Reservation> {
        let mut last = None;
        for _ in 0..20 {
            let v4 = reserve_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
            let port = v4
                .local_addr()?
                .as_socket()
                .map(|a| a.port())
                .ok_or_else(|| io::Error::other("reserved socket has no port"))?;
            match reserve_socket(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
                Ok(v6) => {
                    return Ok(Reservation {
                        port,
                        _sockets: vec![v4, v6],
                    });
                }
                // No IPv6 on this host: the program cannot bind ::1 either.
                Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                    return Ok(Reservation {
                        port,
                        _sockets: vec![v4],
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no loopback port free on both families")))
    }
}

/// How the wrapped program ended, as the proxy's exit status.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// The running wrapper: its port, the program's end (exit mode), and its stop.
pub struct Wrapper {
    pub port: u16,
    /// In exit mode, the program's status when it ends.
    pub exited: watch::Receiver<Option<ExitStatus>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Wrapper {
    /// Reserves the port and starts the program; failing to start it is a start-up error.
    pub fn start(wrap: &Wrap, listen_port: u16) -> anyhow::Result<Wrapper> {
        let shim = find_shim(wrap.rebind_lib.as_deref())?;
        let reservation = Reservation::new().context("reserving a loopback port for wrap mode")?;
        let port = reservation.port;
        let launcher = Launcher {
            command: wrap.command.clone(),
            shim,
            old_port: listen_port,
            new_port: port,
        };
        let child = launcher.spawn()?;
        tracing::info!(
            "started `{}` (pid {}), its port {listen_port} moved to loopback port {port}",
            wrap.command.join(" "),
            child.id().unwrap_or(0)
        );
        let (exited_tx, exited) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(
            launcher,
            child,
            wrap.mode,
            reservation,
            exited_tx,
            stop_rx,
        ));
        Ok(Wrapper {
            port,
            exited,
            stop: Some(stop),
            task,
        })
    }

    /// Completes when the program has ended and exit mode applies; never otherwise.
    pub async fn wait_exit(&self) -> ExitStatus {
        let mut exited = self.exited.clone();
        // The watch's read guard is dropped before any other await (it is not `Send`).
        let status = exited
            .wait_for(Option::is_some)
            .await
            .map(|status| status.unwrap_or_default());
        match status {
            Ok(status) => status,
            Err(_) => std::future::pending().await,
        }
    }

    /// Ends the program (its whole process group) and waits until it is reaped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// What starting the program again needs.
struct Launcher {
    command: Vec<String>,
    shim: PathBuf,
    old_port: u16,
    new_port: u16,
}

impl Launcher {
    fn spawn(&self) -> anyhow::Result<Child> {
        let (program, args) = self
            .command
            .split_first()
            .context("wrap mode: empty command")?;
        let preload = match std::env::var("LD_PRELOAD") {
            Ok(old) if !old.is_empty() => format!("{}:{old}", self.shim.display()),
            _ => self.shim.display().to_string(),
        };
        Command::new(program)
            .args(args)
            .env("LD_PRELOAD", preload)
            .env("REBIND_OLD_PORT", self.old_port.to_string())
            .env("REBIND_NEW_PORT", self.new_port.to_string())
            // A group of its own: stopping it reaches its children too, and a terminal's
            // Ctrl-C reaches the proxy only, which then stops it in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the wrapped command `{program}`"))
    }
}

/// Watches the program until it ends for good or the wrapper is stopped.
async fn supervise(
    launcher: Launcher,
    mut child: Child,
    mode: WrapMode,
    reservation: Reservation,
    exited: watch::Sender<Option<ExitStatus>>,
    mut stop: oneshot::Receiver<()>,
) {
    // Held until this task ends, so that the port stays ours across respawns.
    let _reservation = reservation;
    let mut started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut warned = false;
    loop {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = &mut stop => {
                terminate(&mut child).await;
                return;
            }
        };
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                tracing::error!("waiting for the wrapped command: {e}");
                return;
            }
        };
        let ran = started.elapsed();
        tracing::info!(
            "wrapped command exited with {status} after {:.1}s",
            ran.as_secs_f64()
        );
        match mode {
            WrapMode::Exit => {
                exited.send_replace(Some(status));
                return;
            }
            WrapMode::Ignore => {
                // Wait for the stop, so the reservation is held as long as the proxy runs.
                let _ = stop.await;
                return;
            }
            WrapMode::Respawn => {}
        }
        let delay = if ran >= STABLE_RUN {
            backoff = FIRST_BACKOFF;
            warned = false;
            Duration::ZERO
        } else {
            if !warned {
                tracing::warn!("Command respawning too fast");
                warned = true;
            }
            let delay = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            delay
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut stop => return,
        }
        match launcher.spawn() {
            Ok(c) => {
                tracing::info!(
                    "respawned the wrapped command (pid {})",
                    c.id().unwrap_or(0)
                );
                child = c;
                started = Instant::now();
            }
            Err(e) => {
                // Counts as a quick death: the next try waits longer.
                tracing::warn!("{e:#}");
                started = Instant::now();
                child = match wait_and_retry(&launcher, &mut backoff, &mut stop).await {
                    Some(c) => c,
                    None => return,
                };
            }
        }
    }
}

/// Retries a program that would not start, with the same growing delay, until it starts or
/// the wrapper stops.
async fn wait_and_retry(
    launcher: &Launcher,
    backoff: &mut Duration,
    stop: &mut oneshot::Receiver<()>,
) -> Option<Child> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(*backoff) => {}
            _ = &mut *stop => return None,
        }
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        match launcher.spawn() {
            Ok(child) => return Some(child),
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
}

/// SIGTERM to the program's group, SIGKILL after [`TERM_WAIT`], then reap it.
async fn terminate(child: &mut Child) {
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return; // Already reaped.
    };
    let group = Pid::from_raw(pid);
    if killpg(group, Signal::SIGTERM).is_err() {
        let _ = child.start_kill();
    }
    match tokio::time::timeout(TERM_WAIT, child.wait()).await {
        Ok(_) => tracing::info!("wrapped command stopped"),
        Err(_) => {
            tracing::warn!(
                "wrapped command ignored SIGTERM for {}s; killing it",
                TERM_WAIT.as_secs()
            );
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }
}

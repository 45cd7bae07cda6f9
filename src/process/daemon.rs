//! `-D/--daemon`: run in the background, as websockify does, without `fork()` in a program
//! that will run threads (and without `unsafe`): the command starts itself again as a
//! detached child and returns 0 once the child listens.
//!
//! 1. The foreground process has validated the configuration (so a mistake is reported on the
//!    terminal with status 2), then starts the same command line with [`CHILD_MARK`] set,
//!    standard input from `/dev/null`, and waits: for `ready` on the child's standard output
//!    (exit 0), or for the child to end first (its status, its messages shown). The child's
//!    messages up to then are copied to the terminal.
//! 2. The child becomes a session leader (`setsid`, so it has no controlling terminal and
//!    a terminal hang-up does not reach it), makes every configured path absolute and
//!    changes to `/` (websockify's behaviour), binds the port, says `ready`, and points its
//!    standard output and error to `/dev/null`. From then on it logs to `--log-file` or
//!    `--syslog` only.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

use crate::config::Config;

/// Set in the detached child's environment; its value is irrelevant.
pub const CHILD_MARK: &str = "_WEBSOCKIFY_DAEMON_CHILD";

/// True in the detached child.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_MARK).is_some()
}

/// The foreground side: starts the detached child and waits until it listens or fails.
pub fn start_in_background() -> ExitCode {
    match spawn_and_wait() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("websockify: error: --daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn spawn_and_wait() -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARK, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the background process")?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        anyhow::bail!("no pipe to the background process");
    };
    // Its messages reach the terminal until it detaches (then its end of the pipe closes).
    let relay = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = std::io::stderr().write_all(&buf[..n]);
        }
    });
    let mut line = String::new();
    let ready = BufReader::new(stdout).read_line(&mut line).is_ok() && line.trim() == "ready";
    if ready {
        let _ = relay.join();
        return Ok(ExitCode::SUCCESS);
    }
    let status = child.wait().context("waiting for the background process")?;
    let _ = relay.join();
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    Ok(ExitCode::from(if code == 0 { 1 } else { code }))
}

/// The child, before its runtime starts: a session of its own, absolute paths, `/`.
pub fn detach(config: &mut Config) -> anyhow::Result<()> {
    nix::unistd::setsid().context("setsid")?;
    config.make_paths_absolute();
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// The child, once it listens: tells the foreground process and lets go of the terminal.
pub fn ready() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"ready\n");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

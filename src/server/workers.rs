//! Where connections run: on the runtime that accepted them, or, with `--busy-poll` and more
//! than one CPU, on one single-threaded runtime per CPU.
//!
//! `--busy-poll` keeps a thread polling its I/O driver without sleeping while a session
//! awaits its client's answer (`session::relay`). That works only on a thread that owns a
//! driver: in tokio's work-stealing runtime one worker at a time holds the one driver, and
//! the others' polls find it taken (measured: no gain at all, docs/performance.md step 35).
//! So with `--busy-poll`, each CPU gets a thread running a runtime of its own, with its own
//! driver and timers, and the accept loop hands each connection to the one with the fewest
//! connections. A connection then stays on its thread for life, the target's socket and an
//! HTTP/2 connection's streams too: no work stealing, no wake-up across threads.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Config;
use crate::edge::stream::ClientStream;
use crate::server::handler::Handler;

/// How long a worker's runtime waits, at exit, for its blocking tasks (a plugin call
/// abandoned after its timeout may never end).
const BLOCKING_AT_EXIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How many runtimes of their own connections get: `None` when they share the one that
/// accepted them (no `--busy-poll`, or a single CPU, where the process already runs on one
/// single-threaded runtime).
pub fn per_cpu(config: &Config) -> Option<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (config.busy_poll.is_some() && cpus > 1).then_some(cpus)
}

/// Runs each connection's task.
pub enum Connections {
    /// On the runtime that accepted it.
    Here,
    /// On the least busy of these.
    PerCpu(Vec<Worker>),
}

/// One thread with a single-threaded runtime, and its live connection count.
pub struct Worker {
    handle: tokio::runtime::Handle,
    connections: Arc<AtomicUsize>,
    // Dropped (so the thread's runtime stops) when the worker is.
    _stop: tokio::sync::oneshot::Sender<()>,
    // Sent (or dropped) once the thread's runtime has stopped.
    stopped: tokio::sync::oneshot::Receiver<()>,
}

impl Connections {
    /// As [`per_cpu`] says: starts the threads, if any.
    pub fn start(config: &Config) -> std::io::Result<Connections> {
        let Some(cpus) = per_cpu(config) else {
            return Ok(Connections::Here);
        };
        let workers = (0..cpus)
            .map(Worker::start)
            .collect::<std::io::Result<Vec<_>>>()?;
        tracing::debug!("connections run on {cpus} single-threaded runtimes (--busy-poll)");
        Ok(Connections::PerCpu(workers))
    }

    /// Stops the threads, once the server has no more use for them (its sessions drained),
    /// and waits (bounded) for each runtime's shutdown, which lets blocking work in flight
    /// (a file write) finish. Tasks still running are dropped then, as the main runtime's
    /// are at exit; the server has already waited for the recordings' writers
    /// (`session::record::all_written`).
    pub async fn finish(self) {
        let Connections::PerCpu(workers) = self else {
            return;
        };
        let stopped: Vec<_> = workers.into_iter().map(|w| w.stopped).collect();
        for stopped in stopped {
            let bound = BLOCKING_AT_EXIT + std::time::Duration::from_millis(500);
            let _ = tokio::time::timeout(bound, stopped).await;
        }
    }

    /// Serves `stream` with `handler`.
    pub fn spawn(&self, handler: Handler, stream: ClientStream) {
        let workers = match self {
            Connections::Here => {
                tokio::spawn(handler.run(stream));
                return;
            }
            Connections::PerCpu(workers) => workers,
        };
        let Some(worker) = workers
            .iter()
            .min_by_key(|w| w.connections.load(Ordering::Relaxed))
        else {
            tokio::spawn(handler.run(stream));
            return;
        };
        // Off this runtime's driver, onto the worker's, where its task runs.
        let detached = match stream.detach() {
            Ok(detached) => detached,
            Err(e) => {
                tracing::debug!("cannot hand a connection to a worker: {e}");
                return;
            }
        };
        worker.run(async move {
            match detached.attach() {
                Ok(stream) => handler.run(stream).await,
                Err(e) => tracing::warn!("cannot register a connection: {e}"),
            }
        });
    }
}

impl Worker {
    fn start(index: usize) -> std::io::Result<Worker> {
        let (stop, stop_asked) = tokio::sync::oneshot::channel::<()>();
        let (done, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        // The runtime is made on its thread, and never leaves it: a runtime dropped on the
        // thread that runs the server's (if this thread could not start) would panic.
        std::thread::Builder::new()
            .name(format!("websockify-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(runtime.handle().clone()));
                // Runs the connections' tasks until the server lets go of its workers.
                let _ = runtime.block_on(stop_asked);
                runtime.shutdown_timeout(BLOCKING_AT_EXIT);
                let _ = done.send(());
            })?;
        // At start, before any connection: the thread answers as soon as it runs.
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("a connection thread ended at its start"))??;
        Ok(Worker {
            handle,
            connections: Arc::new(AtomicUsize::new(0)),
            _stop: stop,
            stopped,
        })
    }

    fn run(&self, connection: impl Future<Output = ()> + Send + 'static) {
        let count = Counted::new(self.connections.clone());
        self.handle.spawn(async move {
            let _count = count;
            connection.await;
        });
    }
}

/// One of a worker's live connections, until dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

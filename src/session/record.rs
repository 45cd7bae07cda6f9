//! `--record FILE`: each WebSocket session's traffic in websockify's format, for noVNC's
//! playback tools.
//!
//! One file per session, `FILE.<n>` with `n` the connection's number:
//!
//! ```text
//! var VNC_frame_data = [
//! '{12{data sent to the client',
//! '}15}data received from the client',
//! 'EOF'];
//! ```
//!
//! The number is milliseconds since the upgrade; the data is escaped as Python's
//! `bytes.decode('latin1').encode('unicode_escape')` with `'` as `\'`, byte for byte what
//! websockify 0.13 writes.
//!
//! The relay hands each chunk to a channel and a writer task of the session's own does the
//! escaping and the writing, so a slow disk slows only the recording: handing a chunk over
//! never waits. What waits for the writer is bounded in bytes, [`MAX_QUEUED`] per session
//! (each chunk also costs [`CHUNK_COST`], so empty messages are bounded too). A chunk over
//! the bound is dropped and counted; the file notes the gap where it is, as a JavaScript
//! comment (which the players skip), and the session goes on. The recording is then
//! truncated: counted once per session in `websockify_recordings_truncated_total`, and logged
//! once, with the bytes lost, when its file is finished.
//!
//! At exit the server waits, up to [`AT_EXIT`], for every writer to end its file
//! ([`all_written`]): a writer behind its session would otherwise be dropped with the runtime
//! and leave a file without its `'EOF'];`, which the players refuse.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Bytes a session's recording may hold waiting for the disk. Half of what the chunk bound
/// it replaces allowed at 64 KiB target reads (256 chunks, 16 MiB, and more with the
/// client's 256 KiB pieces), and still seconds of a busy VNC session (a full-screen update
/// is a few MiB), so only a disk that stalls, not one that hiccups, costs a recording data.
const MAX_QUEUED: usize = 8 * 1024 * 1024;

/// What a queued chunk costs besides its data: its place in the channel and its line's
/// framing. Without it a flood of empty messages would queue without bound.
const CHUNK_COST: usize = 64;

/// How long the exit waits for recordings still being written: enough for the 8 MiB a
/// session may have queued on a disk that works, not forever behind one that hangs.
pub const AT_EXIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The writers still running in the process, whichever runtime runs them.
static WRITING: Writing = Writing {
    running: AtomicUsize::new(0),
    ended: tokio::sync::Notify::const_new(),
};

struct Writing {
    running: AtomicUsize,
    ended: tokio::sync::Notify,
}

/// A running writer's place in [`WRITING`], given back when the writer ends or is dropped.
struct Running;

impl Running {
    fn start() -> Running {
        WRITING.running.fetch_add(1, Ordering::AcqRel);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if WRITING.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            WRITING.ended.notify_waiters();
        }
    }
}

/// Waits until every recording's writer has finished its file, or `limit` has passed; how
/// many were still writing then (0: all finished).
pub async fn all_written(limit: std::time::Duration) -> usize {
    let wait = async {
        loop {
            // Registered before the count is read, so the last writer's end is not missed.
            let ended = WRITING.ended.notified();
            if WRITING.running.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    };
    let _ = tokio::time::timeout(limit, wait).await;
    WRITING.running.load(Ordering::Acquire)
}

/// Which way a chunk went, as websockify marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `{`: to the client.
    ToClient,
    /// `}`: from the client.
    FromClient,
}

#[derive(Debug)]
struct Chunk {
    way: Way,
    ms: u128,
    data: Bytes,
    /// Chunks dropped just before this one: the gap the file notes where it is.
    gap_before: u64,
}

/// One session's recording; dropping it ends the file with `'EOF'];`.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Chunk>,
    shared: Arc<Shared>,
    started: Instant,
}

/// What the relay's side and the writer both see.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes handed to the writer and not yet written, chunk costs included; at most
    /// [`MAX_QUEUED`].
    queued: AtomicUsize,
    /// Chunks dropped since the last one queued (the next one carries the count).
    dropped: AtomicU64,
    /// Data bytes not recorded, over the whole session.
    lost: AtomicU64,
    /// Set by the first drop, which counts the recording as truncated.
    truncated: AtomicBool,
}

/// The file of session `id`: `FILE.<id>`.
pub fn file_name(base: &Path, id: u64) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{id}"));
    PathBuf::from(name)
}

impl Recorder {
    /// Creates `FILE.<id>`, new, readable by its owner only, and starts its writer. A name
    /// that is taken (a recording of an earlier run, or a symlink someone planted to have a
    /// session's keystrokes written over another file) is never opened: the session goes on
    /// unrecorded, and the caller logs why.
    pub async fn open(base: &Path, id: u64) -> std::io::Result<Recorder> {
        let path = file_name(base, id);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => std::io::Error::new(
                    e.kind(),
                    "the name is taken (recordings are only ever created new)",
                ),
                _ => e,
            })?;
        Ok(Recorder::start(BufWriter::new(file), path))
    }

    /// Starts the writer of a recording into `out`, named `path` in its log lines.
    fn start<W: AsyncWrite + Unpin + Send + 'static>(out: W, path: PathBuf) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let shared_writer = shared.clone();
        let running = Running::start();
        tokio::spawn(async move {
            write(out, rx, shared_writer, path).await;
            drop(running);
        });
        Recorder {
            tx,
            shared,
            started: Instant::now(),
        }
    }

    /// Never waits (see the module doc).
    pub fn sent_to_client(&self, data: &Bytes) {
        self.push(Way::ToClient, data);
    }

    /// Never waits (see the module doc).
    pub fn received_from_client(&self, data: &Bytes) {
        self.push(Way::FromClient, data);
    }

    fn push(&self, way: Way, data: &Bytes) {
        let cost = data.len().saturating_add(CHUNK_COST);
        let admitted = self
            .shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(cost).filter(|&n| n <= MAX_QUEUED)
            })
            .is_ok();
        if admitted {
            let chunk = Chunk {
                way,
                ms: self.started.elapsed().as_millis(),
                data: data.clone(),
                gap_before: self.shared.dropped.swap(0, Ordering::Relaxed),
            };
            match self.tx.send(chunk) {
                Ok(()) => return,
                Err(mpsc::error::SendError(chunk)) => {
                    // The writer is gone (its file failed, and said so): nothing more is
                    // recorded.
                    self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
                    self.shared
                        .dropped
                        .fetch_add(chunk.gap_before, Ordering::Relaxed);
                }
            }
        }
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        self.shared
            .lost
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if !self.shared.truncated.swap(true, Ordering::Relaxed) {
            crate::telemetry::metrics::get()
                .liveness
                .recordings_truncated
                .inc();
        }
    }

    /// Bytes waiting for the writer now, chunk costs included.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

/// The writer: header, one line per chunk, the gaps, `'EOF'];` when every sender is gone,
/// then the one line that says the recording is truncated, if it is.
async fn write<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    shared: Arc<Shared>,
    path: PathBuf,
) {
    let result = async {
        out.write_all(b"var VNC_frame_data = [\n").await?;
        let mut line = String::new();
        while let Some(chunk) = rx.recv().await {
            note_gap(&mut out, chunk.gap_before).await?;
            line.clear();
            let mark = match chunk.way {
                Way::ToClient => '{',
                Way::FromClient => '}',
            };
            let _ = write!(line, "'{mark}{}{mark}", chunk.ms);
            escape_into(&mut line, &chunk.data);
            line.push_str("',\n");
            let cost = chunk.data.len().saturating_add(CHUNK_COST);
            drop(chunk);
            out.write_all(line.as_bytes()).await?;
            shared.queued.fetch_sub(cost, Ordering::AcqRel);
        }
        note_gap(&mut out, shared.dropped.swap(0, Ordering::Relaxed)).await?;
        out.write_all(b"'EOF'];\n").await?;
        out.flush().await
    };
    if let Err(e) = result.await {
        tracing::warn!("recording {}: {e}", path.display());
        return;
    }
    let lost = shared.lost.load(Ordering::Relaxed);
    if lost > 0 {
        tracing::warn!(
            "recording {} truncated: the disk could not keep up, {lost} bytes not recorded",
            path.display()
        );
    }
}

/// The comment that marks `n` chunks left out at this place in the file.
async fn note_gap<W: AsyncWrite + Unpin>(out: &mut W, n: u64) -> std::io::Result<()> {
    if n > 0 {
        let note = format!("// websockify-rs: {n} chunk(s) not recorded here, the disk was slow\n");
        out.write_all(note.as_bytes()).await?;
    }
    Ok(())
}

/// Python's `latin1` then `unicode_escape`, then `'` as `\'`.
fn escape_into(out: &mut String, data: &[u8]) {
    for &b in data {
        match b {
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_python_unicode_escape() {
        let mut s = String::new();
        escape_into(&mut s, b"a'b\"c\\d\te\nf\rg\x00\x1f\x7f\x80\xff ~");
        assert_eq!(s, "a\\'b\"c\\\\d\\te\\nf\\rg\\x00\\x1f\\x7f\\x80\\xff ~");
    }

    #[test]
    fn file_names_append_the_session_number() {
        assert_eq!(
            file_name(Path::new("/tmp/rec"), 7),
            PathBuf::from("/tmp/rec.7")
        );
    }

    /// Reads `path` once the writer has finished it.
    async fn finished(path: &Path) -> String {
        for _ in 0..1000 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.ends_with("'EOF'];\n") {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} never finished", path.display());
    }

    /// Log lines of this thread's events, for as long as the guard lives (the tests run on
    /// a single-threaded runtime, so the writer's events are this thread's).
    fn capture_logs() -> (
        Arc<std::sync::Mutex<Vec<u8>>>,
        tracing::subscriber::DefaultGuard,
    ) {
        #[derive(Clone)]
        struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let capture = Capture(logs.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || capture.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// A disk that takes at most 16 KiB each `ms` milliseconds from `disk`: all it read,
    /// once the writer has closed its end.
    fn slow_disk(mut disk: tokio::io::DuplexStream, ms: u64) -> tokio::task::JoinHandle<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = disk.read(&mut buf).await {
                all.extend_from_slice(&buf[..n]);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            all
        })
    }

    fn truncated_so_far() -> u64 {
        crate::telemetry::metrics::get()
            .liveness
            .recordings_truncated
            .get()
    }

    /// A disk that takes nothing: the relay's calls return at once, what waits is bounded in
    /// bytes, and the file says where it left data out, ends as a recording must, and the
    /// truncation is logged once and counted.
    #[tokio::test]
    async fn a_stalled_disk_costs_the_recording_not_the_session() {
        let dir = std::env::temp_dir().join(format!("websockify-gap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("session");
        let (logs, _logging) = capture_logs();
        let counted = truncated_so_far();
        let rec = Recorder::open(&base, 1).await.unwrap();
        // The writer cannot run while this single-threaded test does not yield: the queue
        // fills, as it would behind a stalled disk. 300 target reads of 64 KiB: 18.75 MiB.
        let read = Bytes::from(vec![b'x'; 64 * 1024]);
        let pushed = std::time::Instant::now();
        for _ in 0..300 {
            rec.sent_to_client(&read);
            assert!(rec.queued() <= MAX_QUEUED, "{} queued", rec.queued());
        }
        assert!(pushed.elapsed() < std::time::Duration::from_secs(2));
        drop(rec);
        let path = file_name(&base, 1);
        let text = finished(&path).await;
        let kept = text.matches("'{").count();
        assert_eq!(
            kept,
            MAX_QUEUED / (read.len() + CHUNK_COST),
            "chunks recorded"
        );
        let note = format!(
            "// websockify-rs: {} chunk(s) not recorded here, the disk was slow\n'EOF'];\n",
            300 - kept
        );
        assert!(text.ends_with(&note), "{}", &text[text.len() - 200..]);
        assert!(truncated_so_far() > counted);
        let line = format!(
            "recording {} truncated: the disk could not keep up, {} bytes not recorded",
            path.display(),
            (300 - kept) * read.len()
        );
        for _ in 0..500 {
            if String::from_utf8_lossy(&logs.lock().unwrap()).contains(&line) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        assert_eq!(logged.matches(&line).count(), 1, "{logged}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A disk slower than the session: the bound holds at every call, everything is either
    /// recorded or counted as lost, and the file is whole.
    #[tokio::test]
    async fn a_slow_disk_never_holds_more_than_the_bound() {
        let (sink, disk) = tokio::io::duplex(16 * 1024);
        let counted = truncated_so_far();
        let rec = Recorder::start(sink, PathBuf::from("slow"));
        let shared = rec.shared.clone();
        let reader = slow_disk(disk, 1);
        let read = Bytes::from(vec![b'z'; 64 * 1024]);
        let mut sent = 0;
        for _ in 0..50 {
            // 1.25 MiB each 5 ms, far more than the disk takes.
            for _ in 0..20 {
                rec.received_from_client(&read);
                sent += read.len();
                assert!(rec.queued() <= MAX_QUEUED, "{} queued", rec.queued());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(rec);
        let text = String::from_utf8(reader.await.unwrap()).unwrap();
        assert!(text.starts_with("var VNC_frame_data = [\n"));
        assert!(text.ends_with("'EOF'];\n"), "{}", &text[text.len() - 200..]);
        assert!(text.contains("chunk(s) not recorded here, the disk was slow"));
        let recorded = text.bytes().filter(|&b| b == b'z').count();
        let lost = shared.lost.load(Ordering::Relaxed);
        assert!(lost > 0);
        assert_eq!(recorded as u64 + lost, sent as u64);
        assert_eq!(shared.queued.load(Ordering::Acquire), 0);
        assert!(truncated_so_far() > counted);
    }

    /// The exit's wait: a writer behind a slow disk is waited for, and a limit that passes
    /// first is reported with the writers still running.
    #[tokio::test]
    async fn the_exit_waits_for_a_writer_behind() {
        let (sink, disk) = tokio::io::duplex(16 * 1024);
        let rec = Recorder::start(sink, PathBuf::from("behind"));
        // 256 KiB escaped as `\x01`: a MiB through a disk of 16 KiB each 5 ms.
        for _ in 0..16 {
            rec.sent_to_client(&Bytes::from(vec![1u8; 16 * 1024]));
        }
        drop(rec);
        let reader = slow_disk(disk, 5);
        let short = all_written(std::time::Duration::from_millis(20)).await;
        assert!(short >= 1, "{short} writers running after 20 ms");
        assert_eq!(all_written(std::time::Duration::from_secs(20)).await, 0);
        let text = String::from_utf8(reader.await.unwrap()).unwrap();
        assert!(text.ends_with("'EOF'];\n"));
        assert_eq!(text.matches("\\x01").count(), 256 * 1024);
    }

    #[tokio::test]
    async fn writes_the_frame_data_array() {
        let dir = std::env::temp_dir().join(format!("websockify-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("session");
        let rec = Recorder::open(&base, 3).await.unwrap();
        rec.sent_to_client(&Bytes::from_static(b"RFB 003.008\n"));
        rec.received_from_client(&Bytes::from_static(b"it's"));
        drop(rec);
        let text = finished(&file_name(&base, 3)).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "var VNC_frame_data = [");
        assert!(
            lines[1].starts_with("'{") && lines[1].ends_with("{RFB 003.008\\n',"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("'}") && lines[2].ends_with("}it\\'s',"),
            "{text}"
        );
        assert_eq!(lines[3], "'EOF'];");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

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
//! The relay hands each chunk to a bounded channel and a writer task of the session's own does
//! the escaping and the writing, so a slow disk slows only the recording. When the channel is
//! full the chunk is dropped and counted; the writer notes the gap in the file as a JavaScript
//! comment (which the players skip) and the session goes on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Chunks waiting for the writer, per session. At 64 KiB per target read this is up to
/// 16 MiB in flight before chunks are dropped.
const QUEUE: usize = 256;

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
}

/// One session's recording; dropping it ends the file with `'EOF'];`.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Chunk>,
    dropped: Arc<AtomicU64>,
    started: Instant,
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
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write(BufWriter::new(file), rx, dropped.clone(), path));
        Ok(Recorder {
            tx,
            dropped,
            started: Instant::now(),
        })
    }

    pub fn sent_to_client(&self, data: &Bytes) {
        self.push(Way::ToClient, data);
    }

    pub fn received_from_client(&self, data: &Bytes) {
        self.push(Way::FromClient, data);
    }

    fn push(&self, way: Way, data: &Bytes) {
        let chunk = Chunk {
            way,
            ms: self.started.elapsed().as_millis(),
            data: data.clone(),
        };
        if self.tx.try_send(chunk).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer: header, one line per chunk, the gaps, `'EOF'];` when every sender is gone.
async fn write(
    mut out: BufWriter<tokio::fs::File>,
    mut rx: mpsc::Receiver<Chunk>,
    dropped: Arc<AtomicU64>,
    path: PathBuf,
) {
    let result = async {
        out.write_all(b"var VNC_frame_data = [\n").await?;
        let mut line = String::new();
        while let Some(chunk) = rx.recv().await {
            note_gap(&mut out, &dropped).await?;
            line.clear();
            let mark = match chunk.way {
                Way::ToClient => '{',
                Way::FromClient => '}',
            };
            let _ = write!(line, "'{mark}{}{mark}", chunk.ms);
            escape_into(&mut line, &chunk.data);
            line.push_str("',\n");
            out.write_all(line.as_bytes()).await?;
        }
        note_gap(&mut out, &dropped).await?;
        out.write_all(b"'EOF'];\n").await?;
        out.flush().await
    };
    if let Err(e) = result.await {
        tracing::warn!("recording {}: {e}", path.display());
    }
}

async fn note_gap(
    out: &mut BufWriter<tokio::fs::File>,
    dropped: &AtomicU64,
) -> std::io::Result<()> {
    let n = dropped.swap(0, Ordering::Relaxed);
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
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.ends_with("'EOF'];\n") {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} never finished", path.display());
    }

    #[tokio::test]
    async fn a_full_queue_drops_chunks_and_notes_the_gap() {
        let dir = std::env::temp_dir().join(format!("websockify-gap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("session");
        let rec = Recorder::open(&base, 1).await.unwrap();
        // The writer cannot run while this single-threaded test does not yield: the queue
        // fills, as it would behind a stalled disk.
        for _ in 0..(QUEUE + 10) {
            rec.sent_to_client(&Bytes::from_static(b"x"));
        }
        drop(rec);
        let text = finished(&file_name(&base, 1)).await;
        assert_eq!(text.matches("'{").count(), QUEUE, "{text}");
        assert!(
            text.contains("// websockify-rs: 10 chunk(s) not recorded here"),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
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

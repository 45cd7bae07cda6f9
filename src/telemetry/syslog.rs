//! `--syslog SERVER` and `--legacy-syslog`: every log line also goes to syslog, formatted as
//! websockify 0.13 formats it.
//!
//! - SERVER is `host:port` (UDP) or the path of a local socket such as `/dev/log` (datagram,
//!   or stream when the socket is one, newline-terminated).
//! - RFC 5424 by default: `<PRI>1 2026-11-25T10:00:00Z HOST websockify PID - - MESSAGE`;
//!   with `--legacy-syslog`, RFC 3164's short form: `<PRI>websockify[PID]: MESSAGE`.
//! - Facility `daemon` with `--daemon`, else `user`; severity from the level (error 3,
//!   warning 4, info 6, debug and trace 7). A message is ASCII, or UTF-8 with a BOM.
//!
//! Sending never blocks the program and never fails it: each message is formatted where the
//! event happens and queued; the log queue's own thread (see [`crate::telemetry::logging`])
//! writes it to the [`Socket`]. A syslog that is away loses the line, as websockify's does,
//! and one that stops taking messages (a full datagram queue, a stream nobody reads) costs
//! queued lines, counted, never a worker.

use std::io::{self, Write};
use std::net::UdpSocket;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;

use tracing::{Level, Metadata};
use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::MakeWriter;

const IDENT: &str = "websockify";
const FACILITY_USER: u8 = 1;
const FACILITY_DAEMON: u8 = 3;

/// Where the messages go.
#[derive(Debug)]
enum Transport {
    Udp(UdpSocket),
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

/// The connection to the syslog server, written by the log queue's thread only: each write
/// is one whole message.
#[derive(Debug)]
pub struct Socket(Transport);

impl Socket {
    /// Connects to `server` (`host:port` or a socket path).
    pub fn connect(server: &str) -> io::Result<Socket> {
        let transport = match server.rsplit_once(':') {
            Some((host, port)) if !server.starts_with('/') => {
                let port: u16 = port.parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("`{server}`: the port is not a number (expected host:port or a socket path)"),
                    )
                })?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let socket = UdpSocket::bind(if host.contains(':') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })?;
                socket.connect((host, port))?;
                Transport::Udp(socket)
            }
            _ => {
                let path = PathBuf::from(server);
                let datagram = UnixDatagram::unbound()?;
                match datagram.connect(&path) {
                    Ok(()) => Transport::Datagram(datagram),
                    // A stream socket (EPROTOTYPE) takes one message per line.
                    Err(_) => Transport::Stream(UnixStream::connect(&path)?),
                }
            }
        };
        Ok(Socket(transport))
    }
}

impl Write for Socket {
    /// Sends `message` as one datagram, or one newline-terminated line on a stream. A message
    /// the server does not take is lost, never an error for the queue.
    fn write(&mut self, message: &[u8]) -> io::Result<usize> {
        let _ = match &mut self.0 {
            Transport::Udp(s) => s.send(message).map(drop),
            Transport::Datagram(s) => s.send(message).map(drop),
            Transport::Stream(s) => s.write_all(message).and_then(|()| s.write_all(b"\n")),
        };
        Ok(message.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The syslog destination's format, shared by every log line, and the queue to its socket.
#[derive(Debug)]
pub struct Syslog {
    queue: NonBlocking,
    legacy: bool,
    facility: u8,
    hostname: String,
}

impl Syslog {
    /// Messages in websockify's format (`legacy`: RFC 3164's short form; `daemon`: facility
    /// daemon), queued to `queue` (a non-blocking writer to a [`Socket`]).
    pub fn new(queue: NonBlocking, legacy: bool, daemon: bool) -> Syslog {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "-".to_string());
        Syslog {
            queue,
            legacy,
            facility: if daemon {
                FACILITY_DAEMON
            } else {
                FACILITY_USER
            },
            hostname,
        }
    }

    /// One message as websockify's handler builds it.
    fn message(&self, level: Level, text: &str) -> Vec<u8> {
        let severity = match level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        let pri = u16::from(self.facility) * 8 + severity;
        let pid = std::process::id();
        let head = if self.legacy {
            format!("<{pri}>{IDENT}[{pid}]: ")
        } else {
            let time = utc_now();
            let host: String = self.hostname.chars().take(255).collect();
            format!("<{pri}>1 {time} {host} {IDENT} {pid} - - ")
        };
        let text = text.trim_end_matches('\n').replace('\n', " ");
        let mut out = head.into_bytes();
        if !text.is_ascii() {
            out.extend_from_slice("\u{feff}".as_bytes());
        }
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Queues one message for the socket: never waits (a full queue drops it, counted).
    fn send(&self, message: &[u8]) {
        let _ = self.queue.clone().write_all(message);
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, websockify's timestamp: tracing-subscriber's RFC 3339
/// time without its fraction of a second.
fn utc_now() -> String {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
    let mut full = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut full));
    match full.get(..19) {
        Some(seconds) => format!("{seconds}Z"),
        None => full,
    }
}

/// Collects one formatted event; sends it when the formatter is done with it.
pub struct Line<'a> {
    syslog: &'a Syslog,
    level: Level,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let message = self.syslog.message(self.level, &text);
        self.syslog.send(&message);
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        self.line(*meta.level())
    }
}

impl Syslog {
    fn line(&self, level: Level) -> Line<'_> {
        Line {
            syslog: self,
            level,
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats(legacy: bool, daemon: bool) -> Syslog {
        let (queue, _guard) = NonBlocking::new(io::sink());
        Syslog::new(queue, legacy, daemon)
    }

    #[test]
    fn messages_as_websockify_formats_them() {
        let legacy = formats(true, true);
        let m = String::from_utf8(legacy.message(Level::WARN, "plain refused\n")).unwrap();
        assert_eq!(
            m,
            format!("<28>websockify[{}]: plain refused", std::process::id())
        );
        let modern = formats(false, false);
        let m = String::from_utf8(modern.message(Level::INFO, "a\nb")).unwrap();
        let fields: Vec<&str> = m.splitn(8, ' ').collect();
        assert_eq!(fields[0], "<14>1");
        assert_eq!(fields[1].len(), "2026-11-25T10:00:00Z".len());
        assert!(fields[1].ends_with('Z'));
        assert_eq!(fields[3], "websockify");
        assert_eq!(fields[4], std::process::id().to_string());
        assert_eq!(&fields[5..], ["-", "-", "a b"]);
        let m = modern.message(Level::ERROR, "é");
        assert!(m.ends_with("\u{feff}é".as_bytes()));
    }

    /// A line goes through the queue's thread to the socket as one datagram.
    #[test]
    fn lines_reach_the_server_through_the_queue() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let server = format!("127.0.0.1:{}", receiver.local_addr().unwrap().port());
        let (queue, guard) = NonBlocking::new(Socket::connect(&server).unwrap());
        let syslog = Syslog::new(queue, true, false);
        let mut line = syslog.line(Level::WARN);
        line.write_all(b"disk full\n").unwrap();
        drop(line);
        let mut buf = [0u8; 512];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            format!("<12>websockify[{}]: disk full", std::process::id())
        );
        drop(guard);
    }

    #[test]
    fn utc_dates() {
        let now = utc_now();
        assert!(now.starts_with("20") && now.len() == 20, "{now}");
    }
}

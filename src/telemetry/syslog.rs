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
//! Sending never blocks the program for long and never fails it: a syslog that is away loses
//! the line, as websockify's does.

use std::io::{self, Write};
use std::net::UdpSocket;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

const IDENT: &str = "websockify";
const FACILITY_USER: u8 = 1;
const FACILITY_DAEMON: u8 = 3;

/// Where the messages go.
#[derive(Debug)]
enum Transport {
    Udp(UdpSocket),
    Datagram(UnixDatagram),
    Stream(Mutex<UnixStream>),
}

/// The syslog destination, shared by every log line.
#[derive(Debug, Clone)]
pub struct Syslog {
    transport: Arc<Transport>,
    legacy: bool,
    facility: u8,
    hostname: String,
}

impl Syslog {
    /// Connects to `server` (`host:port` or a socket path).
    pub fn connect(server: &str, legacy: bool, daemon: bool) -> io::Result<Syslog> {
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
                    Err(_) => Transport::Stream(Mutex::new(UnixStream::connect(&path)?)),
                }
            }
        };
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "-".to_string());
        Ok(Syslog {
            transport: Arc::new(transport),
            legacy,
            facility: if daemon {
                FACILITY_DAEMON
            } else {
                FACILITY_USER
            },
            hostname,
        })
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

    fn send(&self, mut message: Vec<u8>) {
        let _ = match &*self.transport {
            Transport::Udp(s) => s.send(&message).map(drop),
            Transport::Datagram(s) => s.send(&message).map(drop),
            Transport::Stream(s) => {
                message.push(b'\n');
                match s.lock() {
                    Ok(mut s) => s.write_all(&message),
                    Err(_) => Ok(()),
                }
            }
        };
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
pub struct Line {
    syslog: Syslog,
    level: Level,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let message = self.syslog.message(self.level, &text);
        self.syslog.send(message);
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        self.line(*meta.level())
    }
}

impl Syslog {
    fn line(&self, level: Level) -> Line {
        Line {
            syslog: self.clone(),
            level,
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_as_websockify_formats_them() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = format!("127.0.0.1:{}", receiver.local_addr().unwrap().port());
        let legacy = Syslog::connect(&server, true, true).unwrap();
        let m = String::from_utf8(legacy.message(Level::WARN, "plain refused\n")).unwrap();
        assert_eq!(
            m,
            format!("<28>websockify[{}]: plain refused", std::process::id())
        );
        let modern = Syslog::connect(&server, false, false).unwrap();
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

    #[test]
    fn utc_dates() {
        let now = utc_now();
        assert!(now.starts_with("20") && now.len() == 20, "{now}");
    }
}

//! The fields of a text log line, written as tracing-subscriber's `DefaultFields` writes them
//! without colours, for less work, and with every control character escaped.
//!
//! Every session ends with one log line, and formatting its ten fields was a fifth of the
//! proxy's user-space instructions per connection (callgrind: 16,000 of 72,600), most of it
//! the default visitor painting each field's name and `=` with `nu_ansi_term` styles that
//! are empty without colours, through three nested `format_args!` per field. This visitor
//! writes the same bytes directly: the message, then `name=value` with the value's `Debug`,
//! separated by one space; `log.` fields skipped and `r#` prefixes dropped; errors with their
//! `.sources`. `same_bytes_as_tracing_subscribers_default_fields` holds it to that.
//!
//! Where it differs on purpose: every control character in the message and in every value is
//! escaped, `\n`, `\r` and `\t` included (tracing-subscriber escapes only what a terminal
//! acts on). A message or a value can carry what a peer sent (a close reason, a path, a
//! header, a plugin's message), and a raw newline there would begin a second, real-looking
//! log line (security review: `INFO FAKE admin login`).

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// Makes a [`PlainVisitor`] per event; used for every text log line (the terminal's, the
/// file's, syslog's).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> PlainVisitor<'a> {
        PlainVisitor {
            writer,
            first: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's (or span's) fields.
pub struct PlainVisitor<'a> {
    writer: Writer<'a>,
    /// No field written yet: no space before the next.
    first: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Metadata of events from the `log` crate, already in the line's head.
        if name.starts_with("log.") {
            return;
        }
        self.result = self.write_field(name, value);
    }

    fn write_field(&mut self, name: &str, value: fmt::Arguments<'_>) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        // The message and the values can come from a peer: escaped, so that a line stays one.
        if name == "message" {
            return Escaping(&mut self.writer).write_fmt(value);
        }
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_char('=')?;
        Escaping(&mut self.writer).write_fmt(value)
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let error = Escaped(value);
        match value.source() {
            Some(source) => {
                let sources = Sources(source);
                let name = field.name();
                self.field(field, format_args!("{error} {name}.sources={sources}"));
            }
            None => self.field(field, format_args!("{error}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// Writes through to `W`, escaping every control character: the ones a terminal acts on as
/// tracing-subscriber's sanitizing does (ESC, BEL, BS, FF, DEL, the C1 controls), and the
/// line breaks and tabs and the other C0 controls, which it leaves (`\n`, `\r`, `\t`,
/// `\u{0}`).
struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, ch) in s.char_indices() {
            let escaped = match ch {
                '\x1b' => "\\x1b",
                '\x07' => "\\x07",
                '\x08' => "\\x08",
                '\x0c' => "\\x0c",
                '\x7f' => "\\x7f",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '\u{0}'..='\u{1f}' | '\u{80}'..='\u{9f}' => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..at])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{{{:x}}}", ch as u32)?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain = at + ch.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

/// An error's `Display`, escaped.
struct Escaped<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaping(f), "{}", self.0)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An error's chain of sources as a list: `[first, second]`.
struct Sources<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(error) = next {
            list.entry(&Escaped(error));
            next = error.source();
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer \x1b[31mred")
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("inner\u{9b}")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl std::error::Error for Inner {}

    /// Every kind of field our events carry, and the ones a peer could fill with control
    /// characters.
    fn events() {
        let path = "/websockify?token=\x1b]0;owned\x07\u{85}ü";
        tracing::info!(
            id = 7u64,
            client = %"127.0.0.1:5000",
            target = %"127.0.0.1:5900",
            protocol = "hybi-13/binary",
            tls = false,
            from_client = 5u64,
            to_client = 5u64,
            duration_ms = 9u64,
            close_code = 1005u16,
            delta = -3i64,
            "session ended: client closed"
        );
        tracing::warn!(path, "bad request for {path}: {}", 404);
        tracing::info!(r#type = "raw", ratio = 0.5f64, "x");
        tracing::error!(
            error = &Outer(Inner) as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::error!(error = &Inner as &(dyn std::error::Error + 'static));
        tracing::info!(empty = "", "");
        tracing::info!(message = "only \x08 a message");
    }

    /// What `fields` makes of the events `log` emits, as the text log writes it.
    fn format_with<N>(fields: N, log: impl FnOnce()) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .fmt_fields(fields);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, log);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn same_bytes_as_tracing_subscribers_default_fields() {
        let ours = format_with(PlainFields, events);
        let theirs = format_with(
            tracing_subscriber::fmt::format::DefaultFields::new(),
            events,
        );
        assert_eq!(ours, theirs);
        assert!(ours.contains("\\x1b]0;owned\\x07\\u{85}ü"), "{ours}");
        assert!(ours.contains("error=outer \\x1b[31mred error.sources=[inner\\u{9b}]"));
        assert_eq!(ours.lines().count(), 7);
    }

    /// A peer's close reason with line breaks (security review: `\n` in a reason began a
    /// real-looking `INFO FAKE admin login` line): one line, every control escaped, in the
    /// message and in every value.
    #[test]
    fn what_a_peer_sent_cannot_begin_a_line() {
        let text = format_with(PlainFields, || {
            let reason = "bye\n2026-12-03T10:00:00Z  INFO FAKE admin login\r\tx\0";
            tracing::info!(path = %"/a\nb", "session ended: client closed ({reason})");
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("(bye\\n2026-12-03T10:00:00Z  INFO FAKE admin login\\r\\tx\\u{0})"),
            "{text}"
        );
        assert!(text.contains("path=/a\\nb"), "{text}");
    }
}

//! The plugin ABI of websockify-rs, version 2, and the safe way to write a plugin in Rust.
//!
//! A plugin is a shared library that exports one symbol, [`ENTRY_POINT`], a function returning
//! a pointer to a static [`Table`]. The proxy checks [`Table::abi_version`] before anything
//! else, then calls:
//!
//! - [`Table::create`] once, with the plugin's configuration string (`--token-source` or
//!   `--auth-source`), to make an instance (or report why it cannot);
//! - [`Table::call`] for each request, with the request's [`Facts`], on the plugin's own
//!   threads (never the proxy's async workers), under a timeout, and from several threads at
//!   once unless the table's [`flags`] say [`flags::SERIAL`] (then the proxy never lets two
//!   calls of one instance overlap);
//! - [`Table::destroy`] once, when the instance is no longer needed (after a reload, the old
//!   one), on those threads too; it may report a failure into its `out`.
//!
//! Version 2 added [`Table::flags`] and `destroy`'s `out`; a plugin built for version 1 is
//! refused at load, naming its version.
//!
//! Nothing allocated on one side is freed on the other: strings going in are borrowed for the
//! duration of the call ([`Str`]), and the answer is written into a buffer the proxy owns
//! ([`Out`]). A resolver answers with a target (`host:port`), a unix socket path, or a refusal
//! with an HTTP status and reason; an auth plugin answers allow or refuse.
//!
//! In Rust, implement [`Plugin`] and call [`export_plugin!`]; the macro builds the table and
//! catches panics at the boundary, so a panicking plugin fails one request, never the proxy.
//! In C, include `include/websockify_plugin.h`.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The ABI version of this crate. The proxy refuses a plugin built for another version.
pub const ABI_VERSION: u32 = 2;

/// Bits of [`Table::flags`].
pub mod flags {
    /// The instance is not thread-safe: the proxy makes its calls one at a time.
    pub const SERIAL: u32 = 1;
}

/// The name of the one symbol a plugin exports: `const Table *websockify_plugin_entry(void)`.
pub const ENTRY_POINT: &str = "websockify_plugin_entry";

/// How much answer text the proxy accepts; longer text is cut at a character boundary.
/// A target or a one-line reason is far shorter.
pub const OUT_CAPACITY: usize = 4096;

/// A borrowed UTF-8 string: valid only for the duration of the call that receives it.
/// `ptr` may be null when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

impl Str {
    pub const EMPTY: Str = Str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows a Rust string (the caller keeps it alive while the `Str` is used).
    pub const fn new(s: &str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The string, or `None` if the pointer is null with a length, or the bytes are not UTF-8.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a`.
    pub unsafe fn as_str<'a>(self) -> Option<&'a str> {
        if self.len == 0 {
            return Some("");
        }
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: the caller guarantees `ptr` points to `len` bytes valid for 'a.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes).ok()
    }
}

/// One request header the plugin may look at.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub name: Str,
    pub value: Str,
}

/// What the proxy knows about a request when it asks a plugin. Empty strings mean "absent".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// The token (from the `token` query parameter, a `token` cookie, the subprotocol list,
    /// or the Host header with `--host-token`).
    pub token: Str,
    pub path: Str,
    pub query: Str,
    pub host: Str,
    pub origin: Str,
    /// The client's address, `ip:port` (the real client behind a trusted proxy).
    pub client_addr: Str,
    /// The common name of the client's verified TLS certificate.
    pub client_cert_cn: Str,
    pub headers: *const Header,
    pub headers_len: usize,
}

/// What kind of plugin a table describes.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Resolves a token to a target.
    Resolver = 1,
    /// Allows or refuses a request.
    Auth = 2,
}

/// The answer codes a plugin writes into [`Out::kind`].
pub mod outcome {
    /// `text` is `host:port` (an IPv6 host in brackets).
    pub const TARGET: u32 = 1;
    /// `text` is the path of a unix socket.
    pub const UNIX_SOCKET: u32 = 2;
    /// Refuse with `status` (an HTTP status, 400 to 599). The first line of `text` is the
    /// reason; any further lines are `Name: value` headers added to the answer (for example
    /// `WWW-Authenticate` with 401). Headers that frame the answer (`Content-Length`,
    /// `Transfer-Encoding`, `Connection`) are not allowed.
    pub const REFUSE: u32 = 3;
    /// The request may proceed (auth plugins).
    pub const ALLOW: u32 = 4;
    /// The plugin failed; `text` says why. The request ends with 502.
    pub const ERROR: u32 = 5;
}

/// The buffer a plugin writes its answer into; owned by the proxy.
#[repr(C)]
#[derive(Debug)]
pub struct Out {
    /// One of [`outcome`]'s codes; 0 means the plugin wrote nothing (treated as an error).
    pub kind: u32,
    /// With [`outcome::REFUSE`]: the HTTP status.
    pub status: u16,
    /// `cap` writable bytes.
    pub buf: *mut u8,
    pub cap: usize,
    /// How many bytes of `buf` hold the answer text.
    pub len: usize,
}

impl Out {
    /// An empty answer over `buf`, as a host passes it to `create` and `call`: nothing written
    /// yet (kind 0), room for `buf.len()` bytes. `buf` must outlive every use of the `Out`.
    pub fn new(buf: &mut [u8]) -> Out {
        Out {
            kind: 0,
            status: 0,
            buf: buf.as_mut_ptr(),
            cap: buf.len(),
            len: 0,
        }
    }

    /// Writes `kind`, `status` and as much of `text` as fits (cut at a character boundary).
    ///
    /// # Safety
    /// `buf` must point to `cap` writable bytes.
    pub unsafe fn write(&mut self, kind: u32, status: u16, text: &str) {
        self.kind = kind;
        self.status = status;
        let mut n = text.len().min(self.cap);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        if n > 0 && !self.buf.is_null() {
            // SAFETY: the caller guarantees `buf` has `cap` writable bytes, and n <= cap.
            unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), self.buf, n) };
        }
        self.len = if self.buf.is_null() { 0 } else { n };
    }
}

/// The table a plugin exports. Every field is set; the functions may be called from any
/// thread.
#[repr(C)]
pub struct Table {
    /// Must equal the proxy's [`ABI_VERSION`]; checked before anything else is read.
    pub abi_version: u32,
    /// A [`Kind`] as a number.
    pub kind: u32,
    /// [`flags`] bits; 0 for a thread-safe plugin.
    pub flags: u32,
    /// The plugin's name, for logs (static UTF-8).
    pub name: Str,
    /// Makes an instance from the configuration string; on failure returns null and writes
    /// an [`outcome::ERROR`] with the reason into `out`.
    pub create: unsafe extern "C" fn(config: Str, out: *mut Out) -> *mut c_void,
    /// Answers one request into `out`.
    pub call: unsafe extern "C" fn(instance: *mut c_void, facts: *const Facts, out: *mut Out),
    /// Frees an instance made by `create`; a failure may be reported as an
    /// [`outcome::ERROR`] in `out` (the proxy logs it and goes on).
    pub destroy: unsafe extern "C" fn(instance: *mut c_void, out: *mut Out),
}

// SAFETY: a table is immutable after construction; its pointers refer to static data and
// functions, which every thread may read and call.
unsafe impl Sync for Table {}

/// A request as a Rust plugin sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub token: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub host: &'a str,
    pub origin: &'a str,
    pub client_addr: &'a str,
    pub client_cert_cn: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Request<'a> {
    /// The value of a header (names compare without case), if the proxy passed it.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A Rust plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `host:port`.
    Target(String),
    UnixSocket(String),
    Refuse {
        status: u16,
        reason: String,
    },
    /// A refusal with extra answer headers, e.g. `WWW-Authenticate` for 401.
    RefuseWith {
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
    },
    Allow,
    Error(String),
}

/// What a Rust plugin implements; [`export_plugin!`] turns it into a [`Table`].
pub trait Plugin: Send + Sync + Sized + 'static {
    /// The name in logs (and websockify's class name for the shipped plugins).
    const NAME: &'static str;
    const KIND: Kind;
    /// `true` when an instance must not be called from two threads at once: the proxy then
    /// makes its calls one at a time ([`flags::SERIAL`]). A `Plugin` is `Sync` anyway; this is
    /// for plugins that wrap something that is not thread-safe behind a lock of their own and
    /// would rather not be asked concurrently.
    const SERIAL: bool = false;
    /// Makes an instance from `--token-source` / `--auth-source`.
    fn create(config: &str) -> Result<Self, String>;
    /// Answers one request; called from several threads at once.
    fn call(&self, request: &Request<'_>) -> Outcome;
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// `Table::create` for a Rust plugin.
///
/// # Safety
/// Called through the table by the proxy, with `config` valid for the call and `out`
/// pointing to an [`Out`] whose buffer has `cap` writable bytes.
pub unsafe extern "C" fn create<P: Plugin>(config: Str, out: *mut Out) -> *mut c_void {
    // SAFETY: the proxy passes a valid `Out` (see the function's contract).
    let Some(out) = (unsafe { out.as_mut() }) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `config` is valid for the duration of this call.
    let Some(config) = (unsafe { config.as_str() }) else {
        // SAFETY: `out` is valid as above.
        unsafe { out.write(outcome::ERROR, 0, "configuration is not UTF-8") };
        return std::ptr::null_mut();
    };
    match catch_unwind(|| P::create(config)) {
        Ok(Ok(plugin)) => Box::into_raw(Box::new(plugin)).cast(),
        Ok(Err(why)) => {
            // SAFETY: `out` is valid as above.
            unsafe { out.write(outcome::ERROR, 0, &why) };
            std::ptr::null_mut()
        }
        Err(panic) => {
            let why = format!("panicked: {}", panic_message(&*panic));
            // SAFETY: `out` is valid as above.
            unsafe { out.write(outcome::ERROR, 0, &why) };
            std::ptr::null_mut()
        }
    }
}

/// `Table::call` for a Rust plugin.
///
/// # Safety
/// `instance` must come from [`create::<P>`] and not be destroyed; `facts` and its strings
/// must be valid for the call; `out` as for [`create`].
pub unsafe extern "C" fn call<P: Plugin>(
    instance: *mut c_void,
    facts: *const Facts,
    out: *mut Out,
) {
    // SAFETY: the proxy passes a valid `Out`.
    let Some(out) = (unsafe { out.as_mut() }) else {
        return;
    };
    // SAFETY: `instance` was made by `create::<P>` from a `Box<P>` and is still alive.
    let plugin = unsafe { &*instance.cast::<P>() };
    // SAFETY: the proxy passes valid facts for the duration of the call.
    let Some(request) = (unsafe { facts.as_ref() }).and_then(|f| unsafe { request_from(f) }) else {
        // SAFETY: `out` is valid.
        unsafe { out.write(outcome::ERROR, 0, "request facts are not valid UTF-8") };
        return;
    };
    let answer = catch_unwind(AssertUnwindSafe(|| plugin.call(&request)))
        .unwrap_or_else(|panic| Outcome::Error(format!("panicked: {}", panic_message(&*panic))));
    let (kind, status, text) = match answer {
        Outcome::Target(t) => (outcome::TARGET, 0, t),
        Outcome::UnixSocket(p) => (outcome::UNIX_SOCKET, 0, p),
        Outcome::Refuse { status, reason } => (outcome::REFUSE, status, one_line(&reason)),
        Outcome::RefuseWith {
            status,
            reason,
            headers,
        } => {
            let mut text = one_line(&reason);
            for (name, value) in headers {
                text.push_str(&format!("\n{}: {}", one_line(&name), one_line(&value)));
            }
            (outcome::REFUSE, status, text)
        }
        Outcome::Allow => (outcome::ALLOW, 0, String::new()),
        Outcome::Error(e) => (outcome::ERROR, 0, e),
    };
    // SAFETY: `out` is valid.
    unsafe { out.write(kind, status, &text) };
}

/// A reason or header kept to one line, so that it cannot start another header.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// `Table::destroy` for a Rust plugin: a panic while dropping the instance is caught and
/// reported into `out`, never unwound into the proxy (which would abort it).
///
/// # Safety
/// `instance` must come from [`create::<P>`] and be destroyed only once; `out` as for
/// [`create`], or null.
pub unsafe extern "C" fn destroy<P: Plugin>(instance: *mut c_void, out: *mut Out) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` is the `Box<P>` leaked by `create::<P>`, destroyed once.
    let plugin = unsafe { Box::from_raw(instance.cast::<P>()) };
    if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(plugin))) {
        let why = format!("panicked while being destroyed: {}", panic_message(&*panic));
        // SAFETY: the proxy passes a valid `Out` or null.
        if let Some(out) = unsafe { out.as_mut() } {
            // SAFETY: `out` is valid as above.
            unsafe { out.write(outcome::ERROR, 0, &why) };
        }
    }
}

/// Reads [`Facts`] into a [`Request`].
///
/// # Safety
/// Every `Str` in `facts`, and `headers_len` headers at `headers`, must be valid for `'a`.
pub unsafe fn request_from<'a>(facts: &'a Facts) -> Option<Request<'a>> {
    let mut headers = Vec::with_capacity(facts.headers_len);
    if facts.headers_len > 0 && !facts.headers.is_null() {
        // SAFETY: the caller guarantees `headers_len` valid headers at `headers`.
        let raw = unsafe { std::slice::from_raw_parts(facts.headers, facts.headers_len) };
        for h in raw {
            // SAFETY: the header strings are valid for 'a.
            headers.push(unsafe { (h.name.as_str()?, h.value.as_str()?) });
        }
    }
    // SAFETY: each string is valid for 'a.
    unsafe {
        Some(Request {
            token: facts.token.as_str()?,
            path: facts.path.as_str()?,
            query: facts.query.as_str()?,
            host: facts.host.as_str()?,
            origin: facts.origin.as_str()?,
            client_addr: facts.client_addr.as_str()?,
            client_cert_cn: facts.client_cert_cn.as_str()?,
            headers,
        })
    }
}

/// The table for a Rust plugin type.
pub const fn table<P: Plugin>() -> Table {
    Table {
        abi_version: ABI_VERSION,
        kind: P::KIND as u32,
        flags: if P::SERIAL { flags::SERIAL } else { 0 },
        name: Str::new(P::NAME),
        create: create::<P>,
        call: call::<P>,
        destroy: destroy::<P>,
    }
}

/// Exports a [`Plugin`] type as a loadable plugin: emits the [`ENTRY_POINT`] symbol returning
/// its [`Table`].
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        static WEBSOCKIFY_PLUGIN_TABLE: $crate::Table = $crate::table::<$plugin>();

        /// The plugin's entry point, looked up by the proxy.
        #[unsafe(no_mangle)]
        pub extern "C" fn websockify_plugin_entry() -> *const $crate::Table {
            &WEBSOCKIFY_PLUGIN_TABLE
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo {
        prefix: String,
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            if self.prefix == "drop-panics" {
                panic!("dropped");
            }
        }
    }

    impl Plugin for Echo {
        const NAME: &'static str = "Echo";
        const KIND: Kind = Kind::Resolver;
        fn create(config: &str) -> Result<Self, String> {
            match config {
                "" => Err("needs a prefix".to_string()),
                "panic" => panic!("asked to"),
                p => Ok(Echo {
                    prefix: p.to_string(),
                }),
            }
        }
        fn call(&self, r: &Request<'_>) -> Outcome {
            match r.token {
                "boom" => panic!("token boom"),
                "no" => Outcome::Refuse {
                    status: 404,
                    reason: format!("unknown token {}", r.token),
                },
                t => Outcome::Target(format!(
                    "{}{t}:{}",
                    self.prefix,
                    r.header("x-port").unwrap_or("1")
                )),
            }
        }
    }

    static TABLE: Table = table::<Echo>();

    fn text(o: &Out, buf: &[u8]) -> String {
        String::from_utf8(buf[..o.len].to_vec()).unwrap()
    }

    #[test]
    fn round_trip_through_the_table() {
        assert_eq!(TABLE.abi_version, ABI_VERSION);
        assert_eq!(TABLE.kind, Kind::Resolver as u32);
        let mut buf = [0u8; 64];
        let mut o = Out::new(&mut buf);
        // SAFETY: valid strings and buffer for the calls below.
        let instance = unsafe { (TABLE.create)(Str::new("vnc-"), &mut o) };
        assert!(!instance.is_null());
        let headers = [Header {
            name: Str::new("X-Port"),
            value: Str::new("5901"),
        }];
        let facts = |token: &'static str| Facts {
            token: Str::new(token),
            path: Str::new("/"),
            query: Str::EMPTY,
            host: Str::EMPTY,
            origin: Str::EMPTY,
            client_addr: Str::new("127.0.0.1:1"),
            client_cert_cn: Str::EMPTY,
            headers: headers.as_ptr(),
            headers_len: headers.len(),
        };
        for (token, kind, status, want) in [
            ("a", outcome::TARGET, 0, "vnc-a:5901"),
            ("no", outcome::REFUSE, 404, "unknown token no"),
            ("boom", outcome::ERROR, 0, "panicked: token boom"),
        ] {
            let mut buf = [0u8; 64];
            let mut o = Out::new(&mut buf);
            // SAFETY: the instance is alive; facts and buffer are valid.
            unsafe { (TABLE.call)(instance, &facts(token), &mut o) };
            assert_eq!((o.kind, o.status), (kind, status), "{token}");
            assert_eq!(text(&o, &buf), want);
        }
        let mut buf = [0u8; 64];
        let mut o = Out::new(&mut buf);
        // SAFETY: made by create above, destroyed once.
        unsafe { (TABLE.destroy)(instance, &mut o) };
        assert_eq!(o.kind, 0, "nothing to report");
    }

    /// A panic while an instance is dropped is caught and reported, never unwound into the
    /// proxy (which would abort it).
    #[test]
    fn a_panic_in_destroy_is_reported() {
        let mut buf = [0u8; 64];
        let mut o = Out::new(&mut buf);
        // SAFETY: valid strings and buffer.
        let instance = unsafe { (TABLE.create)(Str::new("drop-panics"), &mut o) };
        assert!(!instance.is_null());
        let mut buf = [0u8; 64];
        let mut o = Out::new(&mut buf);
        // SAFETY: made by create above, destroyed once.
        unsafe { (TABLE.destroy)(instance, &mut o) };
        assert_eq!(o.kind, outcome::ERROR);
        assert_eq!(text(&o, &buf), "panicked while being destroyed: dropped");
    }

    #[test]
    fn create_failures_and_panics_are_reported() {
        for (config, want) in [("", "needs a prefix"), ("panic", "panicked: asked to")] {
            let mut buf = [0u8; 64];
            let mut o = Out::new(&mut buf);
            // SAFETY: valid strings and buffer.
            let instance = unsafe { (TABLE.create)(Str::new(config), &mut o) };
            assert!(instance.is_null());
            assert_eq!(o.kind, outcome::ERROR);
            assert_eq!(text(&o, &buf), want);
        }
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let mut buf = [0u8; 5];
        let mut o = Out::new(&mut buf);
        // SAFETY: buf has 5 writable bytes.
        unsafe { o.write(outcome::REFUSE, 403, "ééé") };
        assert_eq!(o.len, 4);
        assert_eq!(text(&o, &buf), "éé");
    }
}

//! Loading plugins and calling them safely.
//!
//! A plugin is either built in (websockify's names, linked into this binary and called through
//! the same table as a loaded one) or a shared library named by path, loaded with libloading.
//! Its ABI version is checked before anything else is read; a file that is not a plugin, or a
//! plugin for another ABI version, is a start-up error naming the file.
//!
//! Calls run on the plugin's own threads (`pool`), never on the async workers nor on tokio's
//! blocking pool, under [`CALL_TIMEOUT`]: a request whose plugin does not answer in time gets
//! 504, and an answer is checked like any other input from outside (502 for garbage). At most
//! `--max-plugin-calls` calls of one plugin are in flight; over it a request gets 503 at once.
//! A call that timed out is abandoned, not stopped: it keeps its thread (and its place in the
//! bound) until the plugin returns, and a call whose request was answered before a thread
//! took it is never started. Creating an instance again (SIGHUP) and destroying the old one
//! run on those threads too; a plugin that reports a failure while destroyed is logged.

mod pool;

/// The threads each plugin's calls run on. A plugin answering in milliseconds keeps up with
/// any burst on a few; one that hangs holds these and nothing else.
pub const THREADS: usize = 16;

use std::ffi::c_void;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http::StatusCode;
use websockify_plugin_api::{self as api, ABI_VERSION, Facts, Header, Out, Str, Table, outcome};

use crate::config::addr::HostPort;
use crate::edge::http::Refusal;
use crate::session::target::Target;

/// How long one plugin call may take before its request gets 504.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A plugin linked into the binary.
struct Builtin {
    /// websockify's class name.
    name: &'static str,
    table: Table,
    /// Its source names a file or directory (which `-D` must make absolute before it
    /// changes to `/`).
    source_is_path: bool,
}

/// The built-in plugins, called through the same table a loaded library provides.
static BUILTINS: [Builtin; 11] = [
    Builtin {
        name: "TokenFile",
        table: api::table::<websockify_tokenfile::TokenFile>(),
        source_is_path: true,
    },
    Builtin {
        name: "ReadOnlyTokenFile",
        table: api::table::<websockify_tokenfile::ReadOnlyTokenFile>(),
        source_is_path: true,
    },
    Builtin {
        name: "TokenFileName",
        table: api::table::<websockify_tokenfile::TokenFileName>(),
        source_is_path: true,
    },
    Builtin {
        name: "UnixDomainSocketDirectory",
        table: api::table::<websockify_tokenfile::UnixDomainSocketDirectory>(),
        source_is_path: true,
    },
    Builtin {
        name: "BaseTokenAPI",
        table: api::table::<websockify_tokenapi::BaseTokenAPI>(),
        source_is_path: false,
    },
    Builtin {
        name: "JSONTokenApi",
        table: api::table::<websockify_tokenapi::JSONTokenApi>(),
        source_is_path: false,
    },
    Builtin {
        name: "JWTTokenApi",
        table: api::table::<websockify_jwt::JWTTokenApi>(),
        source_is_path: true,
    },
    Builtin {
        name: "TokenRedis",
        table: api::table::<websockify_redis::TokenRedis>(),
        source_is_path: false,
    },
    Builtin {
        name: "BasicHTTPAuth",
        table: api::table::<websockify_auth::BasicHTTPAuth>(),
        source_is_path: false,
    },
    Builtin {
        name: "ExpectOrigin",
        table: api::table::<websockify_auth::ExpectOrigin>(),
        source_is_path: false,
    },
    Builtin {
        name: "ClientCertCNAuth",
        table: api::table::<websockify_auth::ClientCertCNAuth>(),
        source_is_path: false,
    },
];

/// The built-in plugin `name` names: websockify's class name, also accepted as
/// `websockify.token_plugins.NAME` / `websockify.auth_plugins.NAME`, as websockify's command
/// lines write them.
fn builtin(name: &str) -> Option<&'static Builtin> {
    let short = name.rsplit('.').next().unwrap_or(name);
    BUILTINS.iter().find(|b| b.name == short)
}

/// Whether `plugin`'s source names a file or directory (made absolute before `-D` changes
/// to `/`): a built-in that reads one; a library's source is its own business.
pub fn source_is_path(plugin: &str) -> bool {
    builtin(plugin).is_some_and(|b| b.source_is_path)
}

/// A plugin's table, the threads its calls run on and, for a loaded one, the library that
/// must outlive them.
pub struct Plugin {
    table: &'static Table,
    name: String,
    /// Its calls, creations and destructions (see [`pool`]).
    pool: pool::Pool,
    /// The table asks for calls one at a time ([`api::flags::SERIAL`]).
    serial: Option<std::sync::Mutex<()>>,
    /// Dropped last: the table and its functions live in this library.
    _library: Option<libloading::Library>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).finish()
    }
}

/// What a plugin decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Target(Target),
    Allow,
    /// Refuse the request with this HTTP status, one-line reason, and extra headers.
    Refuse(Refusal),
}

/// A plugin's refusal, checked: a 4xx/5xx status, the reason line, then `Name: value` header
/// lines, none of which may touch the answer's framing.
fn parse_refusal(status: u16, text: &str) -> Result<Refusal, String> {
    let status = match StatusCode::from_u16(status) {
        Ok(s) if (400..600).contains(&status) => s,
        _ => {
            return Err(format!(
                "refusal with a status that is not 4xx/5xx: {status}"
            ));
        }
    };
    let mut lines = text.split('\n');
    let mut refusal = Refusal::new(status, lines.next().unwrap_or("").trim().to_string());
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line from the plugin: {line:?}"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("bad header name from the plugin: {name:?}"))?;
        if [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::CONNECTION,
        ]
        .contains(&name)
        {
            return Err(format!("the plugin may not set {name}"));
        }
        // Visible ASCII only, as `HeaderValue::from_str` accepts.
        let value = http::HeaderValue::from_str(value.trim())
            .ok()
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .ok_or_else(|| format!("bad header value from the plugin for {name}"))?;
        refusal = refusal.with_header(name.as_str().to_string(), value);
    }
    Ok(refusal)
}

impl Plugin {
    /// A built-in name or a path to a shared library.
    /// `max_calls` (`--max-plugin-calls`) is the bound on its calls in flight (running or
    /// waiting for one of its [`THREADS`] threads).
    pub fn load(spec: &str, kind: api::Kind, max_calls: usize) -> anyhow::Result<Arc<Plugin>> {
        let (table, library) = match builtin(spec) {
            Some(builtin) => (&builtin.table, None),
            None if spec.contains('/') || spec.ends_with(".so") => {
                let (table, library) = load_library(Path::new(spec))?;
                (table, Some(library))
            }
            None => {
                let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
                bail!(
                    "unknown plugin `{spec}`: use {}, or the path of a plugin library (.so)",
                    names.join(", ")
                )
            }
        };
        if table.kind != kind as u32 {
            let wanted = match kind {
                api::Kind::Resolver => "a token plugin (a resolver)",
                api::Kind::Auth => "an auth plugin",
            };
            bail!("{spec} is not {wanted}");
        }
        let pool = pool::Pool::new(&thread_name(table), max_calls.min(THREADS), max_calls)
            .with_context(|| format!("starting the threads of plugin {spec}"))?;
        Ok(Arc::new(Plugin {
            table,
            name: spec.to_string(),
            pool,
            serial: (table.flags & api::flags::SERIAL != 0).then(std::sync::Mutex::default),
            _library: library,
        }))
    }

    /// As the configuration names it (a built-in name or a library's path): the metrics'
    /// label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For the logs: the name as configured and, when it says something more (a library's
    /// path), as its table names itself (`Table.name`).
    pub fn describe(&self) -> String {
        let own = table_name(self.table);
        let short = self.name.rsplit('.').next().unwrap_or(&self.name);
        if own == short {
            self.name.clone()
        } else {
            format!("{} ({own})", self.name)
        }
    }

    /// Makes an instance from the plugin's configuration string.
    pub fn create(self: &Arc<Self>, config: &str) -> anyhow::Result<Instance> {
        let mut buf = vec![0u8; api::OUT_CAPACITY];
        let mut out = Out::new(&mut buf);
        // SAFETY: the table was checked at load; `config` lives across the call and `out`
        // points to a buffer of `cap` bytes that outlives it.
        let ptr = unsafe { (self.table.create)(Str::new(config), &mut out) };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Instance {
                plugin: self.clone(),
                ptr,
            }),
            None => bail!("{}: {}", self.name, text(&out, &buf)),
        }
    }
}

/// The answer text, whatever bytes the plugin wrote.
fn text(out: &Out, buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..out.len.min(buf.len())]).into_owned()
}

/// The name a table gives itself (`Table.name`), or `plugin` if it gives none readable.
fn table_name(table: &Table) -> String {
    // SAFETY: the table's name is a static string of the library, valid while it is loaded
    // (the caller holds the table, so the library).
    unsafe { table.name.as_str() }
        .filter(|name| !name.is_empty())
        .unwrap_or("plugin")
        .to_string()
}

/// A name for the plugin's threads (the kernel keeps 15 bytes of it).
fn thread_name(table: &Table) -> String {
    table_name(table)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect()
}

fn load_library(path: &Path) -> anyhow::Result<(&'static Table, libloading::Library)> {
    let name = path.display().to_string();
    // SAFETY: loading a library runs its initialisers; the operator named this file as a
    // plugin, which is the trust this feature rests on (as websockify trusts its --token-plugin
    // Python class).
    let library = unsafe { libloading::Library::new(path) }
        .with_context(|| format!("cannot load plugin {name}"))?;
    let table = {
        // SAFETY: the symbol is declared by the ABI as `const Table *(*)(void)`; if the file
        // exports something else under that name it is not a plugin of ours, a risk the
        // version check below narrows.
        let entry: libloading::Symbol<'_, unsafe extern "C" fn() -> *const Table> =
            unsafe { library.get(api::ENTRY_POINT.as_bytes()) }.map_err(|_| {
                anyhow::anyhow!(
                    "{name} is not a websockify plugin: no {} symbol",
                    api::ENTRY_POINT
                )
            })?;
        // SAFETY: calling the entry point has no preconditions.
        let ptr = unsafe { entry() };
        if ptr.is_null() {
            bail!("{name}: the plugin returned no table");
        }
        // SAFETY: a non-null table pointer from the entry point; the first field is the version,
        // read before anything whose layout could differ between versions.
        let version = unsafe { std::ptr::addr_of!((*ptr).abi_version).read() };
        if version != ABI_VERSION {
            bail!(
                "{name} is built for plugin ABI version {version}; this websockify speaks version {ABI_VERSION}"
            );
        }
        // SAFETY: same ABI version, so the table has the layout we expect; it is static in the
        // library, which `Plugin` keeps loaded as long as the reference is used.
        unsafe { &*ptr }
    };
    Ok((table, library))
}

/// A plugin instance; destroyed when the last request using it is done.
pub struct Instance {
    plugin: Arc<Plugin>,
    ptr: NonNull<c_void>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.plugin.name)
            .finish()
    }
}

// SAFETY: the ABI requires instances to be callable from any thread at once (the Rust macro
// requires `Send + Sync` plugins), and `ptr` is only passed back to the plugin.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Drop for Instance {
    /// Destroyed on the plugin's threads (a plugin may block while it tears down), with what
    /// it reports logged; a Rust plugin's panic is caught by `export_plugin!`.
    fn drop(&mut self) {
        let doomed = Doomed {
            plugin: self.plugin.clone(),
            ptr: self.ptr,
        };
        self.plugin.pool.run(move || doomed.destroy());
    }
}

/// An instance on its way to `destroy`.
struct Doomed {
    plugin: Arc<Plugin>,
    ptr: NonNull<c_void>,
}

// SAFETY: as for `Instance`: the ABI lets an instance be used (and destroyed) from any thread,
// and `ptr` is only passed back to the plugin.
unsafe impl Send for Doomed {}

impl Doomed {
    fn destroy(self) {
        let mut buf = vec![0u8; api::OUT_CAPACITY];
        let mut out = Out::new(&mut buf);
        // SAFETY: `ptr` came from this plugin's `create`, its last `Instance` is gone, and it
        // is destroyed exactly once; `out` points to `cap` writable bytes.
        unsafe { (self.plugin.table.destroy)(self.ptr.as_ptr(), &mut out) };
        if out.kind == outcome::ERROR {
            tracing::warn!(
                "plugin {} failed while destroying an instance: {}",
                self.plugin.name,
                text(&out, &buf)
            );
        }
    }
}

/// How long re-creating an instance on SIGHUP may take (a Redis or HTTP source may be slow).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A plugin instance that SIGHUP replaces: the plugin is created again from its source (so a
/// ReadOnlyTokenFile re-reads its file, a JWT plugin its key), and requests already asking
/// the old instance finish with it. A failed reload keeps the old instance.
pub struct Reloadable {
    plugin: Arc<Plugin>,
    source: String,
    current: std::sync::RwLock<Arc<Instance>>,
}

impl std::fmt::Debug for Reloadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("plugin", &self.plugin.name)
            .finish()
    }
}

impl Reloadable {
    pub fn create(plugin: Arc<Plugin>, source: &str) -> anyhow::Result<Reloadable> {
        let instance = plugin.create(source)?;
        Ok(Reloadable {
            plugin,
            source: source.to_string(),
            current: std::sync::RwLock::new(Arc::new(instance)),
        })
    }

    /// The instance new requests use.
    pub fn current(&self) -> Arc<Instance> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn describe(&self) -> String {
        self.plugin.describe()
    }

    pub fn name(&self) -> &str {
        self.plugin.name()
    }

    /// Creates the instance again, off the async workers; on success new requests use it.
    pub async fn reload(self: &Arc<Self>) -> anyhow::Result<()> {
        let this = self.clone();
        let (done, created) = tokio::sync::oneshot::channel();
        self.plugin.pool.run(move || {
            let _ = done.send(this.plugin.create(&this.source));
        });
        let instance = match tokio::time::timeout(RELOAD_TIMEOUT, created).await {
            Ok(Ok(created)) => created?,
            Ok(Err(_)) => anyhow::bail!("{}: its thread ended without an answer", self.name()),
            Err(_) => anyhow::bail!(
                "{} was not created again within {}s",
                self.name(),
                RELOAD_TIMEOUT.as_secs()
            ),
        };
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(instance),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(instance),
        }
        Ok(())
    }
}

/// What a plugin is asked: the request's facts as the ABI passes them ([`api::Facts`]), in
/// owned form for a call on another thread.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub token: String,
    pub path: String,
    pub query: String,
    pub host: String,
    pub origin: String,
    pub client_addr: String,
    pub client_cert_cn: String,
    pub headers: Vec<(String, String)>,
}

impl Instance {
    /// Calls the plugin (blocking) and checks its answer.
    pub fn call_blocking(&self, facts: &Query) -> Result<Answer, String> {
        let headers: Vec<Header> = facts
            .headers
            .iter()
            .map(|(n, v)| Header {
                name: Str::new(n),
                value: Str::new(v),
            })
            .collect();
        let raw = Facts {
            token: Str::new(&facts.token),
            path: Str::new(&facts.path),
            query: Str::new(&facts.query),
            host: Str::new(&facts.host),
            origin: Str::new(&facts.origin),
            client_addr: Str::new(&facts.client_addr),
            client_cert_cn: Str::new(&facts.client_cert_cn),
            headers: headers.as_ptr(),
            headers_len: headers.len(),
        };
        let mut buf = vec![0u8; api::OUT_CAPACITY];
        let mut out = Out::new(&mut buf);
        // One call at a time for a plugin that asks for it.
        let _serial = self.plugin.serial.as_ref().map(|lock| {
            lock.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        // SAFETY: the instance is alive (we hold it), every string and the header array live
        // across the call, and `out` points to `cap` writable bytes.
        unsafe { (self.plugin.table.call)(self.ptr.as_ptr(), &raw, &mut out) };
        let text = text(&out, &buf);
        match out.kind {
            outcome::TARGET => text
                .parse::<HostPort>()
                .map(|hp| Answer::Target(Target::Tcp(hp)))
                .map_err(|e| format!("bad target from the plugin: {e}")),
            outcome::UNIX_SOCKET if text.starts_with('/') => {
                Ok(Answer::Target(Target::Unix(text.into())))
            }
            outcome::UNIX_SOCKET => Err(format!("bad unix socket path from the plugin: {text:?}")),
            outcome::REFUSE => parse_refusal(out.status, &text).map(Answer::Refuse),
            outcome::ALLOW => Ok(Answer::Allow),
            outcome::ERROR => Err(text),
            other => Err(format!("unknown answer kind {other}")),
        }
    }

    pub fn plugin_name(&self) -> &str {
        self.plugin.name()
    }
}

/// Why a plugin call gave no usable answer; each ends only its own request.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin {plugin} failed: {why}")]
    Failed { plugin: String, why: String },
    #[error("plugin {plugin} did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout { plugin: String },
    #[error("plugin {plugin} has {max} calls in flight already (--max-plugin-calls)")]
    Busy { plugin: String, max: usize },
}

impl CallError {
    /// The HTTP status the request is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            CallError::Failed { .. } => StatusCode::BAD_GATEWAY,
            CallError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            CallError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Calls `instance` on its plugin's threads, under [`CALL_TIMEOUT`]; refused at once when
/// the plugin has `--max-plugin-calls` calls in flight.
pub async fn call(instance: &Arc<Instance>, facts: Query) -> Result<Answer, CallError> {
    let plugin = instance.plugin_name().to_string();
    let (answer, answered) = tokio::sync::oneshot::channel();
    // Set once this request stops waiting (answered, timed out, or gone): a call a thread
    // had not started by then is not started at all.
    let gone = Abandoned::default();
    let worker = instance.clone();
    let abandoned = gone.0.clone();
    let started = instance.plugin.pool.try_run(move || {
        if abandoned.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let _ = answer.send(worker.call_blocking(&facts));
    });
    if let Err(busy) = started {
        return Err(CallError::Busy {
            plugin,
            max: busy.max,
        });
    }
    match tokio::time::timeout(CALL_TIMEOUT, answered).await {
        Ok(Ok(Ok(answer))) => Ok(answer),
        Ok(Ok(Err(why))) => Err(CallError::Failed { plugin, why }),
        // A panic that escaped the plugin's own guard (a C plugin cannot unwind into us; a Rust
        // one is caught by export_plugin!) still ends only this request.
        Ok(Err(_)) => Err(CallError::Failed {
            plugin,
            why: "the call ended without an answer".to_string(),
        }),
        Err(_) => Err(CallError::Timeout { plugin }),
    }
}

/// Marks a call abandoned when its request stops waiting, however it stops.
#[derive(Default)]
struct Abandoned(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_and_errors() {
        assert!(Plugin::load("TokenFile", api::Kind::Resolver, 4).is_ok());
        assert!(
            Plugin::load(
                "websockify.token_plugins.ReadOnlyTokenFile",
                api::Kind::Resolver,
                4
            )
            .is_ok()
        );
        let err = Plugin::load("NoSuchPlugin", api::Kind::Resolver, 4).unwrap_err();
        assert!(
            err.to_string().contains("unknown plugin `NoSuchPlugin`"),
            "{err}"
        );
        let err = Plugin::load("/nonexistent/libx.so", api::Kind::Resolver, 4).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/libx.so"),
            "{err:#}"
        );
        let err = Plugin::load("TokenFile", api::Kind::Auth, 4).unwrap_err();
        assert!(
            err.to_string().contains("TokenFile is not an auth plugin"),
            "{err}"
        );
    }

    #[test]
    fn refusal_headers_are_checked() {
        let r = parse_refusal(401, "login\nWWW-Authenticate: Basic realm=\"Websockify\"").unwrap();
        assert_eq!(r.headers[0].0, http::header::WWW_AUTHENTICATE.as_str());
        let text = String::from_utf8(r.response()).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"Websockify\"\r\n"
            ),
            "{text}"
        );
        assert!(parse_refusal(200, "ok").is_err());
        assert!(parse_refusal(403, "x\nContent-Length: 0").is_err());
        assert!(parse_refusal(403, "x\nno colon").is_err());
    }

    #[tokio::test]
    async fn token_file_through_the_table() {
        let dir = std::env::temp_dir().join(format!("websockify-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "a: [::1]:5900\nu: unix_socket:/run/x.sock\n").unwrap();
        let plugin = Plugin::load("TokenFile", api::Kind::Resolver, 4).unwrap();
        let instance = Arc::new(plugin.create(file.to_str().unwrap()).unwrap());
        let ask = |token: &str| Query {
            token: token.to_string(),
            ..Query::default()
        };
        assert_eq!(
            call(&instance, ask("a")).await.unwrap(),
            Answer::Target(Target::Tcp("[::1]:5900".parse().unwrap()))
        );
        assert_eq!(
            call(&instance, ask("u")).await.unwrap(),
            Answer::Target(Target::Unix("/run/x.sock".into()))
        );
        let Answer::Refuse(refusal) = call(&instance, ask("zz")).await.unwrap() else {
            panic!("an unknown token is refused");
        };
        assert_eq!(
            (refusal.status, &*refusal.reason),
            (StatusCode::NOT_FOUND, "unknown token")
        );
        let err = plugin.create("/nonexistent/tokens").unwrap_err();
        assert!(
            err.to_string()
                .contains("TokenFile: cannot read /nonexistent/tokens"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Loading plugins and calling them safely.
//!
//! A plugin is either built in (websockify's names, linked into this binary and called through
//! the same table as a loaded one) or a shared library named by path, loaded with libloading.
//! Its ABI version is checked before anything else is read; a file that is not a plugin, or a
//! plugin for another ABI version, is a start-up error naming the file.
//!
//! Calls run on tokio's blocking pool under [`CALL_TIMEOUT`], never on the async workers: a
//! request whose plugin does not answer in time gets 504, and an answer is checked like any
//! other input from outside (502 for garbage). A call that timed out is abandoned, not
//! stopped: it keeps its blocking thread until the plugin returns, and nothing yet bounds
//! how many such calls run at once, so a plugin that hangs on every call can fill the
//! blocking pool that DNS lookups, `--web` files and `--record` share.

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

/// A plugin's table and, for a loaded one, the library that must outlive it.
pub struct Plugin {
    table: &'static Table,
    name: String,
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
    pub fn load(spec: &str, kind: api::Kind) -> anyhow::Result<Arc<Plugin>> {
        let plugin = match builtin(spec) {
            Some(builtin) => Plugin {
                table: &builtin.table,
                name: spec.to_string(),
                _library: None,
            },
            None if spec.contains('/') || spec.ends_with(".so") => load_library(Path::new(spec))?,
            None => {
                let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
                bail!(
                    "unknown plugin `{spec}`: use {}, or the path of a plugin library (.so)",
                    names.join(", ")
                )
            }
        };
        if plugin.table.kind != kind as u32 {
            let wanted = match kind {
                api::Kind::Resolver => "a token plugin (a resolver)",
                api::Kind::Auth => "an auth plugin",
            };
            bail!("{spec} is not {wanted}");
        }
        Ok(Arc::new(plugin))
    }

    pub fn name(&self) -> &str {
        &self.name
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

fn load_library(path: &Path) -> anyhow::Result<Plugin> {
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
    Ok(Plugin {
        table,
        name,
        _library: Some(library),
    })
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
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this plugin's `create` and is destroyed exactly once.
        unsafe { (self.plugin.table.destroy)(self.ptr.as_ptr()) };
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

    pub fn name(&self) -> &str {
        self.plugin.name()
    }

    /// Creates the instance again, off the async workers; on success new requests use it.
    pub async fn reload(self: &Arc<Self>) -> anyhow::Result<()> {
        let this = self.clone();
        let task = tokio::task::spawn_blocking(move || this.plugin.create(&this.source));
        let instance = match tokio::time::timeout(RELOAD_TIMEOUT, task).await {
            Ok(Ok(created)) => created?,
            Ok(Err(join)) => anyhow::bail!("{}: {join}", self.name()),
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
}

impl CallError {
    /// The HTTP status the request is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            CallError::Failed { .. } => StatusCode::BAD_GATEWAY,
            CallError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// Calls `instance` off the async workers, under [`CALL_TIMEOUT`].
pub async fn call(instance: &Arc<Instance>, facts: Query) -> Result<Answer, CallError> {
    let plugin = instance.plugin_name().to_string();
    let worker = instance.clone();
    let task = tokio::task::spawn_blocking(move || worker.call_blocking(&facts));
    match tokio::time::timeout(CALL_TIMEOUT, task).await {
        Ok(Ok(Ok(answer))) => Ok(answer),
        Ok(Ok(Err(why))) => Err(CallError::Failed { plugin, why }),
        // A panic that escaped the plugin's own guard (a C plugin cannot unwind into us; a Rust
        // one is caught by export_plugin!) still ends only this request.
        Ok(Err(join)) => Err(CallError::Failed {
            plugin,
            why: join.to_string(),
        }),
        Err(_) => Err(CallError::Timeout { plugin }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_and_errors() {
        assert!(Plugin::load("TokenFile", api::Kind::Resolver).is_ok());
        assert!(
            Plugin::load(
                "websockify.token_plugins.ReadOnlyTokenFile",
                api::Kind::Resolver
            )
            .is_ok()
        );
        let err = Plugin::load("NoSuchPlugin", api::Kind::Resolver).unwrap_err();
        assert!(
            err.to_string().contains("unknown plugin `NoSuchPlugin`"),
            "{err}"
        );
        let err = Plugin::load("/nonexistent/libx.so", api::Kind::Resolver).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/libx.so"),
            "{err:#}"
        );
        let err = Plugin::load("TokenFile", api::Kind::Auth).unwrap_err();
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
        let plugin = Plugin::load("TokenFile", api::Kind::Resolver).unwrap();
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

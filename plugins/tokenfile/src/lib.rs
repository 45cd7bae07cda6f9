//! websockify's file-system resolvers: `ReadOnlyTokenFile` (read once) and `TokenFile`
//! (re-read when a file changes) in websockify's exact format, `TokenFileName` (a file per
//! token) and `UnixDomainSocketDirectory` (a socket per token).
//!
//! The source is a file, or a directory whose files are all read. Each line is
//! `token: host:port` (split at the colon followed by white space; the target at its last
//! colon), or `token: unix_socket:/path/to.sock` for a unix socket. Blank lines and lines
//! starting with `#` are skipped; a line that does not parse is reported and skipped, as
//! websockify does, so one typo does not take every other token down.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use websockify_plugin_api::{Kind, Outcome, Plugin, Request};

/// Where a token leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `host:port` exactly as written (an IPv6 host keeps its brackets).
    Target(String),
    UnixSocket(String),
}

/// The tokens of a source, and the problems found reading it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub entries: HashMap<String, Entry>,
    /// `file:line: why` for each line skipped.
    pub problems: Vec<String>,
}

/// Parses one file's text; `name` is used in problem reports.
pub fn parse(text: &str, name: &str, into: &mut Tokens) {
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = |why: &str| format!("{name}:{}: {why}", index + 1);
        // websockify: `re.split(r':\s', line)` must give exactly two parts.
        let parts: Vec<&str> = split_colon_space(line);
        let [token, target] = parts[..] else {
            into.problems.push(problem(
                "expected `token: host:port` (one colon followed by a space)",
            ));
            continue;
        };
        let target = target.trim();
        let Some((host, port)) = target.rsplit_once(':') else {
            into.problems.push(problem("the target has no `:port`"));
            continue;
        };
        let entry = if host == "unix_socket" {
            Entry::UnixSocket(port.to_string())
        } else if host.is_empty() || port.parse::<u16>().is_err() {
            into.problems.push(problem("the target is not host:port"));
            continue;
        } else {
            Entry::Target(target.to_string())
        };
        into.entries.insert(token.to_string(), entry);
    }
}

/// Splits at every colon followed by white space, as `re.split(r':\s', line)` does.
fn split_colon_space(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b':' && (bytes[i + 1] as char).is_whitespace() {
            parts.push(&line[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    parts.push(&line[start..]);
    parts
}

/// The files a source names: the file itself, or every regular file in the directory
/// (sorted, so later files win consistently when a token repeats).
fn files(source: &Path) -> std::io::Result<Vec<PathBuf>> {
    if source.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(source)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![source.to_path_buf()])
    }
}

/// Reads every file of a source.
pub fn load(source: &Path) -> std::io::Result<Tokens> {
    let mut tokens = Tokens::default();
    for file in files(source)? {
        let text = std::fs::read_to_string(&file)?;
        parse(&text, &file.display().to_string(), &mut tokens);
    }
    Ok(tokens)
}

/// What identifies a source's current contents: each file's name, size and mtime.
type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn stamp(source: &Path) -> Stamp {
    files(source)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (f, len, modified)
        })
        .collect()
}

fn answer(tokens: &Tokens, token: &str) -> Outcome {
    match tokens.entries.get(token) {
        Some(Entry::Target(t)) => Outcome::Target(t.clone()),
        Some(Entry::UnixSocket(p)) => Outcome::UnixSocket(p.clone()),
        None => Outcome::Refuse {
            status: 404,
            reason: "unknown token".to_string(),
        },
    }
}

fn no_token() -> Outcome {
    Outcome::Refuse {
        status: 404,
        reason: "no token given".to_string(),
    }
}

/// `ReadOnlyTokenFile`: the source is read once, at start.
#[derive(Debug)]
pub struct ReadOnlyTokenFile {
    tokens: Tokens,
}

impl Plugin for ReadOnlyTokenFile {
    const NAME: &'static str = "ReadOnlyTokenFile";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        if config.is_empty() {
            return Err("needs --token-source FILE|DIR".to_string());
        }
        let tokens = load(Path::new(config)).map_err(|e| format!("cannot read {config}: {e}"))?;
        Ok(ReadOnlyTokenFile { tokens })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        if request.token.is_empty() {
            return no_token();
        }
        answer(&self.tokens, request.token)
    }
}

/// `TokenFile`: like `ReadOnlyTokenFile`, but re-read whenever a file of the source changes
/// (websockify re-reads on every lookup; a stat per lookup gives the same freshness).
#[derive(Debug)]
pub struct TokenFile {
    source: PathBuf,
    /// The stamp of the files the tokens were read from, and the tokens.
    state: Mutex<(Stamp, Tokens)>,
}

impl Plugin for TokenFile {
    const NAME: &'static str = "TokenFile";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        if config.is_empty() {
            return Err("needs --token-source FILE|DIR".to_string());
        }
        let source = PathBuf::from(config);
        let tokens = load(&source).map_err(|e| format!("cannot read {config}: {e}"))?;
        Ok(TokenFile {
            state: Mutex::new((stamp(&source), tokens)),
            source,
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        if request.token.is_empty() {
            return no_token();
        }
        let now = stamp(&self.source);
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A file caught mid-write or removed keeps the last good read; the stamp is not
        // updated, so the next lookup tries again.
        if state.0 != now
            && let Ok(tokens) = load(&self.source)
        {
            *state = (now, tokens);
        }
        answer(&state.1, request.token)
    }
}

/// A token used as a file name: one plain path component, never `.`, `..` or a separator, so
/// that it cannot reach outside the source directory.
fn file_name_of(token: &str) -> Option<&str> {
    let ok =
        !token.is_empty() && token != "." && token != ".." && !token.contains(['/', '\\', '\0']);
    ok.then_some(token)
}

fn unknown() -> Outcome {
    Outcome::Refuse {
        status: 404,
        reason: "unknown token".to_string(),
    }
}

/// The path a token names in `dir`, or the answer when it names nothing usable.
fn entry_in(dir: &Path, token: &str) -> Result<PathBuf, Outcome> {
    if token.is_empty() {
        return Err(no_token());
    }
    file_name_of(token)
        .map(|name| dir.join(name))
        .ok_or_else(unknown)
}

fn existing_dir(config: &str) -> Result<PathBuf, String> {
    if config.is_empty() {
        return Err("needs --token-source DIR".to_string());
    }
    let dir = std::fs::canonicalize(config).map_err(|e| format!("cannot open {config}: {e}"))?;
    if !dir.is_dir() {
        return Err(format!("{config} is not a directory"));
    }
    Ok(dir)
}

/// `TokenFileName`: the source is a directory; the file named by the token holds `host:port`.
#[derive(Debug)]
pub struct TokenFileName {
    dir: PathBuf,
}

impl Plugin for TokenFileName {
    const NAME: &'static str = "TokenFileName";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        Ok(TokenFileName {
            dir: existing_dir(config)?,
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        let path = match entry_in(&self.dir, request.token) {
            Ok(path) => path,
            Err(answer) => return answer,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let target = text.trim();
                match target.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                        Outcome::Target(target.to_string())
                    }
                    _ => Outcome::Error(
                        "the file for this token does not hold host:port".to_string(),
                    ),
                }
            }
            Err(_) => unknown(),
        }
    }
}

/// `UnixDomainSocketDirectory`: the source is a directory; the token names a unix socket in it.
#[derive(Debug)]
pub struct UnixDomainSocketDirectory {
    dir: PathBuf,
}

impl Plugin for UnixDomainSocketDirectory {
    const NAME: &'static str = "UnixDomainSocketDirectory";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        Ok(UnixDomainSocketDirectory {
            dir: existing_dir(config)?,
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        use std::os::unix::fs::FileTypeExt;
        let path = match entry_in(&self.dir, request.token) {
            Ok(path) => path,
            Err(answer) => return answer,
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                Outcome::UnixSocket(path.to_string_lossy().into_owned())
            }
            _ => unknown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websockify_format() {
        let mut t = Tokens::default();
        parse(
            "# comment\n\nvnc1: 10.0.0.1:5900\n  vnc2:\tvnc.example:5901  \nv6: [fe80::1]:5902\n\
             sock: unix_socket:/run/vnc.sock\nbad line\nnoport: host\ntwo: a:1: b:2\n",
            "tokens",
            &mut t,
        );
        assert_eq!(t.entries["vnc1"], Entry::Target("10.0.0.1:5900".into()));
        assert_eq!(t.entries["vnc2"], Entry::Target("vnc.example:5901".into()));
        assert_eq!(t.entries["v6"], Entry::Target("[fe80::1]:5902".into()));
        assert_eq!(t.entries["sock"], Entry::UnixSocket("/run/vnc.sock".into()));
        assert_eq!(t.entries.len(), 4);
        assert_eq!(t.problems.len(), 3, "{:?}", t.problems);
        assert!(t.problems[0].starts_with("tokens:7:"), "{:?}", t.problems);
    }

    #[test]
    fn token_file_rereads_on_change_and_read_only_does_not() {
        let dir = std::env::temp_dir().join(format!("websockify-tokenfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens.cfg");
        std::fs::write(&file, "a: h:1\n").unwrap();
        let source = file.to_str().unwrap();
        let live = TokenFile::create(source).unwrap();
        let fixed = ReadOnlyTokenFile::create(source).unwrap();
        let ask = |p: &dyn Fn(&Request<'_>) -> Outcome, token| {
            p(&Request {
                token,
                ..Request::default()
            })
        };
        assert_eq!(ask(&|r| live.call(r), "a"), Outcome::Target("h:1".into()));
        std::fs::write(&file, "a: h:1\nb: other.host:22\n").unwrap();
        assert_eq!(
            ask(&|r| live.call(r), "b"),
            Outcome::Target("other.host:22".into())
        );
        assert!(matches!(
            ask(&|r| fixed.call(r), "b"),
            Outcome::Refuse { status: 404, .. }
        ));
        assert!(matches!(
            ask(&|r| live.call(r), ""),
            Outcome::Refuse { status: 404, .. }
        ));
        assert!(TokenFile::create("/nonexistent/tokens").is_err());
        assert!(TokenFile::create("").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[cfg(test)]
mod directory_tests {
    use super::*;

    #[test]
    fn token_file_name_and_socket_directory() {
        let dir = std::env::temp_dir().join(format!("websockify-tfn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vm1"), "10.0.0.1:5900\n").unwrap();
        std::fs::write(dir.join("broken"), "nonsense").unwrap();
        std::fs::write(dir.parent().unwrap().join("outside"), "evil:1").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.join("vm2.sock")).unwrap();
        let ask = |token| Request {
            token,
            ..Request::default()
        };
        let by_name = TokenFileName::create(dir.to_str().unwrap()).unwrap();
        assert_eq!(
            by_name.call(&ask("vm1")),
            Outcome::Target("10.0.0.1:5900".into())
        );
        assert!(matches!(by_name.call(&ask("broken")), Outcome::Error(_)));
        for escape in ["../outside", "..", ".", "a/b", ""] {
            assert!(
                matches!(
                    by_name.call(&ask(escape)),
                    Outcome::Refuse { status: 404, .. }
                ),
                "{escape}"
            );
        }
        let sockets = UnixDomainSocketDirectory::create(dir.to_str().unwrap()).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap().join("vm2.sock");
        assert_eq!(
            sockets.call(&ask("vm2.sock")),
            Outcome::UnixSocket(real.to_string_lossy().into_owned())
        );
        assert!(
            matches!(
                sockets.call(&ask("vm1")),
                Outcome::Refuse { status: 404, .. }
            ),
            "not a socket"
        );
        assert!(matches!(
            sockets.call(&ask("../outside")),
            Outcome::Refuse { status: 404, .. }
        ));
        assert!(TokenFileName::create("/nonexistent/dir").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.parent().unwrap().join("outside"));
    }
}

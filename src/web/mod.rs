//! `--web DIR`: static files on the proxy port, for GET and HEAD, one request per connection
//! (as websockify's server does).
//!
//! Safe by construction: the request path is decoded once into segments, and any segment that
//! could climb or hide a separator (`.`, `..`, `/`, `\`, NUL) is refused before the file system
//! is touched; the file found is then canonicalised and must lie under the canonical root, so a
//! symlink cannot lead out either. A path starting with `//` is refused with 400 rather than
//! redirected (the open-redirect class of CVE-2021-3654), and the directory redirect is
//! relative, so it can never name another host.
//!
//! hyper-staticfile builds the file responses (`Content-Type`, `Last-Modified`, `ETag`,
//! `If-Modified-Since`, ranges); `If-None-Match` is checked here, since it does not.
//!
//! One path is the server's own rather than the directory's: [`status::PATH`], the live
//! numbers of the landing page, with their last five minutes (kept by
//! [`WebRoot::status_sampler`]).

mod listing;
mod status;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper_staticfile::ResolvedFile;
use hyper_staticfile::util::FileResponseBuilder;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::edge::http::{Refusal, write_head};

/// The web directory, resolved once at start-up.
#[derive(Debug)]
pub struct WebRoot {
    /// Canonical: every served file must be under it after its own canonicalisation.
    root: PathBuf,
    /// `--file-only`: no directory listings.
    file_only: bool,
    /// `/websockify/status.json` is served (not `--no-web-status`).
    status: bool,
    /// When the server started (it makes the root once, as it starts): the status's uptime.
    started: Instant,
    /// The status's last minutes, filled by [`WebRoot::status_sampler`].
    history: Arc<status::History>,
}

/// What a request path resolves to, before any file is opened.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    File(PathBuf),
    /// A directory asked for with its trailing slash.
    Dir(PathBuf),
    /// A directory asked for without it: redirect to `<last segment>/`.
    Redirect {
        location: String,
        dir: PathBuf,
    },
}

impl WebRoot {
    /// Checks the directory; a missing or unreadable one is a start-up error.
    pub fn new(dir: &Path, file_only: bool, status: bool) -> anyhow::Result<WebRoot> {
        let root = std::fs::canonicalize(dir)
            .with_context(|| format!("--web {}: cannot open the directory", dir.display()))?;
        if !root.is_dir() {
            anyhow::bail!("--web {}: not a directory", dir.display());
        }
        Ok(WebRoot {
            root,
            file_only,
            status,
            started: Instant::now(),
            history: Arc::new(status::History::new()),
        })
    }

    /// The task that samples the status's history every 5 s: the server spawns it as it
    /// starts. It ends by itself once this root is dropped. `None` under `--no-web-status`,
    /// where nobody would read it.
    pub fn status_sampler(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.status
            .then(|| status::sampler(Arc::downgrade(&self.history), self.started))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes the whole answer to `req` on `out` and returns its status.
    pub async fn serve<S: AsyncWrite + Unpin>(
        &self,
        req: &Request<()>,
        out: &mut S,
    ) -> io::Result<StatusCode> {
        let response = self.answer(req).await;
        let status = response.status();
        write_response(response, req.method() == Method::HEAD, out).await?;
        Ok(status)
    }

    /// The answer to `req`, for a transport that writes it its own way (HTTP/2). The body
    /// is for a GET: a HEAD request's answer sends the head alone.
    pub async fn answer(&self, req: &Request<()>) -> Response<WebBody> {
        match self.respond(req).await {
            Ok(response) => response,
            Err(refusal) => plain(refusal.status, &refusal.reason),
        }
    }

    async fn respond(&self, req: &Request<()>) -> Result<Response<WebBody>, Refusal> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served",
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return Ok(r);
        }
        let raw_path = req.uri().path();
        if raw_path == status::PATH && self.status {
            return Ok(status::response(self.started, &self.history));
        }
        let place = resolve(&self.root, raw_path).await?;
        match place {
            // With --file-only, a directory that serves no index page is answered as a
            // missing file, so that not even a redirect tells that it exists.
            Place::Redirect { dir, .. } if self.file_only && self.index(&dir).await.is_none() => {
                Err(Refusal::new(StatusCode::NOT_FOUND, "not found"))
            }
            Place::Redirect { location, .. } => {
                let location = match req.uri().query() {
                    Some(q) => format!("{location}?{q}"),
                    None => location,
                };
                let mut r = plain(StatusCode::MOVED_PERMANENTLY, "moved");
                let value = header::HeaderValue::from_str(&location)
                    .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "bad path"))?;
                r.headers_mut().insert(header::LOCATION, value);
                Ok(r)
            }
            Place::File(path) => self.file(req, &path).await,
            Place::Dir(dir) => {
                if let Some(index) = self.index(&dir).await {
                    return self.file(req, &index).await;
                }
                if self.file_only {
                    return Err(Refusal::new(StatusCode::NOT_FOUND, "not found"));
                }
                let html = listing::render(&dir, raw_path, &self.root)
                    .await
                    .map_err(|_| Refusal::new(StatusCode::NOT_FOUND, "not found"))?;
                let mut r = Response::new(WebBody::Bytes(Bytes::from(html)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                Ok(r)
            }
        }
    }

    /// The index page of `dir`, if it has one that can be served.
    async fn index(&self, dir: &Path) -> Option<PathBuf> {
        for index in ["index.html", "index.htm"] {
            if let Ok(path) = self.contained(&dir.join(index)).await
                && path.is_file()
            {
                return Some(path);
            }
        }
        None
    }

    /// The canonical form of `path`, if it exists and lies under the root.
    async fn contained(&self, path: &Path) -> Result<PathBuf, Refusal> {
        let real = tokio::fs::canonicalize(path)
            .await
            .map_err(|_| Refusal::new(StatusCode::NOT_FOUND, "not found"))?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(Refusal::new(StatusCode::NOT_FOUND, "not found"))
        }
    }

    async fn file(&self, req: &Request<()>, path: &Path) -> Result<Response<WebBody>, Refusal> {
        let not_found = || Refusal::new(StatusCode::NOT_FOUND, "not found");
        let real = self.contained(path).await?;
        let handle = tokio::fs::File::open(&real)
            .await
            .map_err(|_| not_found())?;
        let meta = handle.metadata().await.map_err(|_| not_found())?;
        if !meta.is_file() {
            return Err(not_found());
        }
        let modified = meta.modified().ok();
        if let Some(etag) = modified.and_then(|m| etag(meta.len(), m))
            && if_none_match(req.headers(), &etag)
        {
            let mut r = Response::new(WebBody::Empty);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            if let Ok(v) = header::HeaderValue::from_str(&etag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            return Ok(r);
        }
        let content_type = mime_guess::from_path(&real)
            .first()
            .map(|m| match m.type_() {
                mime_guess::mime::TEXT => format!("{m}; charset=utf-8"),
                _ => m.to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".to_string());
        let resolved = ResolvedFile {
            handle,
            path: real,
            size: meta.len(),
            modified,
            content_type: Some(content_type),
            encoding: None,
        };
        let size = resolved.size;
        let mut builder = FileResponseBuilder::new();
        builder.request(req);
        if let Some(range) = req.headers().get(header::RANGE)
            && !ranges_are_reasonable(range, size)
        {
            // The whole file, once, rather than every range asked for.
            builder.range_header(None);
        }
        let response = builder.build(resolved).map_err(|_| {
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot build the response",
            )
        })?;
        Ok(response.map(WebBody::File))
    }
}

/// The most ranges one request may ask for; more are answered with the whole file.
const MAX_RANGES: usize = 16;

/// Whether a `Range` request may be answered range by range: at most [`MAX_RANGES`], none
/// overlapping another (so their total is at most the file). Otherwise the answer is `200`
/// with the whole file, as nginx and Apache do since CVE-2011-3192: a 7.8 KB request of
/// 2,600 ranges `0-` asked for 10 GB of a 4 MiB file. A header that does not parse is left to
/// hyper-staticfile, which ignores it or answers `416`.
fn ranges_are_reasonable(range: &header::HeaderValue, size: u64) -> bool {
    let Ok(mut ranges) = http_range::HttpRange::parse_bytes(range.as_bytes(), size) else {
        return true;
    };
    if ranges.len() > MAX_RANGES {
        return false;
    }
    ranges.sort_by_key(|r| r.start);
    ranges
        .windows(2)
        .all(|w| w[0].start.saturating_add(w[0].length) <= w[1].start)
}

/// hyper-staticfile's ETag for a file of `size` bytes modified at `modified`, so that our
/// `If-None-Match` check agrees with the `ETag` it sends.
fn etag(size: u64, modified: std::time::SystemTime) -> Option<String> {
    let t = modified.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "W/\"{size:x}-{:x}.{:x}\"",
        t.as_secs(),
        t.subsec_nanos()
    ))
}

/// Whether `If-None-Match` lists `etag` (weak comparison) or `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// Maps a request path to a place under `root`, refusing every form of escape.
async fn resolve(root: &Path, raw_path: &str) -> Result<Place, Refusal> {
    let bad = |why| Refusal::new(StatusCode::BAD_REQUEST, why);
    if raw_path.starts_with("//") {
        return Err(bad("a path may not start with //"));
    }
    if !raw_path.starts_with('/') {
        return Err(bad("the path must start with /"));
    }
    let mut path = root.to_path_buf();
    let mut last = None;
    for raw in raw_path.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>();
        let segment = String::from_utf8(decoded).map_err(|_| bad("the path is not UTF-8"))?;
        if segment == "." || segment == ".." {
            return Err(bad("the path may not contain . or .. segments"));
        }
        if segment.contains(['/', '\\', '\0']) {
            return Err(bad("the path may not contain encoded separators or NUL"));
        }
        path.push(&segment);
        last = Some(segment);
    }
    // Whatever the path names, file or directory, it must really be under the root: a
    // symlink inside may point anywhere.
    let not_found = || Refusal::new(StatusCode::NOT_FOUND, "not found");
    let path = tokio::fs::canonicalize(&path)
        .await
        .map_err(|_| not_found())?;
    if !path.starts_with(root) {
        return Err(not_found());
    }
    let meta = tokio::fs::metadata(&path).await.map_err(|_| not_found())?;
    if !meta.is_dir() {
        // `/a.txt/` names a directory that is not there, not the file.
        return match raw_path.ends_with('/') {
            true => Err(not_found()),
            false => Ok(Place::File(path)),
        };
    }
    match (raw_path.ends_with('/'), last) {
        (true, _) | (false, None) => Ok(Place::Dir(path)),
        // Relative, so it stays on this host whatever the path looked like.
        (false, Some(name)) => Ok(Place::Redirect {
            location: format!(
                "{}/",
                percent_encoding::utf8_percent_encode(&name, listing::SEGMENT)
            ),
            dir: path,
        }),
    }
}

/// A response body: a file stream from hyper-staticfile, bytes, or nothing.
pub enum WebBody {
    File(hyper_staticfile::Body),
    Bytes(Bytes),
    Empty,
}

impl WebBody {
    /// Its length, where known before it is read (a file's answer carries its own
    /// `Content-Length`).
    pub fn len(&self) -> Option<u64> {
        match self {
            WebBody::Bytes(b) => Some(b.len() as u64),
            WebBody::Empty => Some(0),
            WebBody::File(_) => None,
        }
    }

    /// The next piece of it; `None` at its end.
    pub async fn next(&mut self) -> Option<io::Result<Bytes>> {
        match self {
            WebBody::Bytes(b) if !b.is_empty() => Some(Ok(std::mem::take(b))),
            WebBody::Bytes(_) | WebBody::Empty => None,
            WebBody::File(file) => loop {
                match file.frame().await? {
                    Err(e) => return Some(Err(e)),
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            return Some(Ok(data));
                        }
                    }
                }
            },
        }
    }
}

fn plain(status: StatusCode, reason: &str) -> Response<WebBody> {
    let mut r = Response::new(WebBody::Bytes(Bytes::from(format!("{reason}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Writes status line, headers (with `Content-Length` where known and `Connection: close`)
/// and, unless `head_only`, the body.
async fn write_response<S: AsyncWrite + Unpin>(
    response: Response<WebBody>,
    head_only: bool,
    out: &mut S,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let content_length = match &body {
        _ if parts.headers.contains_key(header::CONTENT_LENGTH) => None,
        body => body.len(),
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| **name != header::CONNECTION)
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    let mut head = Vec::with_capacity(512);
    write_head(&mut head, parts.status, headers, content_length);
    out.write_all(&head).await?;
    if !head_only && parts.status != StatusCode::NOT_MODIFIED {
        let mut body = body;
        while let Some(data) = body.next().await {
            out.write_all(&data?).await?;
        }
    }
    out.flush().await
}

#[cfg(test)]
mod tests;

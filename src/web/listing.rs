//! The directory listing served when a directory has no index page (unless `--file-only`):
//! names sorted, directories with a trailing slash, every name percent-encoded in its link and
//! HTML-escaped in its text, so no file name can inject markup or a link elsewhere.

use std::path::Path;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Characters encoded in a path segment of a link: everything that is not plainly safe.
pub const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'\'')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'&')
    .add(b'+')
    .add(b';')
    .add(b'=')
    .add(b'@');

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML page listing `dir`, titled with the request path. Only what a request could be
/// served is listed: files and directories that really lie under `root` (a symlink that
/// leads out, a socket, a device are left out, as following them is `404`).
pub async fn render(dir: &Path, request_path: &str, root: &Path) -> std::io::Result<String> {
    let mut entries = Vec::new();
    let mut read = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = read.next_entry().await? {
        let Ok(real) = tokio::fs::canonicalize(entry.path()).await else {
            continue;
        };
        let Ok(meta) = tokio::fs::metadata(&real).await else {
            continue;
        };
        if !real.starts_with(root) || !(meta.is_file() || meta.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push((name, meta.is_dir()));
    }
    entries.sort();
    let title =
        escape_html(&percent_encoding::percent_decode_str(request_path).decode_utf8_lossy());
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Directory listing for {title}</title></head>\n\
         <body>\n<h1>Directory listing for {title}</h1>\n<hr>\n<ul>\n"
    );
    for (name, is_dir) in entries {
        let slash = if is_dir { "/" } else { "" };
        html.push_str(&format!(
            "<li><a href=\"{}{slash}\">{}{slash}</a></li>\n",
            utf8_percent_encode(&name, SEGMENT),
            escape_html(&name)
        ));
    }
    html.push_str("</ul>\n<hr>\n</body>\n</html>\n");
    Ok(html)
}

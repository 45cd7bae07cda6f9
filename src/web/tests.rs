use super::*;

/// A web root with `index` subdirectory, a file, and a secret next to (outside) the root.
fn fixture(name: &str) -> (PathBuf, PathBuf) {
    let base =
        std::env::temp_dir().join(format!("websockify-web-unit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    std::fs::create_dir_all(root.join("sub dir")).unwrap();
    std::fs::write(root.join("a.txt"), "hello").unwrap();
    std::fs::write(base.join("secret.txt"), "SECRET").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link")).unwrap();
    std::os::unix::fs::symlink(&base, root.join("updir")).unwrap();
    (base, root)
}

async fn get(web: &WebRoot, path: &str) -> (StatusCode, String) {
    let req = Request::builder().uri(path).body(()).unwrap();
    let mut out = Vec::new();
    let status = web.serve(&req, &mut out).await.unwrap();
    (status, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn escapes_are_refused() {
    let (base, root) = fixture("escapes");
    let web = WebRoot::new(&root, false, true).unwrap();
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub%20dir/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/a.txt%00.png",
        "/./a.txt",
        "/link",
        "/updir/",
        "/updir/secret.txt",
    ] {
        let (status, body) = get(&web, path).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        assert!(!body.contains("SECRET"), "{path} leaked the secret");
    }
    assert_eq!(
        get(&web, "//evil.example/").await.0,
        StatusCode::BAD_REQUEST
    );
    std::fs::remove_dir_all(base).unwrap();
}

#[tokio::test]
async fn files_dirs_and_redirects() {
    let (base, root) = fixture("files");
    let web = WebRoot::new(&root, false, true).unwrap();
    let (status, text) = get(&web, "/a.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");

    let (status, text) = get(&web, "/sub%20dir?x=1").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert!(text.contains("location: sub%20dir/?x=1\r\n"), "{text}");

    let (status, text) = get(&web, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("<a href=\"a.txt\">a.txt</a>"), "{text}");
    assert!(
        text.contains("<a href=\"sub%20dir/\">sub dir/</a>"),
        "{text}"
    );

    let web = WebRoot::new(&root, true, true).unwrap();
    assert_eq!(get(&web, "/").await.0, StatusCode::NOT_FOUND);
    std::fs::write(root.join("index.htm"), "<p>index</p>").unwrap();
    let (status, text) = get(&web, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.ends_with("<p>index</p>"), "{text}");
    std::fs::remove_dir_all(base).unwrap();
}

#[test]
fn listing_escapes_names() {
    assert_eq!(
        listing::escape_html("<a href='x'>&"),
        "&lt;a href=&#39;x&#39;&gt;&amp;"
    );
    assert_eq!(
        percent_encoding::utf8_percent_encode("a b/<c>?", listing::SEGMENT).to_string(),
        "a%20b%2F%3Cc%3E%3F"
    );
}

#[test]
fn missing_root_is_an_error() {
    let err = WebRoot::new(Path::new("/nonexistent/web"), false, true).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/web"), "{err}");
}

/// The browser pages load ES modules, which Chromium refuses unless they come with a
/// JavaScript type; WebAssembly streams only as `application/wasm`.
#[tokio::test]
async fn types_for_pages_modules_and_wasm() {
    let (base, root) = fixture("types");
    for (file, expected) in [
        ("page.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("script.js", "javascript"),
        ("module.mjs", "javascript"),
        ("code.wasm", "application/wasm"),
        ("data.json", "application/json"),
    ] {
        std::fs::write(root.join(file), "x").unwrap();
        let (status, text) = get(
            &WebRoot::new(&root, false, true).unwrap(),
            &format!("/{file}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{file}");
        let content_type = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(str::to_string)
            })
            .unwrap_or_default();
        assert!(content_type.contains(expected), "{file}: {content_type}");
    }
    std::fs::remove_dir_all(base).unwrap();
}

#[tokio::test]
async fn status_is_aggregate_json_and_never_cached() {
    let (base, root) = fixture("status");
    let web = WebRoot::new(&root, false, true).unwrap();
    let (status, text) = get(&web, status::PATH).await;
    assert_eq!(status, StatusCode::OK);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store\r\n"), "{head}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "bytes_from_client",
            "bytes_to_client",
            "history",
            "sessions_active",
            "sessions_total",
            "uptime_ms",
            "uptime_seconds",
            "version"
        ]
    );
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["bytes_to_client"].is_u64(), "{json}");
    assert!(json["uptime_ms"].is_u64(), "{json}");
    // No sampler runs here: the history is there, and empty.
    assert_eq!(json["history"], serde_json::json!([]));
    // Only the exact path: the directory's own files and listings are untouched around it.
    assert_eq!(get(&web, "/websockify/").await.0, StatusCode::NOT_FOUND);
    let req = Request::builder()
        .method(Method::POST)
        .uri(status::PATH)
        .body(())
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        web.serve(&req, &mut out).await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    // --no-web-status: the path is the directory's like any other.
    let quiet = WebRoot::new(&root, false, false).unwrap();
    assert_eq!(get(&quiet, status::PATH).await.0, StatusCode::NOT_FOUND);
    std::fs::remove_dir_all(base).unwrap();
}

#[test]
fn only_a_few_separate_ranges_are_answered_range_by_range() {
    let ok = |r: &str| ranges_are_reasonable(&header::HeaderValue::from_str(r).unwrap(), 1000);
    assert!(ok("bytes=0-99"));
    assert!(ok("bytes=0-99,200-299,900-"));
    assert!(ok("bytes=-100"));
    // Not a range we parse: left to hyper-staticfile (which ignores it or answers 416).
    assert!(ok("pages=1-2"));
    // Overlapping, however written: the whole file instead.
    assert!(!ok("bytes=0-,0-"));
    assert!(!ok("bytes=0-99,50-149"));
    assert!(!ok("bytes=500-599,0-,"));
    // Too many, even if separate.
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    assert!(!ok(&format!("bytes={}", many.join(","))));
    assert!(ok(&format!("bytes={}", many[..16].join(","))));
}

/// Security review, hygiene: `/a.txt/` served the file; `--file-only` still redirected
/// `/sub` to `/sub/` (telling that the directory exists); listings named symlinks that lead
/// out of the root, which are 404 when followed.
#[tokio::test]
async fn nothing_answers_more_than_what_can_be_served() {
    let (base, root) = fixture("hygiene");
    std::fs::create_dir_all(root.join("bare")).unwrap();
    let outside = base.join("secret.txt");
    std::fs::write(&outside, "s").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("leak.txt")).unwrap();
    let web = WebRoot::new(&root, false, true).unwrap();
    assert_eq!(get(&web, "/a.txt/").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&web, "/a.txt").await.0, StatusCode::OK);
    let (status, listing) = get(&web, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listing.contains("a.txt") && !listing.contains("leak.txt"),
        "{listing}"
    );
    assert_eq!(get(&web, "/leak.txt").await.0, StatusCode::NOT_FOUND);
    // --file-only: a directory without an index is a missing file, with or without its
    // slash; one with an index is still reached through its redirect.
    let web = WebRoot::new(&root, true, true).unwrap();
    assert_eq!(get(&web, "/bare").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&web, "/bare/").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&web, "/bare").await,
        get(&web, "/missing").await,
        "exactly as a missing file"
    );
    std::fs::write(root.join("bare/index.html"), "<p>i</p>").unwrap();
    assert_eq!(get(&web, "/bare").await.0, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(get(&web, "/bare/").await.0, StatusCode::OK);
    std::fs::remove_dir_all(base).unwrap();
}

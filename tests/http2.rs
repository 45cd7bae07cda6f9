//! WebSocket over HTTP/2 (RFC 8441) and HTTP/2 on the one port, through the real binary with
//! the `h2` crate as the client: extended CONNECT as a browser sends it, over h2c (prior
//! knowledge) and over TLS (ALPN `h2`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::pki::Ca;
use common::*;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(30);

/// An HTTP/2 client connection over any byte stream; its connection is driven by a task.
async fn h2_client<T>(io: T) -> SendRequest<Bytes>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // The server's SETTINGS must say it takes extended CONNECT before one is sent.
    let mut client = client.ready().await.unwrap();
    let end = tokio::time::Instant::now() + PATIENCE;
    while !client.is_extended_connect_protocol_enabled() {
        assert!(
            tokio::time::Instant::now() < end,
            "no ENABLE_CONNECT_PROTOCOL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        client = client.ready().await.unwrap();
    }
    client
}

async fn h2c(port: u16) -> SendRequest<Bytes> {
    h2_client(TcpStream::connect(("127.0.0.1", port)).await.unwrap()).await
}

/// A WebSocket on a stream: what it sends and receives, as RFC 6455 frames.
struct Ws {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buf: Vec<u8>,
}

/// The extended CONNECT of a WebSocket for `path`, offering `protocols`.
fn connect_request(port: u16, path: &str, protocols: Option<&str>) -> Request<()> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("sec-websocket-version", "13")
        .extension(h2::ext::Protocol::from_static("websocket"));
    if let Some(p) = protocols {
        req = req.header("sec-websocket-protocol", p);
    }
    req.body(()).unwrap()
}

/// Opens a WebSocket; the response's status and, on 200, the stream.
async fn open(
    client: &mut SendRequest<Bytes>,
    req: Request<()>,
) -> (http::response::Parts, Option<Ws>, Vec<u8>) {
    let mut client = client.clone().ready().await.unwrap();
    let (response, send) = client.send_request(req, false).unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("no response")
        .unwrap();
    let (parts, mut recv) = response.into_parts();
    if parts.status != StatusCode::OK {
        let mut body = Vec::new();
        while let Some(data) = recv.data().await {
            let data = data.unwrap();
            let _ = recv.flow_control().release_capacity(data.len());
            body.extend_from_slice(&data);
        }
        return (parts, None, body);
    }
    let ws = Ws {
        send,
        recv,
        buf: Vec::new(),
    };
    (parts, Some(ws), Vec::new())
}

impl Ws {
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        send_frame(&mut self.send, opcode, payload).await;
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        read_frame(&mut self.recv, &mut self.buf).await
    }

    /// Sends `payload` as one message while the echo comes back, as a browser reads while
    /// it writes (the windows would otherwise fill both ways).
    async fn echo(&mut self, payload: &[u8]) {
        let (_, back) = tokio::join!(
            send_frame(&mut self.send, 2, payload),
            read_data(&mut self.recv, &mut self.buf, payload.len(), false)
        );
        assert!(back == payload);
    }
}

/// `n` WebSockets opened at once on `client`'s connection, each (once its `200` came) given
/// to `work` with its number; the streams as `work` leaves them.
async fn on_streams<F, Fut>(client: &SendRequest<Bytes>, port: u16, n: usize, work: F) -> Vec<Ws>
where
    F: Fn(usize, Ws) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Ws> + Send + 'static,
{
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut client = client.clone();
        let work = work.clone();
        all.spawn(async move {
            let (parts, ws, _) = open(&mut client, connect_request(port, "/", None)).await;
            assert_eq!(parts.status, StatusCode::OK, "stream {i}");
            work(i, ws.unwrap()).await
        });
    }
    let mut streams = Vec::new();
    while let Some(ws) = all.join_next().await {
        streams.push(ws.unwrap());
    }
    streams
}

async fn send_frame(send: &mut h2::SendStream<Bytes>, opcode: u8, payload: &[u8]) {
    let mut frame = Bytes::from(encode_frame(true, opcode, payload, Some(rand_mask())));
    while !frame.is_empty() {
        send.reserve_capacity(frame.len());
        let room = std::future::poll_fn(|cx| send.poll_capacity(cx))
            .await
            .expect("stream closed")
            .unwrap();
        let chunk = frame.split_to(room.min(frame.len()));
        send.send_data(chunk, false).unwrap();
    }
}

async fn read_frame(recv: &mut h2::RecvStream, buf: &mut Vec<u8>) -> Option<Frame> {
    loop {
        if let Some((frame, used)) = decode_frame(buf) {
            buf.drain(..used);
            return Some(frame);
        }
        let data = tokio::time::timeout(PATIENCE, recv.data())
            .await
            .expect("nothing came")?
            .ok()?;
        let _ = recv.flow_control().release_capacity(data.len());
        buf.extend_from_slice(&data);
    }
}

/// What the echo sends back for `len` bytes, whatever the messages' sizes.
async fn read_data(
    recv: &mut h2::RecvStream,
    buf: &mut Vec<u8>,
    len: usize,
    text: bool,
) -> Vec<u8> {
    use base64::Engine;
    let mut out = Vec::new();
    while out.len() < len {
        let frame = read_frame(recv, buf).await.expect("stream ended");
        match (frame.opcode, text) {
            (2, false) => out.extend_from_slice(&frame.payload),
            (1, true) => out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(&frame.payload)
                    .unwrap(),
            ),
            (9 | 10, _) => {}
            other => panic!("unexpected frame {other:?} {:?}", frame.close()),
        }
    }
    out
}

fn rand_mask() -> [u8; 4] {
    let b = random_bytes(4);
    [b[0], b[1], b[2], b[3]]
}

/// Echo through a TCP target over h2c: binary and base64 from one byte to 16 MiB, every
/// byte as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_websocket_echo_is_byte_exact_in_binary_and_base64() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    let mut client = h2c(proxy.port).await;
    let (parts, ws, _) = open(
        &mut client,
        connect_request(proxy.port, "/websockify", Some("binary")),
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["sec-websocket-protocol"], "binary");
    let mut ws = ws.unwrap();
    for len in [1, 125, 126, 65_535, 65_536, 1 << 20, 16 << 20] {
        ws.echo(&random_bytes(len)).await;
    }
    // base64 on its own stream of the same connection.
    let (parts, ws64, _) = open(
        &mut client,
        connect_request(proxy.port, "/websockify", Some("base64")),
    )
    .await;
    assert_eq!(parts.headers["sec-websocket-protocol"], "base64");
    let mut ws64 = ws64.unwrap();
    use base64::Engine;
    for len in [1, 3000, 1 << 20] {
        let data = random_bytes(len);
        let text = base64::engine::general_purpose::STANDARD.encode(&data);
        let Ws { send, recv, buf } = &mut ws64;
        let (_, back) = tokio::join!(
            send_frame(send, 1, text.as_bytes()),
            read_data(recv, buf, len, true)
        );
        assert!(back == data);
    }
    // A close is answered on the stream, and the session's line says HTTP/2.
    ws.send_frame(8, &1000u16.to_be_bytes()).await;
    let frame = ws.read_frame().await.unwrap();
    assert_eq!(frame.close().0, 1000);
    let log = proxy.wait_log(r#"transport="h2""#, PATIENCE);
    assert!(log.contains(r#"protocol="hybi-13/binary""#), "{log}");
}

/// permessage-deflate on a stream (RFC 8441 carries the same extension header): answered in
/// the 200, a compressible echo comes back compressed (RSV1) and inflates to what was sent,
/// and a compressed message from the client reaches the target inflated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_negotiated_on_a_stream() {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    let echo = echo_target().await;
    let proxy = Proxy::start(&["--compression", "127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    let mut client = h2c(proxy.port).await;
    let mut req = connect_request(proxy.port, "/websockify", None);
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let (parts, ws, _) = open(&mut client, req).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        parts.headers["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    let mut ws = ws.unwrap();
    let text: Vec<u8> = b"a terminal line over HTTP/2\n".repeat(4000);
    // The client's message compressed, as a browser sends it.
    let mut c = Compress::new(Compression::default(), false);
    let mut deflated = Vec::with_capacity(text.len());
    c.compress_vec(&text, &mut deflated, FlushCompress::Sync)
        .unwrap();
    assert!(deflated.ends_with(&[0, 0, 0xff, 0xff]));
    deflated.truncate(deflated.len() - 4);
    let mut frame = encode_frame(true, 2, &deflated, Some(rand_mask()));
    frame[0] |= 0x40;
    ws.send.send_data(Bytes::from(frame), false).unwrap();
    let mut back = Vec::new();
    let mut wire = 0;
    while back.len() < text.len() {
        let frame = ws.read_frame().await.expect("the echo");
        assert_eq!(frame.opcode, 2);
        wire += frame.payload.len();
        if frame.rsv1 {
            let mut d = Decompress::new(false);
            let mut input = frame.payload.clone();
            input.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut out = Vec::with_capacity(text.len());
            d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
                .unwrap();
            back.extend(out);
        } else {
            back.extend(frame.payload);
        }
    }
    assert!(back == text);
    assert!(wire * 20 < text.len(), "{wire} bytes on the wire");
    ws.send_frame(8, &1000u16.to_be_bytes()).await;
    let log = proxy.wait_log(r#"transport="h2""#, PATIENCE);
    assert!(log.contains(r#"compression="deflate""#), "{log}");
}

/// 200 WebSockets on one connection, each its own session to the target, all byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_on_one_connection_are_two_hundred_sessions() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let echo = echo_target().await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    let client = h2c(proxy.port).await;
    let open_streams = on_streams(&client, proxy.port, 200, |i, mut ws| async move {
        for round in 0..3 {
            let data = random_bytes(1000 + i * 37 + round);
            ws.echo(&data).await;
        }
        ws
    })
    .await;
    assert_eq!(open_streams.len(), 200);
    let (_, page) = {
        let port = proxy.port;
        tokio::task::spawn_blocking(move || http_get(port, "/"))
            .await
            .unwrap()
    };
    drop(page);
}

/// `--busy-poll`: a connection's streams run on the thread its connection was handed to,
/// each byte-exact, one at a time and all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_relay_exactly_with_busy_poll() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&[
        "--busy-poll",
        "100",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let client = h2c(proxy.port).await;
    let streams = on_streams(&client, proxy.port, 20, |i, mut ws| async move {
        for round in 0..100 {
            ws.echo(&[i as u8, round]).await;
        }
        ws.echo(&random_bytes(200_000 + i)).await;
        ws
    })
    .await;
    assert_eq!(streams.len(), 20);
}

/// A stream refused by the gate gets its answer on its stream, the same status and reason
/// as over HTTP/1.1, and the connection's other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_gets_the_http1_answer_and_the_others_go_on() {
    let echo = echo_target().await;
    let d = std::env::temp_dir().join(format!("websockify-h2-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let tokens = d.join("tokens");
    std::fs::write(&tokens, format!("good: 127.0.0.1:{echo}\n")).unwrap();
    let proxy = Proxy::start(&[
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    let mut client = h2c(proxy.port).await;
    let (parts, good, _) = open(
        &mut client,
        connect_request(proxy.port, "/websockify?token=good", None),
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    let mut good = good.unwrap();
    good.echo(b"before").await;
    let (parts, none, body) = open(
        &mut client,
        connect_request(proxy.port, "/websockify?token=bad", None),
    )
    .await;
    assert!(none.is_none());
    // The same request over HTTP/1.1.
    let mut raw = Raw::connect(proxy.port).await;
    let http1 = raw
        .request(&upgrade_request(&[]).replacen(
            "GET /websockify ",
            "GET /websockify?token=bad ",
            1,
        ))
        .await;
    assert_eq!(parts.status.as_u16(), http1.status);
    assert!(parts.status.is_client_error(), "{:?}", parts.status);
    // The same reason as the body, and the same headers that say why.
    let http1_body = String::from_utf8(raw.read_to_end().await).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), http1_body);
    assert!(!http1_body.trim().is_empty());
    assert_eq!(
        parts.headers["content-type"].to_str().unwrap(),
        http1.header("content-type").unwrap()
    );
    // Not a WebSocket request at all: a plain CONNECT tunnel is refused.
    let mut plain = client.clone().ready().await.unwrap();
    let tunnel = Request::builder()
        .method(Method::CONNECT)
        .uri("127.0.0.1:22")
        .body(())
        .unwrap();
    let (response, _send) = plain.send_request(tunnel, false).unwrap();
    assert_eq!(
        response.await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    good.echo(b"after").await;
}

/// The web directory over HTTP/2, and `--http2 off` speaks HTTP/1.1 only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_files_over_h2c_and_http2_off() {
    let echo = echo_target().await;
    let d = std::env::temp_dir().join(format!("websockify-h2-web-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let page = random_bytes(300_000);
    std::fs::write(d.join("big.bin"), &page).unwrap();
    std::fs::write(d.join("page.html"), "<p>over HTTP/1.1</p>").unwrap();
    let proxy = Proxy::start(&[
        "--web",
        d.to_str().unwrap(),
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let client = h2c(proxy.port).await;
    let get = |path: &str| {
        Request::builder()
            .uri(format!("http://127.0.0.1:{}{path}", proxy.port))
            .body(())
            .unwrap()
    };
    let mut c = client.clone().ready().await.unwrap();
    let (response, _) = c.send_request(get("/big.bin"), true).unwrap();
    let (parts, mut body) = response.await.unwrap().into_parts();
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["content-length"], "300000");
    let mut got = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
    assert!(got == page);
    let mut c = client.clone().ready().await.unwrap();
    let (response, _) = c.send_request(get("/missing"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), StatusCode::NOT_FOUND);

    let off = Proxy::start(&[
        "--http2",
        "off",
        "--web",
        d.to_str().unwrap(),
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let tcp = TcpStream::connect(("127.0.0.1", off.port)).await.unwrap();
    let refused = tokio::time::timeout(PATIENCE, h2::client::handshake(tcp)).await;
    match refused {
        Ok(Err(_)) => {}
        Ok(Ok((client, connection))) => {
            // The handshake may look done before the answer to the preface is read: a
            // request on it fails.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let sent = async {
                let mut client = client.ready().await?;
                let (response, _) = client.send_request(get("/big.bin"), true)?;
                response.await
            };
            assert!(
                tokio::time::timeout(PATIENCE, sent).await.unwrap().is_err(),
                "--http2 off answered HTTP/2"
            );
        }
        Err(_) => panic!("no answer to the preface with --http2 off"),
    }
    let answer = {
        let port = off.port;
        tokio::task::spawn_blocking(move || http_get(port, "/page.html"))
            .await
            .unwrap()
    };
    assert_eq!(answer, (200, "<p>over HTTP/1.1</p>".to_string()));
}

/// Over TLS, ALPN picks `h2` and the WebSocket rides on it; a client that offers only
/// HTTP/1.1 still gets HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_h2_carries_websockets() {
    let d = std::env::temp_dir().join(format!("websockify-h2-tls-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let ca = Ca::new("test CA");
    let (cert_pem, key_pem) = ca.leaf("h2");
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let echo = echo_target().await;
    let proxy = Proxy::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let connect = |alpn: Vec<Vec<u8>>| {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn;
        let port = proxy.port;
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap()
        }
    };
    let tls = connect(vec![b"h2".to_vec(), b"http/1.1".to_vec()]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut client = h2_client(tls).await;
    let (parts, ws, _) = open(&mut client, connect_request(proxy.port, "/", None)).await;
    assert_eq!(parts.status, StatusCode::OK);
    ws.unwrap().echo(&random_bytes(200_000)).await;
    let tls = connect(vec![b"http/1.1".to_vec()]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// SIGTERM with a grace: the connection says GOAWAY at once (no new stream), the sessions on
/// it go on for the grace, then each gets 1001 on its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_goaway_then_1001_after_the_grace() {
    let echo = echo_target().await;
    let mut proxy = Proxy::start(&[
        "--shutdown-grace",
        "2",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let mut client = h2c(proxy.port).await;
    let (_, ws, _) = open(&mut client, connect_request(proxy.port, "/", None)).await;
    let mut ws = ws.unwrap();
    ws.echo(b"before").await;
    let signalled = std::time::Instant::now();
    proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No new stream on the connection after its GOAWAY.
    let refused = async {
        let mut c = client.clone().ready().await?;
        let (response, _) = c.send_request(connect_request(proxy.port, "/", None), false)?;
        response.await
    };
    let refused = tokio::time::timeout(PATIENCE, refused).await.unwrap();
    assert!(
        refused.is_err(),
        "a stream opened after GOAWAY: {refused:?}"
    );
    // The session goes on during the grace, then is closed with 1001.
    ws.echo(b"during the grace").await;
    let close = loop {
        let frame = ws.read_frame().await.expect("stream ended without a close");
        if frame.opcode == 8 {
            break frame.close();
        }
    };
    assert_eq!(close.0, 1001, "{close:?}");
    let after = signalled.elapsed();
    assert!(
        after >= Duration::from_millis(1800) && after < Duration::from_secs(10),
        "{after:?}"
    );
    ws.send_frame(8, &1001u16.to_be_bytes()).await;
    proxy.wait_exit(Duration::from_secs(10));
}

/// A client connection with a browser's windows: 64 KiB per stream, a large one for the
/// connection (Chromium's is 15 MiB), so that a stream it does not read cannot hold back
/// the others on its own side.
async fn h2c_browser_windows(port: u16) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(64 << 10)
        .initial_connection_window_size(16 << 20)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    while !client.is_extended_connect_protocol_enabled() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        client = client.ready().await.unwrap();
    }
    client
}

/// How long `ws` takes to echo `bytes` in 64 KiB messages.
async fn time_echo(ws: &mut Ws, bytes: usize) -> Duration {
    let started = std::time::Instant::now();
    let chunk = random_bytes(64 << 10);
    for _ in 0..bytes / chunk.len() {
        ws.echo(&chunk).await;
    }
    started.elapsed()
}

/// One stream whose reader stops (its window full, its target held back) slows no other
/// stream of the connection: their throughput stays within 2x of what it is alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_slow_the_others() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    let mut client = h2c_browser_windows(proxy.port).await;
    let (_, busy, _) = open(&mut client, connect_request(proxy.port, "/", None)).await;
    let mut busy = busy.unwrap();
    time_echo(&mut busy, 1 << 20).await;
    let alone = time_echo(&mut busy, 4 << 20).await;
    // The stalled one: sends megabytes and never reads its echo.
    let (_, stalled, _) = open(&mut client, connect_request(proxy.port, "/", None)).await;
    let Ws { mut send, recv, .. } = stalled.unwrap();
    let flood = tokio::spawn(async move {
        let payload = random_bytes(1 << 20);
        for _ in 0..16 {
            send_frame(&mut send, 2, &payload).await;
        }
        send
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let beside = time_echo(&mut busy, 4 << 20).await;
    assert!(
        beside < alone * 2 + Duration::from_millis(500),
        "alone {alone:?}, beside a stalled stream {beside:?}"
    );
    assert!(!flood.is_finished(), "the stalled stream was not held back");
    drop(recv);
    flood.abort();
}

/// A client's RST_STREAM ends that one session (its target connection closed), and the
/// connection's other streams go on. (Multi-threaded: `wait_log` blocks its thread, and the
/// client's connection task must run meanwhile to send the reset.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_stream_ends_one_session_only() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    let mut client = h2c(proxy.port).await;
    let (_, a, _) = open(&mut client, connect_request(proxy.port, "/a", None)).await;
    let (_, b, _) = open(&mut client, connect_request(proxy.port, "/b", None)).await;
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    a.echo(b"a").await;
    b.echo(b"b").await;
    a.send.send_reset(h2::Reason::CANCEL);
    let log = proxy.wait_log("session ended", PATIENCE);
    assert!(log.contains("stream no longer needed"), "{log}");
    assert!(log.contains("close_code=1006"), "{log}");
    b.echo(&random_bytes(100_000)).await;
    assert_eq!(
        proxy.log().matches("session ended").count(),
        1,
        "{}",
        proxy.log()
    );
}

/// The admin API lists a connection's streams as sessions of their own (transport `h2`), and
/// `DELETE /sessions/{id}` ends one stream's session with 1008 while the other goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_and_ends_sessions_on_streams() {
    const ADMIN: &str = "admin-h2-0123456789abcdef";
    let echo = echo_target().await;
    let proxy = Proxy::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--admin-token",
        ADMIN,
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let ops = metrics_port(&proxy);
    let list = move || {
        let (_, _, body) = ops_request(ops, "GET", "/sessions", Some(ADMIN));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["sessions"].as_array().unwrap().clone()
    };
    let mut client = h2c(proxy.port).await;
    let (_, a, _) = open(&mut client, connect_request(proxy.port, "/a", None)).await;
    let (_, b, _) = open(&mut client, connect_request(proxy.port, "/b", None)).await;
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    a.echo(b"a").await;
    b.echo(b"b").await;
    let sessions = list();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for s in &sessions {
        assert_eq!(s["transport"], "h2", "{s}");
        assert_eq!(s["protocol"], "hybi-13", "{s}");
    }
    // The first opened is the first listed (ids in order).
    let id = sessions[0]["id"].as_u64().unwrap();
    let path = format!("/sessions/{id}");
    let (status, _, body) =
        tokio::task::spawn_blocking(move || ops_request(ops, "DELETE", &path, Some(ADMIN)))
            .await
            .unwrap();
    assert_eq!(status, 202, "{body}");
    let close = a.read_frame().await.expect("a close frame");
    assert_eq!(close.close(), (1008, "Closed by the operator".to_string()));
    b.echo(&random_bytes(100_000)).await;
    let log = proxy.wait_log("ended by an operator", PATIENCE);
    assert!(
        log.contains("transport=\"h2\"") || log.contains("transport=h2"),
        "{log}"
    );
}

/// Rapid reset (CVE-2023-44487): streams opened and reset at once, a thousand of them, cost
/// a bounded amount: the process serves the next client, and its descriptors and memory
/// come back to where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_costs_a_bounded_amount() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    let pid = proxy.child.id();
    let (baseline, rss) = (open_fds(pid).len(), rss_kib(pid));
    let client = h2c(proxy.port).await;
    for _ in 0..1000 {
        let Ok(mut c) = client.clone().ready().await else {
            break;
        };
        let Ok((_, mut send)) = c.send_request(connect_request(proxy.port, "/", None), false)
        else {
            break;
        };
        send.send_reset(h2::Reason::CANCEL);
    }
    drop(client);
    served_and_back(&proxy, baseline, rss).await;
}

/// curl, as a user would check: `--http2` over TLS (ALPN) and `--http2-prior-knowledge` in
/// cleartext fetch web files over HTTP/2, whole and by range, byte for byte.
#[test]
fn curl_fetches_web_files_over_http2() {
    ensure_installed(&["curl"], "curl");
    let d = std::env::temp_dir().join(format!("websockify-h2-curl-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let file = random_bytes(1_000_000);
    std::fs::write(d.join("big.bin"), &file).unwrap();
    let ca = Ca::new("curl CA");
    let (cert_pem, key_pem) = ca.leaf("localhost");
    let (cert, key, ca_file) = (d.join("cert.pem"), d.join("key.pem"), d.join("ca.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let proxy = Proxy::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--web",
        d.to_str().unwrap(),
        "127.0.0.1:0",
        "127.0.0.1:9",
    ]);
    let curl = |args: &[&str], url: &str| {
        let out = d.join("out.bin");
        let _ = std::fs::remove_file(&out);
        let run = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20"])
            .args(["--cacert", ca_file.to_str().unwrap()])
            .args([
                "-o",
                out.to_str().unwrap(),
                "-w",
                "%{http_version} %{http_code}",
            ])
            .args(args)
            .arg(url)
            .output()
            .expect("run curl");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let said = String::from_utf8_lossy(&run.stdout).into_owned();
        (said, std::fs::read(&out).unwrap_or_default())
    };
    let tls = format!("https://localhost:{}/big.bin", proxy.port);
    let h2c = format!("http://127.0.0.1:{}/big.bin", proxy.port);
    let (said, got) = curl(&["--http2"], &tls);
    assert_eq!(said, "2 200");
    assert!(got == file);
    let (said, got) = curl(&["--http2-prior-knowledge"], &h2c);
    assert_eq!(said, "2 200");
    assert!(got == file);
    let (said, got) = curl(&["--http2", "--range", "1000-1999"], &tls);
    assert_eq!(said, "2 206");
    assert!(got == file[1000..2000]);
    // Without asking for HTTP/2, curl gets HTTP/1.1 as ever.
    let (said, got) = curl(&["--http1.1"], &h2c);
    assert_eq!(said, "1.1 200");
    assert!(got == file);
}

/// A hand-written HTTP/2 client for the abuse tests: the frames a well-behaved client (and the
/// h2 crate) never sends.
mod raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const CONTINUATION: u8 = 9;
    pub const END_HEADERS: u8 = 4;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// An HPACK integer of `prefix` bits after `first`'s high bits (RFC 7541 5.1).
    fn int(out: &mut Vec<u8>, first: u8, prefix: u32, mut value: usize) {
        let max = (1usize << prefix) - 1;
        if value < max {
            out.push(first | u8::try_from(value).unwrap());
            return;
        }
        out.push(first | u8::try_from(max).unwrap());
        value -= max;
        while value >= 128 {
            out.push(u8::try_from(value % 128).unwrap() | 0x80);
            value /= 128;
        }
        out.push(u8::try_from(value).unwrap());
    }

    /// A header block of literal fields, never indexed, without Huffman coding (7541 6.2.3).
    pub fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x10);
            int(&mut out, 0, 7, name.len());
            out.extend_from_slice(name.as_bytes());
            int(&mut out, 0, 7, value.len());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// An extended CONNECT for a WebSocket, as a browser's header block.
    pub fn connect_block() -> Vec<u8> {
        hpack(&[
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "127.0.0.1"),
            ("sec-websocket-version", "13"),
        ])
    }

    /// A connection that has sent the preface and empty SETTINGS.
    pub async fn connect(port: u16) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.write_all(&hello).await.unwrap();
        s
    }

    /// Writes `frames` (one batch) `times` times, or until the proxy has closed the
    /// connection; the batches written.
    pub async fn flood(s: &mut TcpStream, frames: &[u8], times: usize) -> usize {
        for i in 0..times {
            if s.write_all(frames).await.is_err() {
                return i;
            }
        }
        times
    }

    /// Reads the proxy's frames until it closes the connection: the error code of its last
    /// GOAWAY, if it sent one.
    pub async fn goaway(s: &mut TcpStream) -> Option<u32> {
        let mut all = Vec::new();
        let read = tokio::time::timeout(super::PATIENCE, s.read_to_end(&mut all)).await;
        assert!(read.is_ok(), "the proxy never closed the connection");
        let mut code = None;
        let mut at = 0;
        while all.len() >= at + 9 {
            let len = usize::from(all[at]) << 16
                | usize::from(all[at + 1]) << 8
                | usize::from(all[at + 2]);
            let body = &all[(at + 9).min(all.len())..(at + 9 + len).min(all.len())];
            if all[at + 3] == GOAWAY && body.len() >= 8 {
                code = Some(u32::from_be_bytes(body[4..8].try_into().unwrap()));
            }
            at += 9 + len;
        }
        code
    }

    pub const WINDOW_UPDATE: u8 = 8;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;

    /// The next frame the proxy sends: its type, stream and payload.
    pub async fn read_frame(s: &mut TcpStream) -> (u8, u32, Vec<u8>) {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.unwrap();
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        s.read_exact(&mut payload).await.unwrap();
        (head[3], stream, payload)
    }

    /// The settings in a SETTINGS frame's payload, as (identifier, value).
    pub fn settings(payload: &[u8]) -> Vec<(u16, u32)> {
        payload
            .chunks_exact(6)
            .map(|s| {
                let id = u16::from_be_bytes([s[0], s[1]]);
                (id, u32::from_be_bytes(s[2..6].try_into().unwrap()))
            })
            .collect()
    }
}

/// A counter of the proxy's metrics port: the sum of its series whose labels contain `with`.
fn counted(metrics: u16, name: &str, with: &str) -> f64 {
    let (_, text) = http_get(metrics, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A proxy to an echo target with a metrics port, and `extra` settings.
async fn abuse_proxy(extra: &[&str]) -> (Proxy, u16) {
    let echo = echo_target().await;
    let target = format!("127.0.0.1:{echo}");
    let mut args = vec!["--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["127.0.0.1:0", &target]);
    let proxy = Proxy::start(&args);
    let metrics = metrics_port(&proxy);
    (proxy, metrics)
}

/// After an abuse: the next client is served, and the descriptors come back to `baseline`
/// and the resident memory to within 16 MiB of `rss` (the allocator keeps some).
async fn served_and_back(proxy: &Proxy, baseline: usize, rss: u64) {
    let mut fresh = h2c(proxy.port).await;
    let (parts, ws, _) = open(&mut fresh, connect_request(proxy.port, "/", None)).await;
    assert_eq!(parts.status, StatusCode::OK);
    ws.unwrap().echo(b"still here").await;
    drop(fresh);
    let pid = proxy.child.id();
    let end = std::time::Instant::now() + PATIENCE;
    loop {
        let now = open_fds(pid).len();
        if now <= baseline + 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "{now} descriptors, {baseline} before"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = rss_kib(pid);
    assert!(
        after <= rss + 16 * 1024,
        "{after} KiB resident, {rss} KiB before"
    );
}

/// CONTINUATION flood (CVE-2024-27316): twenty clients each send a header block without end,
/// 20 MB of CONTINUATION frames each. Each connection ends with GOAWAY
/// ENHANCE_YOUR_CALM after a few frames, counted; nothing of them is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_ends_the_connection() {
    let (proxy, metrics) = abuse_proxy(&[]).await;
    let pid = proxy.child.id();
    let (baseline, rss) = (open_fds(pid).len(), rss_kib(pid));
    let before = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    let mut floods = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let port = proxy.port;
        floods.spawn(async move {
            let mut s = raw::connect(port).await;
            let open = raw::frame(raw::HEADERS, 0, 1, &raw::connect_block());
            s.write_all(&open).await.unwrap();
            let more = raw::hpack(&[("x-flood", &"a".repeat(1000))]);
            let more = raw::frame(raw::CONTINUATION, 0, 1, &more);
            // 20 MB: more than the kernel's buffers on both sides take unread.
            let written = raw::flood(&mut s, &more, 20_000).await;
            (written, raw::goaway(&mut s).await)
        });
    }
    while let Some(done) = floods.join_next().await {
        let (written, code) = done.unwrap();
        assert!(
            written < 20_000,
            "the proxy read 20 MB of CONTINUATION frames"
        );
        assert_eq!(code, Some(raw::ENHANCE_YOUR_CALM));
    }
    let after = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    assert_eq!(after - before, 20.0);
    served_and_back(&proxy, baseline, rss).await;
}

/// A header list over the 16 KiB an HTTP/1.1 head may have gets 431 on its stream, as over
/// HTTP/1.1, and the connection's other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_list_over_16_kib_gets_431_and_the_connection_goes_on() {
    let (proxy, _metrics) = abuse_proxy(&[]).await;
    let mut client = h2c(proxy.port).await;
    let mut big = connect_request(proxy.port, "/", None);
    big.headers_mut()
        .insert("x-big", "a".repeat(20 * 1024).parse().unwrap());
    let (parts, ws, _) = open(&mut client, big).await;
    assert_eq!(parts.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(ws.is_none());
    let (parts, ws, _) = open(&mut client, connect_request(proxy.port, "/", None)).await;
    assert_eq!(parts.status, StatusCode::OK);
    ws.unwrap().echo(b"the same connection").await;
}

/// PING and SETTINGS floods from a client that reads none of the answers: h2 keeps one answer
/// waiting and stops reading, and the client, which takes no byte, is dropped after
/// `--send-timeout`, counted. Meanwhile another client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_cost_one_answer_and_the_client_is_dropped() {
    let (proxy, metrics) = abuse_proxy(&["--send-timeout", "2"]).await;
    let pid = proxy.child.id();
    let (baseline, rss) = (open_fds(pid).len(), rss_kib(pid));
    let before = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    let mut batch = Vec::new();
    for _ in 0..1000 {
        batch.extend(raw::frame(raw::PING, 0, 0, &[7; 8]));
        batch.extend(raw::frame(raw::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
    }
    let mut floods = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (port, batch) = (proxy.port, batch.clone());
        floods.spawn(async move {
            let mut s = raw::connect(port).await;
            // 330 MB if the proxy read it all: it must stop reading long before.
            raw::flood(&mut s, &batch, 10_000).await
        });
    }
    // Served meanwhile.
    let mut other = h2c(proxy.port).await;
    let (parts, ws, _) = open(&mut other, connect_request(proxy.port, "/", None)).await;
    assert_eq!(parts.status, StatusCode::OK);
    ws.unwrap().echo(b"meanwhile").await;
    let peak = rss_kib(pid);
    assert!(
        peak <= rss + 16 * 1024,
        "{peak} KiB resident, {rss} KiB before"
    );
    let floods = tokio::time::timeout(PATIENCE, floods.join_all())
        .await
        .expect("a flooding client was never dropped");
    assert!(floods.iter().all(|&batches| batches < 10_000), "{floods:?}");
    let after = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    assert_eq!(after - before, 4.0);
    drop(other);
    served_and_back(&proxy, baseline, rss).await;
}

/// A flood of empty DATA frames on a WebSocket's stream (CVE-2019-9518) ends the connection
/// with GOAWAY ENHANCE_YOUR_CALM, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_frames_flood_ends_the_connection() {
    let (proxy, metrics) = abuse_proxy(&[]).await;
    let pid = proxy.child.id();
    let (baseline, rss) = (open_fds(pid).len(), rss_kib(pid));
    let before = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    let mut s = raw::connect(proxy.port).await;
    let open = raw::frame(raw::HEADERS, raw::END_HEADERS, 1, &raw::connect_block());
    s.write_all(&open).await.unwrap();
    let empty: Vec<u8> = (0..1000)
        .flat_map(|_| raw::frame(raw::DATA, 0, 1, &[]))
        .collect();
    // 45 MB: more than the kernel's buffers on both sides take unread.
    let written = raw::flood(&mut s, &empty, 5000).await;
    assert!(written < 5000, "the proxy read five million empty frames");
    assert_eq!(raw::goaway(&mut s).await, Some(raw::ENHANCE_YOUR_CALM));
    let after = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    assert_eq!(after - before, 1.0);
    served_and_back(&proxy, baseline, rss).await;
}

/// Rapid reset with the streams' tasks at their bound: each stream reset just after h2 took
/// it (so h2's own count of streams reset before they were accepted never moves while its
/// task is started at once) would start a task that outlives the stream; at
/// `--http2-max-streams` tasks no more streams are accepted, and more than 20 reset while
/// they wait end the connection with GOAWAY ENHANCE_YOUR_CALM, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_beyond_the_stream_bound_ends_the_connection() {
    // A token API that never answers holds each stream's task (for the plugin timeout).
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source = format!("http://127.0.0.1:{}/%s", api.local_addr().unwrap().port());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = api.accept().await {
            held.push(s);
        }
    });
    let proxy = Proxy::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--http2-max-streams",
        "4",
        "--token-plugin",
        "JSONTokenApi",
        "--token-source",
        &source,
        "127.0.0.1:0",
    ]);
    let metrics = metrics_port(&proxy);
    let before = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    let mut s = raw::connect(proxy.port).await;
    let block = raw::hpack(&[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/?token=hang"),
        (":authority", "127.0.0.1"),
        ("sec-websocket-version", "13"),
    ]);
    let pause = Duration::from_millis(2);
    for n in 0..500u32 {
        let id = 2 * n + 1;
        let open = raw::frame(raw::HEADERS, raw::END_HEADERS, id, &block);
        if s.write_all(&open).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
        let reset = raw::frame(raw::RST_STREAM, 0, id, &8u32.to_be_bytes());
        if s.write_all(&reset).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    assert_eq!(raw::goaway(&mut s).await, Some(raw::ENHANCE_YOUR_CALM));
    let after = counted(metrics, "websockify_handshake_failures_total", "\"http2\"");
    assert_eq!(after - before, 1.0);
}

/// A connection whose first request never completes (a header block without its end, or
/// nothing after SETTINGS) is closed at `--handshake-timeout`, as a request head that never
/// came over HTTP/1.1, and counted so; one that sends the preface and not its SETTINGS
/// likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_completes_is_closed_at_the_handshake_timeout() {
    let (proxy, metrics) = abuse_proxy(&["--handshake-timeout", "2"]).await;
    let failures = |reason: &str| {
        counted(
            metrics,
            "websockify_handshake_failures_total",
            &format!("reason=\"{reason}\""),
        )
    };
    let before = failures("head_timeout");
    let started = std::time::Instant::now();
    let mut partial = raw::connect(proxy.port).await;
    let half = raw::frame(raw::HEADERS, 0, 1, &raw::connect_block());
    partial.write_all(&half).await.unwrap();
    let mut silent = raw::connect(proxy.port).await;
    let mut preface = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        raw::goaway(&mut partial),
        raw::goaway(&mut silent),
        raw::goaway(&mut preface)
    );
    assert_eq!((a, b, c), (Some(0), Some(0), Some(0)), "GOAWAY NO_ERROR");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(failures("head_timeout") - before, 3.0);
}

/// The proxy takes DATA frames up to 64 KiB (its `SETTINGS_MAX_FRAME_SIZE`): a 64 KiB frame
/// carrying one WebSocket message comes back byte-exact, and a frame one byte larger ends the
/// connection with FRAME_SIZE_ERROR before its payload is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_frames_up_to_64_kib_are_taken_and_larger_ones_refused() {
    let (proxy, _metrics) = abuse_proxy(&[]).await;
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    // Our windows: 1 MiB for the stream and the connection, so the echo needs no update.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(raw::frame(raw::SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0]));
    hello.extend(raw::frame(
        raw::WINDOW_UPDATE,
        0,
        0,
        &(1u32 << 20).to_be_bytes(),
    ));
    s.write_all(&hello).await.unwrap();
    // The proxy's SETTINGS and its connection window before anything is sent.
    let (mut max_frame, mut window) = (None, false);
    while max_frame.is_none() || !window {
        match raw::read_frame(&mut s).await {
            (raw::SETTINGS, 0, payload) if !payload.is_empty() => {
                let settings = raw::settings(&payload);
                assert!(
                    settings.contains(&(8, 1)),
                    "ENABLE_CONNECT_PROTOCOL: {settings:?}"
                );
                max_frame = settings.iter().find(|(id, _)| *id == 5).map(|(_, v)| *v);
                assert!(
                    max_frame.is_some(),
                    "no SETTINGS_MAX_FRAME_SIZE: {settings:?}"
                );
                // Acknowledged, so that its windows hold for what we send next.
                let ack = raw::frame(raw::SETTINGS, 1, 0, &[]);
                s.write_all(&ack).await.unwrap();
            }
            (raw::WINDOW_UPDATE, 0, _) => window = true,
            _ => {}
        }
    }
    assert_eq!(max_frame, Some(65536));
    let open = raw::frame(raw::HEADERS, raw::END_HEADERS, 1, &raw::connect_block());
    s.write_all(&open).await.unwrap();
    loop {
        let (kind, stream, _) = raw::read_frame(&mut s).await;
        assert_ne!(
            (kind, stream),
            (raw::RST_STREAM, 1),
            "the stream was refused"
        );
        if (kind, stream) == (raw::HEADERS, 1) {
            break;
        }
    }
    // One DATA frame of exactly 64 KiB: a binary message's 8-byte header and 65,528 bytes.
    let payload: Vec<u8> = (0..65_528u32).map(|i| (i % 251) as u8).collect();
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    let mut message = vec![0x82, 0x80 | 126];
    message.extend_from_slice(&65_528u16.to_be_bytes());
    message.extend_from_slice(&mask);
    message.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    assert_eq!(message.len(), 65_536);
    s.write_all(&raw::frame(raw::DATA, 0, 1, &message))
        .await
        .unwrap();
    // The echo, in DATA frames as large as our SETTINGS allow (HTTP/2's default, 16 KiB),
    // as binary messages of what each read from the target gave.
    let (mut wire, mut echoed) = (Vec::new(), Vec::new());
    while echoed.len() < payload.len() {
        let (kind, stream, data) = raw::read_frame(&mut s).await;
        assert_ne!(
            (kind, stream),
            (raw::RST_STREAM, 1),
            "the stream was reset: {data:?}"
        );
        assert_ne!(kind, raw::GOAWAY, "the connection was ended");
        if (kind, stream) != (raw::DATA, 1) {
            continue;
        }
        assert!(
            data.len() <= 16_384,
            "a {}-byte frame to a client allowing 16 KiB",
            data.len()
        );
        wire.extend_from_slice(&data);
        while let Some((frame, len)) = decode_frame(&wire) {
            assert_eq!(frame.opcode, 2);
            echoed.extend_from_slice(&frame.payload);
            wire.drain(..len);
        }
    }
    assert!(echoed == payload, "the 64 KiB message came back changed");
    // One byte over: the connection ends, whatever the frame's payload.
    let mut over = raw::frame(raw::DATA, 0, 1, &[]);
    over[..3].copy_from_slice(&65_537u32.to_be_bytes()[1..]);
    s.write_all(&over).await.unwrap();
    let _ = s.write_all(&[0; 1024]).await;
    assert_eq!(raw::goaway(&mut s).await, Some(raw::FRAME_SIZE_ERROR));
}

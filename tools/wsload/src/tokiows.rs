//! `wsload relay --ws --tokio`: the WebSocket floor (`wsfloor.rs`) written as a tokio server
//! writes it, to measure what a WebSocket bridge on tokio reaches with nothing else in it.
//!
//! The same work as the epoll WebSocket floor: read the upgrade request, connect the target,
//! answer 101, unmask the client's frames into the target, frame what the target sends (the
//! header written into room left in front of the payload, one `send` per message), answer
//! the client's close with a close and our FIN, read the client until its end. A task per
//! connection on one current-thread runtime (as ours runs pinned to one CPU), its two
//! directions joined in it, `TCP_NODELAY` on both sockets. No pings, no limits, no clocks,
//! no logging. It is not a floor of what a bridge must do (a bridge need not run on tokio):
//! beside `ws-floor` it shows what tokio costs a WebSocket bridge, and beside ours what ours
//! adds on tokio.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::floorframe::{ClientFrames, HEAD_ROOM, Next, frame_header, upgrade_answer};

/// websockify's read size, ours and the other floors'.
const BUF: usize = 64 * 1024;
/// A request head larger than this is not the bench's client.
const MAX_HEAD: usize = 8 * 1024;

pub fn run(port: u16, target: SocketAddr) -> anyhow::Result<()> {
    crate::tokiorelay::serve(port, target, session)
}

async fn session(mut client: TcpStream, target: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(BUF);
    let end = loop {
        match client.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return;
        }
    };
    let head = buf.split_to(end);
    let Some(answer) = upgrade_answer(&head) else {
        return;
    };
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    if client.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut target_rx, mut target_tx) = upstream.into_split();
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    let up = async move {
        let mut frames = ClientFrames::default();
        loop {
            match frames.next(&mut buf) {
                Next::Payload(payload) => {
                    if target_tx.write_all(&payload).await.is_err() {
                        return;
                    }
                    continue;
                }
                Next::Close => break,
                Next::More => {}
            }
            if buf.is_empty() {
                buf.clear();
            }
            buf.reserve(BUF);
            match client_rx.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        // The client's close: `down` answers it; the target gets our FIN with `target_tx`'s
        // drop, and the client is read until its end.
        let _ = closed_tx.send(());
        drop(target_tx);
        let mut sink = [0u8; 512];
        while matches!(client_rx.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let down = async move {
        let mut out = vec![0u8; HEAD_ROOM + BUF];
        loop {
            let n = tokio::select! {
                read = target_rx.read(&mut out[HEAD_ROOM..]) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = &mut closed_rx => break,
            };
            let head = frame_header(&mut out[..HEAD_ROOM], n);
            if client_tx
                .write_all(&out[HEAD_ROOM - head..HEAD_ROOM + n])
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = client_tx.write_all(&[0x88, 0x00]).await;
        let _ = client_tx.shutdown().await;
    };
    tokio::join!(up, down);
}

//! `wsload relay --tokio`: the raw relay floor written as a tokio server writes it, to
//! measure what the runtime costs beside `relay.rs`'s hand-written epoll loop.
//!
//! The same relaying as `relay.rs` and nothing else: a task per connection on one
//! current-thread runtime (as ours runs when pinned to one CPU), a non-blocking connect to the
//! target, `TCP_NODELAY` on both sockets and `tokio::io::copy_bidirectional_with_sizes` with
//! 64 KiB buffers, which is one `recv` and one `send` per message per direction as in the
//! epoll floor (tokio clears a socket's readiness after a short read, so it does not read
//! again to see `EAGAIN`). No WebSocket, no logging, no limits, no clocks. It is not a floor
//! of what a bridge must do: what it adds over `relay.rs` is the task, waker and reactor
//! machinery every tokio proxy pays per message and per connection, so the gap between the
//! two is what the runtime costs, and the gap between it and a proxy is the proxy's own.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// websockify's read size, ours and the epoll floor's.
const BUF: usize = 64 * 1024;

pub fn run(port: u16, target: SocketAddr) -> anyhow::Result<()> {
    serve(port, target, |mut client, target| async move {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let _ =
            tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF).await;
    })
}

/// The tokio floors' server: listens on PORT (0: any) and prints it, and runs `session` for
/// each connection as a task of one current-thread runtime (as ours runs pinned to one CPU).
pub fn serve<F, S>(port: u16, target: SocketAddr, session: F) -> anyhow::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> S,
    S: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("{}", listener.local_addr()?.port());
        loop {
            match listener.accept().await {
                Ok((client, _)) => drop(tokio::spawn(session(client, target))),
                // Out of descriptors: the bench sizes its sessions to the limit, so this only
                // waits for some to close rather than spin on the error.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
}

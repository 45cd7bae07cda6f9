//! `wsload relay`: the floor of what any relay costs on this machine, measured beside the
//! proxies.
//!
//! A raw TCP relay with nothing in it but the relaying: one thread, edge-triggered epoll
//! (mio), one `recv` and one `send` per message per direction (a read that returns less than
//! the buffer drained the socket, so no second read to see EAGAIN), `TCP_NODELAY` on both
//! sockets, no WebSocket, no logging, no limits. Whatever ratio to direct TCP this reaches in
//! a figure bounds what any proxy can reach in it with the same placement of processes, since
//! a WebSocket proxy does all of this and its framing on top.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// websockify's read size, and ours.
const BUF: usize = 64 * 1024;

/// One side of a relayed connection: its socket and what is waiting to be written to it.
struct Side {
    stream: TcpStream,
    /// Bytes read from the other side that this socket did not take yet; while there are any,
    /// the other side is not read (backpressure, as in every proxy).
    pending: Vec<u8>,
    /// The other side sent FIN: shut this one's write half once `pending` is written.
    peer_done: bool,
    /// This socket's write half is shut.
    write_shut: bool,
}

struct Pair {
    sides: [Side; 2],
}

pub fn run(port: u16, target: SocketAddr) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("{}", listener.local_addr()?.port());

    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; BUF];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut pairs, &mut free, target);
                continue;
            }
            let (index, side) = (event.token().0 / 2, event.token().0 % 2);
            let Some(pair) = pairs.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            let alive = (!event.is_writable() || flush(pair, side, &mut buf).is_ok())
                && (!event.is_readable() || pump(pair, side, &mut buf).is_ok());
            let done = pair
                .sides
                .iter()
                .all(|s| s.write_shut && s.pending.is_empty());
            if !alive || done {
                if let Some(mut pair) = pairs[index].take() {
                    for s in &mut pair.sides {
                        let _ = poll.registry().deregister(&mut s.stream);
                    }
                }
                free.push(index);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    pairs: &mut Vec<Option<Pair>>,
    free: &mut Vec<usize>,
    target: SocketAddr,
) {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            // WouldBlock: every pending connection is taken. Anything else (out of
            // descriptors) ends this round too; the bench sizes its sessions to the limit.
            Err(_) => return,
        };
        // On loopback the handshake completes within connect(2), so a blocking connect costs
        // no more than a non-blocking one followed by its wake-up.
        let upstream = match std::net::TcpStream::connect(target) {
            Ok(s) => s,
            Err(_) => continue,
        };
        if upstream.set_nonblocking(true).is_err() {
            continue;
        }
        let upstream = TcpStream::from_std(upstream);
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let index = free.pop().unwrap_or_else(|| {
            pairs.push(None);
            pairs.len() - 1
        });
        let side = |stream| Side {
            stream,
            pending: Vec::new(),
            peer_done: false,
            write_shut: false,
        };
        let mut pair = Pair {
            sides: [side(client), side(upstream)],
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered = poll
            .registry()
            .register(&mut pair.sides[0].stream, Token(index * 2), interest)
            .and_then(|()| {
                poll.registry()
                    .register(&mut pair.sides[1].stream, Token(index * 2 + 1), interest)
            });
        if registered.is_ok() {
            pairs[index] = Some(pair);
        } else {
            free.push(index);
        }
    }
}

/// Reads `from` and writes what it got to the other side, until `from` is drained or the
/// other side stops taking bytes.
fn pump(pair: &mut Pair, from: usize, buf: &mut [u8]) -> io::Result<()> {
    let to = 1 - from;
    while pair.sides[to].pending.is_empty() && !pair.sides[to].peer_done {
        let n = match pair.sides[from].stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            pair.sides[to].peer_done = true;
            return finish(&mut pair.sides[to]);
        }
        let written = write_some(&mut pair.sides[to].stream, &buf[..n])?;
        if written < n {
            pair.sides[to].pending.extend_from_slice(&buf[written..n]);
            return Ok(());
        }
        if n < buf.len() {
            // Drained: the next byte to arrive raises a new edge.
            return Ok(());
        }
    }
    Ok(())
}

/// Writes what waits for `side`; once it is all out, reads the other side again (it was left
/// unread while this side was full, and its edge may have passed meanwhile).
fn flush(pair: &mut Pair, side: usize, buf: &mut [u8]) -> io::Result<()> {
    let s = &mut pair.sides[side];
    if !s.pending.is_empty() {
        let written = write_some(&mut s.stream, &s.pending)?;
        s.pending.drain(..written);
        if !s.pending.is_empty() {
            return Ok(());
        }
        finish(s)?;
        return pump(pair, 1 - side, buf);
    }
    Ok(())
}

/// Shuts the write half once the other side is done and nothing is left to write.
fn finish(side: &mut Side) -> io::Result<()> {
    if side.peer_done && side.pending.is_empty() && !side.write_shut {
        side.write_shut = true;
        side.stream.shutdown(Shutdown::Write)?;
    }
    Ok(())
}

fn write_some(stream: &mut TcpStream, mut data: &[u8]) -> io::Result<usize> {
    let total = data.len();
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total - data.len())
}

//! `wsload relay --ws`: the floor of what a WebSocket bridge costs on this machine, measured
//! beside the proxies as `ws-floor`.
//!
//! The relay floor (`relay.rs`) with the least of RFC 6455 a bridge must do on top of the
//! relaying: read the upgrade request and answer it with 101, unmask the client's frames
//! into the target, frame what the target sends (the header written into the room left in
//! front of the payload, so one `send` per message), answer pings, and the closing
//! handshake (echo the client's close, our FIN, read until the client's end). One thread,
//! edge-triggered epoll, one read per message per direction, no logging, no limits, no
//! checks beyond finding the key: a floor for the bench's own client, not a server.
//!
//! What the raw floor leaves out and every WebSocket bridge must do is here: the handshake's
//! extra round trip, the unmasking, the framing and the closing handshake's extra round trip.
//! So the ratio to direct TCP this reaches in a figure bounds what a WebSocket proxy can
//! reach in it on this machine with the same placement, more tightly than the raw floor
//! does (for connections most of all: a WebSocket connection costs three round trips, a
//! raw one one).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::floorframe::{unmask, upgrade_answer};

const LISTENER: Token = Token(usize::MAX);
/// websockify's read size, and ours.
const BUF: usize = 64 * 1024;
/// Room in front of each target read for the largest header a server's frame has (no mask).
const HEAD_ROOM: usize = 10;
/// A request head larger than this is not the bench's client.
const MAX_HEAD: usize = 8 * 1024;

const CLIENT: usize = 0;
const TARGET: usize = 1;

/// The client's frame being read.
#[derive(Default)]
struct Frame {
    /// Header bytes gathered so far, and how many the header has (0 until the first two
    /// bytes tell).
    header: [u8; 14],
    have: usize,
    len: usize,
    opcode: u8,
    mask: [u8; 4],
    /// Payload bytes read so far, and in all.
    done: u64,
    size: u64,
    /// A control frame's payload, answered once whole.
    control: Vec<u8>,
}

impl Frame {
    fn in_payload(&self) -> bool {
        self.len != 0 && self.have == self.len
    }
}

struct Conn {
    client: TcpStream,
    /// Where the target is (the relay's one target).
    to: SocketAddr,
    target: Option<TcpStream>,
    /// Until the upgrade: the request head so far.
    head: Option<Vec<u8>>,
    frame: Frame,
    /// Bytes the target did not take yet; the client is not read meanwhile.
    to_target: Vec<u8>,
    /// Bytes the client did not take yet; the target is not read meanwhile.
    to_client: Vec<u8>,
    /// Our close is sent or queued: the client's write half is shut once `to_client` is
    /// out, and the client is read (and dropped) until its end.
    closing: bool,
    shut: bool,
}

pub fn run(port: u16, target: SocketAddr) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("{}", listener.local_addr()?.port());

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    // One buffer for every read: a target read lands after the header's room.
    let mut buf = vec![0u8; HEAD_ROOM + BUF];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns, &mut free, target);
                continue;
            }
            let (index, side) = (event.token().0 / 2, event.token().0 % 2);
            let Some(conn) = conns.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            let alive = (!event.is_writable() || conn.flush(side, &poll, index, &mut buf).is_ok())
                && (!event.is_readable() || conn.pump(side, &poll, index, &mut buf).is_ok());
            if !alive {
                // Closing the sockets takes them out of the epoll set: no deregistering.
                conns[index] = None;
                free.push(index);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    to: SocketAddr,
) {
    // WouldBlock: every pending connection is taken; anything else ends this round too.
    while let Ok((mut client, _)) = listener.accept() {
        let _ = client.set_nodelay(true);
        let index = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if poll
            .registry()
            .register(&mut client, Token(index * 2), interest)
            .is_err()
        {
            free.push(index);
            continue;
        }
        conns[index] = Some(Conn {
            client,
            to,
            target: None,
            head: Some(Vec::new()),
            frame: Frame::default(),
            to_target: Vec::new(),
            to_client: Vec::new(),
            closing: false,
            shut: false,
        });
    }
}

/// An error that ends the connection.
fn gone() -> io::Error {
    io::ErrorKind::ConnectionAborted.into()
}

impl Conn {
    /// `side` is readable: read it while the other side takes what it sends.
    fn pump(&mut self, side: usize, poll: &Poll, index: usize, buf: &mut [u8]) -> io::Result<()> {
        if side == TARGET {
            return self.pump_target(buf);
        }
        while self.to_target.is_empty() {
            let n = match self.client.read(&mut buf[..BUF]) {
                Ok(0) => return Err(gone()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if self.closing {
                // Read and dropped until the client's end.
            } else if self.head.is_some() {
                self.handshake(&buf[..n], poll, index)?;
            } else {
                self.client_bytes(&mut buf[..n])?;
            }
            if n < BUF {
                // Drained: the next byte to arrive raises a new edge.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Gathers the request head; once whole, connects the target and answers 101.
    fn handshake(&mut self, data: &[u8], poll: &Poll, index: usize) -> io::Result<()> {
        let Some(head) = self.head.as_mut() else {
            return Ok(());
        };
        head.extend_from_slice(data);
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            return if head.len() > MAX_HEAD {
                Err(gone())
            } else {
                Ok(())
            };
        };
        let mut head = self.head.take().unwrap_or_default();
        let mut rest = head.split_off(end + 4);
        let answer = upgrade_answer(&head).ok_or_else(gone)?;
        // On loopback the handshake completes within connect(2), so a blocking connect costs
        // no more than a non-blocking one followed by its wake-up (as in the raw floor).
        let target = std::net::TcpStream::connect(self.to)?;
        target.set_nonblocking(true)?;
        let mut target = TcpStream::from_std(target);
        let _ = target.set_nodelay(true);
        poll.registry().register(
            &mut target,
            Token(index * 2 + 1),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.target = Some(target);
        self.send_client(answer.as_bytes())?;
        if !rest.is_empty() {
            self.client_bytes(&mut rest)?;
        }
        Ok(())
    }

    /// Unmasks the client's frames in place and sends their payload to the target; answers
    /// pings and the client's close.
    fn client_bytes(&mut self, mut data: &mut [u8]) -> io::Result<()> {
        while !data.is_empty() {
            let f = &mut self.frame;
            if !f.in_payload() {
                // Header bytes: two tell how many there are.
                let want = if f.len == 0 { 2 } else { f.len };
                let take = (want - f.have).min(data.len());
                f.header[f.have..f.have + take].copy_from_slice(&data[..take]);
                f.have += take;
                data = &mut data[take..];
                if f.len == 0 && f.have == 2 {
                    let b1 = f.header[1];
                    f.len =
                        2 + match b1 & 0x7f {
                            126 => 2,
                            127 => 8,
                            _ => 0,
                        } + if b1 & 0x80 != 0 { 4 } else { 0 };
                }
                if f.len != 0 && f.have == f.len {
                    self.start_frame()?;
                }
                continue;
            }
            let left = f.size - f.done;
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
            let (payload, rest) = std::mem::take(&mut data).split_at_mut(take);
            data = rest;
            unmask(payload, f.mask, (f.done % 4) as usize);
            f.done += take as u64;
            let whole = f.done == f.size;
            if f.opcode & 0x8 == 0 {
                self.send_target(payload)?;
            } else {
                f.control.extend_from_slice(payload);
            }
            if whole {
                self.end_frame()?;
            }
        }
        Ok(())
    }

    /// The header is whole: the opcode, mask and payload size.
    fn start_frame(&mut self) -> io::Result<()> {
        let f = &mut self.frame;
        let h = &f.header[..f.len];
        f.opcode = h[0] & 0x0f;
        let (size, mask_at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        f.size = size;
        f.done = 0;
        f.mask = [0; 4];
        if h[1] & 0x80 != 0 {
            f.mask.copy_from_slice(&h[mask_at..mask_at + 4]);
        }
        if size == 0 {
            self.end_frame()?;
        }
        Ok(())
    }

    /// The frame's payload is all read: answer a control frame, then wait for a header.
    fn end_frame(&mut self) -> io::Result<()> {
        let opcode = self.frame.opcode;
        let control = std::mem::take(&mut self.frame.control);
        self.frame = Frame::default();
        match opcode {
            // Close: echo it, drop the target, our FIN once it is out.
            0x8 => {
                let mut close = vec![0x88, control.len() as u8];
                close.extend_from_slice(&control);
                self.send_client(&close)?;
                self.target = None;
                self.to_target.clear();
                self.closing = true;
                self.finish()
            }
            0x9 => {
                let mut pong = vec![0x8a, control.len() as u8];
                pong.extend_from_slice(&control);
                self.send_client(&pong)
            }
            _ => Ok(()),
        }
    }

    /// Reads the target while the client takes what it sends: each read one binary message,
    /// its header written into the room in front of it.
    fn pump_target(&mut self, buf: &mut [u8]) -> io::Result<()> {
        while self.to_client.is_empty() && !self.closing {
            let Some(target) = self.target.as_mut() else {
                return Ok(());
            };
            let n = match target.read(&mut buf[HEAD_ROOM..]) {
                Ok(0) => {
                    // The target hung up: 1000, as websockify closes, and our FIN. What it
                    // did not take goes nowhere (else the client would never be read again).
                    self.target = None;
                    self.to_target.clear();
                    self.send_client(&[0x88, 2, 0x03, 0xe8])?;
                    self.closing = true;
                    return self.finish();
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let start = if n < 126 {
                buf[HEAD_ROOM - 2..HEAD_ROOM].copy_from_slice(&[0x82, n as u8]);
                HEAD_ROOM - 2
            } else if n < 65536 {
                buf[HEAD_ROOM - 4..HEAD_ROOM - 2].copy_from_slice(&[0x82, 126]);
                buf[HEAD_ROOM - 2..HEAD_ROOM].copy_from_slice(&(n as u16).to_be_bytes());
                HEAD_ROOM - 4
            } else {
                buf[..2].copy_from_slice(&[0x82, 127]);
                buf[2..HEAD_ROOM].copy_from_slice(&(n as u64).to_be_bytes());
                0
            };
            self.send_client(&buf[start..HEAD_ROOM + n])?;
            if n < BUF {
                return Ok(());
            }
        }
        Ok(())
    }

    /// `side` is writable: write what waits for it, then read the side that was left unread
    /// meanwhile (its edge may have passed).
    fn flush(&mut self, side: usize, poll: &Poll, index: usize, buf: &mut [u8]) -> io::Result<()> {
        if side == CLIENT {
            if self.to_client.is_empty() {
                return Ok(());
            }
            let pending = std::mem::take(&mut self.to_client);
            let written = write_some(&mut self.client, &pending)?;
            self.to_client = pending[written..].to_vec();
            if self.to_client.is_empty() {
                self.finish()?;
                self.pump_target(buf)?;
            }
        } else {
            let Some(target) = self.target.as_mut() else {
                return Ok(());
            };
            if self.to_target.is_empty() {
                return Ok(());
            }
            let written = write_some(target, &self.to_target)?;
            self.to_target.drain(..written);
            if self.to_target.is_empty() {
                self.pump(CLIENT, poll, index, buf)?;
            }
        }
        Ok(())
    }

    fn send_client(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.to_client.is_empty() {
            self.to_client.extend_from_slice(data);
            return Ok(());
        }
        let written = write_some(&mut self.client, data)?;
        self.to_client.extend_from_slice(&data[written..]);
        Ok(())
    }

    fn send_target(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(target) = self.target.as_mut() else {
            return Ok(());
        };
        if !self.to_target.is_empty() {
            self.to_target.extend_from_slice(data);
            return Ok(());
        }
        let written = write_some(target, data)?;
        self.to_target.extend_from_slice(&data[written..]);
        Ok(())
    }

    /// Our FIN, once our close is out.
    fn finish(&mut self) -> io::Result<()> {
        if self.closing && !self.shut && self.to_client.is_empty() {
            self.shut = true;
            self.client.shutdown(Shutdown::Write)?;
        }
        Ok(())
    }
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

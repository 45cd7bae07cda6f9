//! RFC 6455 as the floors do it (`wsfloor.rs`, `tokiows.rs`, `h2floor.rs`): the least a
//! bridge must do to an upgrade request, a client's frames and the target's bytes, nothing
//! checked.

use bytes::{Buf, BytesMut};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Room in front of each target read for the largest header a server's frame has.
pub const HEAD_ROOM: usize = 10;

/// Where in the client's frames the bytes gathered so far stand.
#[derive(Default)]
pub struct ClientFrames {
    /// Payload bytes of the current frame not taken yet.
    left: u64,
    mask: [u8; 4],
    /// Where in the mask's cycle the next payload byte is.
    offset: usize,
    /// The current frame is a control frame: its payload is dropped.
    control: bool,
}

/// What the client's bytes gave.
pub enum Next {
    /// Unmasked payload for the target.
    Payload(BytesMut),
    /// The client's close: the floor answers it and ends.
    Close,
    /// Nothing more until more bytes come.
    More,
}

impl ClientFrames {
    /// Takes the next payload (unmasked in place), or the close, from the front of `buf`.
    pub fn next(&mut self, buf: &mut BytesMut) -> Next {
        loop {
            if self.left == 0 {
                let Some((head, len, opcode, mask)) = header(buf) else {
                    return Next::More;
                };
                buf.advance(head);
                if opcode == 8 {
                    return Next::Close;
                }
                *self = ClientFrames {
                    left: len,
                    mask,
                    offset: 0,
                    control: opcode >= 8,
                };
                continue;
            }
            let n = buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            if n == 0 {
                return Next::More;
            }
            let mut payload = buf.split_to(n);
            self.left -= n as u64;
            if self.control {
                continue;
            }
            unmask(&mut payload, self.mask, self.offset);
            self.offset = (self.offset + n) % 4;
            return Next::Payload(payload);
        }
    }
}

/// A client frame's header at the front of `buf`: its length, the payload's length, the
/// opcode and the mask; `None` until it is all there.
fn header(buf: &[u8]) -> Option<(usize, u64, u8, [u8; 4])> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = buf.get(at..at + 4)?.try_into().ok()?;
    Some((at + 4, len, b0 & 0x0f, mask))
}

/// Writes a binary frame's header for `len` bytes at the end of `room` (at least
/// [`HEAD_ROOM`] bytes); its length.
pub fn frame_header(room: &mut [u8], len: usize) -> usize {
    let mut head = [0u8; HEAD_ROOM];
    head[0] = 0x82;
    let n = match len {
        0..=125 => {
            head[1] = len as u8;
            2
        }
        126..=0xffff => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    let end = room.len();
    room[end - n..].copy_from_slice(&head[..n]);
    n
}

/// The answer to an upgrade request whose head (up to its blank line) is `head`: 101 with
/// the key's accept value, and the `binary` subprotocol if offered; `None` without a key.
pub fn upgrade_answer(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut key = None;
    let mut binary = false;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            binary |= value.split(',').any(|p| p.trim() == "binary");
        }
    }
    let protocol = if binary {
        "Sec-WebSocket-Protocol: binary\r\n"
    } else {
        ""
    };
    Some(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        derive_accept_key(key?.as_bytes())
    ))
}

/// Unmasks `payload`, whose first byte is at `offset` in the mask's cycle; eight bytes at a
/// time, as ours does.
pub fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let wide = u64::from_ne_bytes(std::array::from_fn(|i| mask[(offset + i) % 4]));
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Eight is a multiple of four: the rest starts at the same place in the mask.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame of `payload` with `opcode`.
    fn masked(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn frames_split_anywhere_come_out_unmasked_and_a_ping_is_dropped() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = masked(2, &data[..100], [1, 2, 3, 4]);
        wire.extend(masked(9, b"ping", [5, 6, 7, 8]));
        wire.extend(masked(2, &data[100..], [9, 10, 11, 12]));
        wire.extend(masked(8, &[3, 232], [13, 14, 15, 16]));
        for step in [1, 3, 13, 1000, wire.len()] {
            let (mut frames, mut buf, mut out) = (ClientFrames::default(), BytesMut::new(), vec![]);
            let mut closed = false;
            'feed: for piece in wire.chunks(step) {
                buf.extend_from_slice(piece);
                loop {
                    match frames.next(&mut buf) {
                        Next::Payload(p) => out.extend_from_slice(&p),
                        Next::Close => {
                            closed = true;
                            break 'feed;
                        }
                        Next::More => break,
                    }
                }
            }
            assert!(closed, "step {step}");
            assert!(out == data, "step {step}");
        }
    }

    #[test]
    fn an_upgrade_is_answered_with_its_key_and_the_binary_subprotocol() {
        let head = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Sec-WebSocket-Protocol: base64, binary\r\n\r\n";
        let answer = upgrade_answer(head).unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
        // RFC 6455's example key and its accept value.
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(
            answer.ends_with("Sec-WebSocket-Protocol: binary\r\n\r\n"),
            "{answer}"
        );
        assert!(upgrade_answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_none());
    }

    #[test]
    fn headers_have_the_shortest_length_form() {
        for (len, want) in [
            (5, &[0x82, 5][..]),
            (300, &[0x82, 126, 1, 44]),
            (70_000, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
        ] {
            let mut room = [0u8; HEAD_ROOM];
            let n = frame_header(&mut room, len);
            assert_eq!(&room[HEAD_ROOM - n..], want);
        }
    }
}

//! RFC 6455 frames (section 5.2): parsing a header from the bytes received so far, writing
//! one, and (un)masking a payload in place.
//!
//! This is the part of HyBi that sits on the hot path, so it is written for the relay's
//! needs rather than taken from a general WebSocket library: a header is parsed without
//! touching the payload, the payload is unmasked where it was read (also piece by piece, for
//! frames larger than a read), and an outgoing header is a few bytes on the stack written
//! next to the payload in one vectored write.

use std::fmt;

/// The frame types of RFC 6455; the reserved opcodes are refused when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: never fragmented, at most 125 bytes, allowed inside a message.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1: with permessage-deflate, the first frame of a compressed message; the session
    /// refuses it in every other case.
    pub rsv1: bool,
    pub opcode: OpCode,
    /// Clients must mask every frame; servers never do.
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// How many bytes the header itself took.
    pub len: usize,
}

/// A header that breaks RFC 6455; every one is answered with close code 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// RSV2 or RSV3 set: no extension we negotiate defines them (RSV1 is the session's to
    /// judge, as permessage-deflate gives it a meaning).
    ReservedBits,
    /// Opcodes 3-7 and 0xB-0xF.
    ReservedOpcode(u8),
    /// A close, ping or pong without FIN.
    FragmentedControl,
    /// A close, ping or pong with more than 125 bytes.
    ControlTooLong,
    /// A 64-bit length with its most significant bit set.
    LengthOverflow,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::ReservedBits => f.write_str("reserved bits set"),
            HeaderError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            HeaderError::FragmentedControl => f.write_str("fragmented control frame"),
            HeaderError::ControlTooLong => f.write_str("control frame too long"),
            HeaderError::LengthOverflow => f.write_str("invalid frame length"),
        }
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x30 != 0 {
        return Err(HeaderError::ReservedBits);
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(HeaderError::ReservedOpcode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    if opcode.is_control() {
        if !fin {
            return Err(HeaderError::FragmentedControl);
        }
        // An extended length is more than 125 already.
        if usize::from(b1 & 0x7F) > MAX_CONTROL_PAYLOAD {
            return Err(HeaderError::ControlTooLong);
        }
    }
    let (payload_len, mut len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if payload_len >> 63 != 0 {
        return Err(HeaderError::LengthOverflow);
    }
    let mask = if masked {
        let Some(m) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        len += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        rsv1: b0 & 0x40 != 0,
        opcode,
        mask,
        payload_len,
        len,
    }))
}

/// An encoded server header (unmasked, FIN set): at most 10 bytes, on the stack.
#[derive(Debug, Clone, Copy)]
pub struct HeaderBytes {
    bytes: [u8; 10],
    len: u8,
}

impl HeaderBytes {
    /// The header of a whole (unfragmented), unmasked frame of `payload_len` bytes, with RSV1
    /// set when `compressed` (a permessage-deflate message).
    pub fn with_rsv1(opcode: OpCode, payload_len: usize, compressed: bool) -> HeaderBytes {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | if compressed { 0x40 } else { 0 } | opcode.bits();
        let len = if payload_len < 126 {
            bytes[1] = payload_len as u8;
            2
        } else if let Ok(short) = u16::try_from(payload_len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        HeaderBytes { bytes, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// XORs `data` with `mask`, where `data` starts `offset` bytes into the frame's payload (so a
/// payload unmasked piece by piece comes out as if done at once). Masking twice unmasks.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let m: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    // Eight bytes at a time; the compiler turns this into vector instructions.
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn masked_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(b0);
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        apply_mask(&mut p, mask, 0);
        out.extend_from_slice(&p);
        out
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: a masked "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = parse_header(&frame).unwrap().unwrap();
        assert_eq!(
            h,
            Header {
                fin: true,
                rsv1: false,
                opcode: OpCode::Text,
                mask: Some([0x37, 0xfa, 0x21, 0x3d]),
                payload_len: 5,
                len: 6
            }
        );
        let mut payload = frame[6..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
        // The unmasked server "Hello" and a 256-byte binary header.
        assert_eq!(
            HeaderBytes::with_rsv1(OpCode::Text, 5, false).as_slice(),
            [0x81, 0x05]
        );
        assert_eq!(
            HeaderBytes::with_rsv1(OpCode::Binary, 256, false).as_slice(),
            [0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            HeaderBytes::with_rsv1(OpCode::Binary, 65536, false).as_slice(),
            [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn incomplete_headers_wait() {
        let frame = masked_frame(0x82, &[7; 300], [1, 2, 3, 4]);
        for cut in 0..8 {
            assert_eq!(parse_header(&frame[..cut]), Ok(None), "{cut}");
        }
        assert_eq!(parse_header(&frame[..8]).unwrap().unwrap().payload_len, 300);
    }

    #[test]
    fn broken_headers_are_named() {
        assert_eq!(parse_header(&[0xA2, 0x80]), Err(HeaderError::ReservedBits));
        assert_eq!(parse_header(&[0x92, 0x80]), Err(HeaderError::ReservedBits));
        // RSV1 is permessage-deflate's: parsed, and judged by the session.
        assert!(
            parse_header(&[0xC2, 0x80, 0, 0, 0, 0])
                .unwrap()
                .unwrap()
                .rsv1
        );
        assert_eq!(
            HeaderBytes::with_rsv1(OpCode::Binary, 5, true).as_slice(),
            [0xC2, 0x05]
        );
        assert_eq!(
            parse_header(&[0x83, 0x80]),
            Err(HeaderError::ReservedOpcode(3))
        );
        assert_eq!(
            parse_header(&[0x09, 0x80]),
            Err(HeaderError::FragmentedControl)
        );
        assert_eq!(
            parse_header(&[0x89, 0xFE]),
            Err(HeaderError::ControlTooLong)
        );
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(parse_header(&huge), Err(HeaderError::LengthOverflow));
    }

    proptest! {
        #[test]
        fn parses_what_a_client_writes(
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
            mask in any::<[u8; 4]>(),
            fin in any::<bool>(),
        ) {
            let frame = masked_frame(if fin { 0x82 } else { 0x02 }, &payload, mask);
            let h = parse_header(&frame).unwrap().unwrap();
            prop_assert_eq!(h.fin, fin);
            prop_assert_eq!(h.opcode, OpCode::Binary);
            prop_assert_eq!(h.mask, Some(mask));
            prop_assert_eq!(h.payload_len, payload.len() as u64);
            prop_assert_eq!(h.len + payload.len(), frame.len());
        }

        #[test]
        fn unmasking_in_pieces_is_unmasking_at_once(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            mask in any::<[u8; 4]>(),
            cuts in proptest::collection::vec(0usize..200, 0..5),
        ) {
            let mut whole = payload.clone();
            apply_mask(&mut whole, mask, 0);
            let mut pieces = payload.clone();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < payload.len()).collect();
            cuts.sort_unstable();
            cuts.push(payload.len());
            let mut start = 0;
            for cut in cuts {
                apply_mask(&mut pieces[start..cut], mask, start);
                start = cut;
            }
            prop_assert_eq!(&pieces, &whole);
            apply_mask(&mut whole, mask, 0);
            prop_assert_eq!(whole, payload);
        }

        #[test]
        fn server_headers_round_trip(len in 0usize..200_000) {
            let h = HeaderBytes::with_rsv1(OpCode::Binary, len, false);
            let parsed = parse_header(h.as_slice()).unwrap().unwrap();
            prop_assert_eq!(parsed.payload_len, len as u64);
            prop_assert_eq!(parsed.len, h.as_slice().len());
            prop_assert_eq!(parsed.mask, None);
        }
    }
}

//! Splits the byte stream of one connection into whole messages.
//!
//! Pure: the server pushes the bytes it read, and pulls complete messages
//! (header and body in one buffer) or notices of messages that were skipped
//! because their type is unknown or they are longer than the receive limit.
//! A skipped message's body is discarded as it arrives and is never buffered,
//! so a client claiming a huge length costs no memory. Bytes after the last
//! complete message stay buffered; [`FrameReader::take_buffered`] hands them
//! over when the connection switches to TLS after STARTTLS.

use crate::wire::{Header, MsgType, HEADER_LEN};

/// Why a message was skipped without being decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The type code is not one of the 18 known types.
    UnknownType,
    /// Header plus body exceed the receive limit.
    TooLong,
}

/// What the reader found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message of a known type within the size limit.
    Message(Vec<u8>),
    /// A message that is being (or was) discarded. Reported as soon as its
    /// header has been read; `length` is the claimed body length.
    Skipped {
        msg_type: u16,
        length: u32,
        reason: SkipReason,
    },
}

/// Incremental message splitter for one connection.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Body bytes of a skipped message still to be thrown away.
    skip_remaining: u64,
    max_total: usize,
}

impl FrameReader {
    /// `max_total` is the largest message (header included) accepted.
    pub fn new(max_total: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            skip_remaining: 0,
            max_total: max_total.max(HEADER_LEN),
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.skip_remaining > 0 {
            let n = (self.skip_remaining.min(data.len() as u64)) as usize;
            self.skip_remaining -= n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// Whether a skipped message's body is still being discarded.
    pub fn is_skipping(&self) -> bool {
        self.skip_remaining > 0
    }

    /// Bytes buffered but not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.skip_remaining > 0 {
            // push() discards skipped bytes before buffering, so the buffer is
            // empty while skipping.
            return None;
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        let header = Header::parse(&h);
        let reason = if MsgType::from_u16(header.msg_type).is_none() {
            Some(SkipReason::UnknownType)
        } else if header.total_len() > self.max_total as u64 {
            Some(SkipReason::TooLong)
        } else {
            None
        };
        if let Some(reason) = reason {
            // Drop the header and whatever part of the body is buffered;
            // the rest is discarded by push() as it arrives.
            let body_buffered = (self.buf.len() - HEADER_LEN) as u64;
            let body = u64::from(header.length);
            let drop_now = HEADER_LEN + body.min(body_buffered) as usize;
            self.buf.drain(..drop_now);
            self.skip_remaining = body.saturating_sub(body_buffered);
            return Some(Frame::Skipped {
                msg_type: header.msg_type,
                length: header.length,
                reason,
            });
        }
        let total = header.total_len() as usize;
        if self.buf.len() < total {
            return None;
        }
        let rest = self.buf.split_off(total);
        let msg = std::mem::replace(&mut self.buf, rest);
        Some(Frame::Message(msg))
    }

    /// Takes the bytes buffered after the last complete frame (used to hand
    /// the start of a TLS handshake to the TLS layer).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: u16, body: &[u8]) -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn splits_messages_fed_byte_by_byte() {
        let a = msg(0, &[0, 1, 0, 1, b'x']);
        let b = msg(8, &[0, 0, 0, 4, 0, 0, 0, 1]);
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut r = FrameReader::new(32768);
        let mut out = Vec::new();
        for byte in stream {
            r.push(&[byte]);
            while let Some(f) = r.next_frame() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![Frame::Message(a), Frame::Message(b)]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn unknown_type_is_skipped_and_stream_resyncs() {
        let bad = msg(18, &[1, 2, 3, 4, 5]);
        let good = msg(8, &[0, 0, 0, 4, 0, 0, 0, 9]);
        let mut r = FrameReader::new(32768);
        r.push(&bad[..8]);
        assert_eq!(
            r.next_frame(),
            Some(Frame::Skipped {
                msg_type: 18,
                length: 5,
                reason: SkipReason::UnknownType
            })
        );
        assert!(r.is_skipping());
        r.push(&bad[8..]);
        r.push(&good);
        assert_eq!(r.next_frame(), Some(Frame::Message(good)));
    }

    #[test]
    fn oversized_claim_is_skipped_without_buffering() {
        let mut r = FrameReader::new(32768);
        let mut h = 10u16.to_be_bytes().to_vec();
        h.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        r.push(&h);
        assert!(matches!(
            r.next_frame(),
            Some(Frame::Skipped {
                reason: SkipReason::TooLong,
                ..
            })
        ));
        for _ in 0..100 {
            r.push(&[0u8; 4096]);
            assert_eq!(r.buffered(), 0);
            assert_eq!(r.next_frame(), None);
        }
    }

    #[test]
    fn limit_is_inclusive_of_the_header() {
        let mut r = FrameReader::new(16);
        r.push(&msg(8, &[0u8; 10]));
        assert!(matches!(r.next_frame(), Some(Frame::Message(_))));
        r.push(&msg(8, &[0u8; 11]));
        assert!(matches!(
            r.next_frame(),
            Some(Frame::Skipped {
                reason: SkipReason::TooLong,
                ..
            })
        ));
    }

    #[test]
    fn leftover_bytes_are_handed_over() {
        let mut r = FrameReader::new(32768);
        let st = msg(2, &[0, 0, 0, 4, 0, 0, 0, 2]);
        let mut data = st.clone();
        data.extend_from_slice(&[0x16, 0x03, 0x01]);
        r.push(&data);
        assert_eq!(r.next_frame(), Some(Frame::Message(st)));
        assert_eq!(r.take_buffered(), vec![0x16, 0x03, 0x01]);
    }
}

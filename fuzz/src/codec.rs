//! Fuzz harness of the wire layer: the input is a byte stream as a client
//! (or a server) could send it.
//!
//! Asserted, for every input:
//! - decoding the input as a body of each of the 18 message types never
//!   panics, and whatever decodes survives an encode/decode round trip
//!   unchanged (with a header whose type and length are right);
//! - the [`FrameReader`] splits the stream into the same frames whatever the
//!   chunking of the input, never returns a frame longer than its limit or
//!   of an unknown type, never buffers a skipped body, and every frame it
//!   returns decodes without panicking (and round-trips if it decodes);
//! - the ECHO_REPLY built from a request has the request's bytes.

use qnetd_core::framing::{Frame, FrameReader, SkipReason};
use qnetd_core::wire::{self, Header, Message, MsgType, HEADER_LEN};

/// Runs one input.
pub fn run(data: &[u8]) {
    for t in MsgType::ALL {
        check_body(t, data);
    }
    // The two limits the server meets: the default receive size and a
    // small one, so that both skip paths are reached with short inputs.
    let small = HEADER_LEN + data.len() % 64;
    for limit in [32768, small] {
        let whole = frames(data, limit, &[usize::MAX]);
        let chunk_sizes: Vec<usize> = data
            .iter()
            .take(16)
            .map(|b| usize::from(b % 13) + 1)
            .collect();
        let chunked = frames(data, limit, &chunk_sizes);
        assert_eq!(whole, chunked, "framing depends on how the stream is cut");
        for frame in &whole.0 {
            if let Frame::Message(raw) = frame {
                assert!(raw.len() <= limit.max(HEADER_LEN), "frame over the limit");
                let (header, body) = split(raw);
                assert_eq!(header.total_len(), raw.len() as u64);
                let t = MsgType::from_u16(header.msg_type).expect("frame of unknown type");
                check_body(t, body);
                if t == MsgType::EchoRequest {
                    let reply = wire::echo_reply_from_request(raw);
                    assert_eq!(reply.len(), raw.len());
                    assert_eq!(&reply[2..], &raw[2..]);
                    assert_eq!(reply[..2], (MsgType::EchoReply as u16).to_be_bytes());
                }
            }
        }
    }
}

/// Decodes `body` as type `t`; if it decodes, the re-encoded message must
/// decode to the same message.
fn check_body(t: MsgType, body: &[u8]) {
    let Ok(msg) = wire::decode(t, body) else {
        return;
    };
    assert_eq!(msg.msg_type(), t);
    let mut bytes = Vec::new();
    wire::try_encode(&msg, &mut bytes).expect("a decoded message must encode");
    assert_eq!(bytes, msg.to_bytes());
    let (header, body2) = split(&bytes);
    assert_eq!(header.msg_type, t as u16);
    if body2.is_empty() {
        // A message without any option the type uses (e.g. a body of only
        // unknown options) encodes to a bare header, which the decoder
        // rejects as the reference does. The server never sends one.
        assert!(wire::decode(t, body2).is_err());
        return;
    }
    let again = wire::decode(t, body2).expect("an encoded message must decode");
    assert_eq!(again, msg, "round trip changed the message");
    // Encoding is canonical: a second round gives the same bytes.
    assert_eq!(again.to_bytes(), bytes);
    check_seq_accessor(&msg);
}

/// Extra consistency of accessors on decoded messages.
fn check_seq_accessor(msg: &Message) {
    let fields = wire::decode_fields(&msg.to_bytes()[HEADER_LEN..]);
    if let Ok(f) = fields {
        assert_eq!(f.seq, msg.seq());
    }
}

fn split(raw: &[u8]) -> (Header, &[u8]) {
    let head: &[u8; HEADER_LEN] = raw.first_chunk().expect("frame shorter than a header");
    let header = Header::parse(head);
    let body = &raw[HEADER_LEN..];
    assert_eq!(header.length as usize, body.len(), "header length field");
    (header, body)
}

/// The frames of `data` fed in chunks of the given sizes (cycled), and the
/// bytes left buffered at the end.
fn frames(data: &[u8], limit: usize, chunk_sizes: &[usize]) -> (Vec<Frame>, usize) {
    let mut reader = FrameReader::new(limit);
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunk_sizes[i % chunk_sizes.len()].min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        reader.push(chunk);
        if reader.is_skipping() {
            assert_eq!(reader.buffered(), 0, "a skipped body is being buffered");
        }
        while let Some(frame) = reader.next_frame() {
            if let Frame::Skipped {
                msg_type,
                length,
                reason,
            } = &frame
            {
                let total = HEADER_LEN as u64 + u64::from(*length);
                match reason {
                    SkipReason::UnknownType => assert!(MsgType::from_u16(*msg_type).is_none()),
                    SkipReason::TooLong => {
                        assert!(MsgType::from_u16(*msg_type).is_some());
                        assert!(total > limit.max(HEADER_LEN) as u64);
                    }
                }
            }
            out.push(frame);
        }
    }
    (out, reader.buffered())
}

//! Typed errors of the wire codec: why a message body could not be decoded
//! (answered by the server with `SERVER_ERROR(ERROR_DECODING_MSG)`), and why a
//! typed message could not be encoded.

use std::fmt;

/// What was wrong with a message body.
///
/// The reference decoder has four internal error classes (−1 wrong length,
/// −2 out of memory, −3 framing, −4 out of range); all of them are answered
/// with the same error code 9, so the distinction only matters for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The body is empty (the reference rejects header-only messages).
    EmptyBody,
    /// A TLV header or value runs past the end of the body (or of a
    /// NODE_INFO value), or a NODE_INFO value is empty. Reference class −3.
    Truncated,
    /// An option has the wrong fixed length, or an odd length for a u16
    /// array. Reference class −1.
    WrongLength,
    /// An option's value is out of its range, or a NODE_INFO lacks a
    /// non-zero NODE_ID. Reference class −4.
    OutOfRange,
}

impl DecodeErrorKind {
    /// Short description, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            DecodeErrorKind::EmptyBody => "empty message body",
            DecodeErrorKind::Truncated => "option runs past the end of its container",
            DecodeErrorKind::WrongLength => "option has a wrong length",
            DecodeErrorKind::OutOfRange => "option value out of range",
        }
    }
}

/// A body that could not be decoded. `seq` is the sequence number if the
/// MSG_SEQ_NUMBER option was decoded before the faulty option (the reference
/// echoes it only then); `option` is the faulty option's type, if known
/// (for an error inside a NODE_INFO it is NODE_INFO itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub seq: Option<u32>,
    pub option: Option<u16>,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let Some(option) = self.option {
            write!(f, " (option type {option})")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}

/// A typed message that cannot be represented on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// An option value is longer than the 65535 bytes a TLV length can say
    /// (a cluster name, or a u16 array of more than 32767 entries).
    ValueTooLong { option: u16, len: usize },
    /// The whole body is longer than the u32 length of the header can say.
    BodyTooLong { len: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::ValueTooLong { option, len } => write!(
                f,
                "value of option type {option} is {len} bytes, more than a TLV can hold (65535)"
            ),
            EncodeError::BodyTooLong { len } => {
                write!(f, "message body is {len} bytes, more than a header can say")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

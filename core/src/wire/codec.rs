//! TLV decoding and encoding of message bodies.
//!
//! Decoding is two steps: [`decode_fields`] walks the TLVs of a body with the
//! rules of the reference decoder (`msg_decode`) and collects every option it
//! knows into [`Fields`]; [`decode`] then picks the options relevant to one
//! message type. Encoding (`encode`, [`try_encode`]) writes the header and
//! the options that are `Some`, in the order the reference server emits them.
//!
//! Nothing here panics or indexes out of bounds, whatever the input.

use super::{
    opt, AskForVoteReply, DecodeError, DecodeErrorKind, Echo, EncodeError, ErrorCode, Heuristics,
    HeuristicsChange, HeuristicsChangeReply, Init, InitReply, Message, MsgType, NodeInfo, NodeList,
    NodeListReply, NodeListType, NodeState, Preinit, PreinitReply, RingId, SeqOnly, ServerError,
    SetOption, StartTls, TieBreaker, TlsSupported, Vote, VoteInfo, HEADER_LEN,
};

/// Size of a TLV header: u16 option type, u16 value length.
const TLV_HEADER_LEN: usize = 4;

/// Every option the decoder knows, as found in one message body.
///
/// An option that appears several times keeps its last value, except
/// NODE_INFO, whose occurrences are collected in order into `nodes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub seq: Option<u32>,
    pub cluster_name: Option<Vec<u8>>,
    pub tls_supported: Option<TlsSupported>,
    /// Any non-zero byte is `true` (the reference does not range-check it).
    pub tls_client_cert_required: Option<bool>,
    pub supported_messages: Option<Vec<u16>>,
    pub supported_options: Option<Vec<u16>>,
    pub supported_algorithms: Option<Vec<u16>>,
    pub reply_error_code: Option<ErrorCode>,
    pub server_max_request_size: Option<u32>,
    pub server_max_reply_size: Option<u32>,
    pub node_id: Option<u32>,
    /// Raw value: the range is checked by the server, not the decoder.
    pub decision_algorithm: Option<u16>,
    pub heartbeat_interval: Option<u32>,
    pub ring_id: Option<RingId>,
    pub config_version: Option<u64>,
    /// Top-level DATA_CENTER_ID (only meaningful inside NODE_INFO).
    pub data_center_id: Option<u32>,
    /// Top-level NODE_STATE (only meaningful inside NODE_INFO).
    pub node_state: Option<NodeState>,
    pub nodes: Vec<NodeInfo>,
    pub node_list_type: Option<NodeListType>,
    pub vote: Option<Vote>,
    pub quorate: Option<bool>,
    pub tie_breaker: Option<TieBreaker>,
    /// Never `Some(Heuristics::Undefined)`: the wire value 0 is rejected.
    pub heuristics: Option<Heuristics>,
    /// KEEP_ACTIVE_PARTITION_TIE_BREAKER.
    pub kap: Option<bool>,
}

impl Fields {
    /// Builds the typed message of type `t` from the options relevant to it;
    /// the other options are dropped.
    pub fn into_message(self, t: MsgType) -> Message {
        let seq = self.seq;
        match t {
            MsgType::Preinit => Message::Preinit(Preinit {
                seq,
                cluster_name: self.cluster_name,
            }),
            MsgType::PreinitReply => Message::PreinitReply(PreinitReply {
                seq,
                tls_supported: self.tls_supported,
                tls_client_cert_required: self.tls_client_cert_required,
            }),
            MsgType::StartTls => Message::StartTls(StartTls { seq }),
            MsgType::Init => Message::Init(Init {
                seq,
                supported_messages: self.supported_messages,
                supported_options: self.supported_options,
                node_id: self.node_id,
                decision_algorithm: self.decision_algorithm,
                heartbeat_interval: self.heartbeat_interval,
                tie_breaker: self.tie_breaker,
                ring_id: self.ring_id,
            }),
            MsgType::InitReply => Message::InitReply(InitReply {
                error_code: self.reply_error_code,
                supported_messages: self.supported_messages,
                supported_options: self.supported_options,
                seq,
                server_max_request_size: self.server_max_request_size,
                server_max_reply_size: self.server_max_reply_size,
                supported_algorithms: self.supported_algorithms,
            }),
            MsgType::ServerError => Message::ServerError(ServerError {
                seq,
                error_code: self.reply_error_code,
            }),
            MsgType::SetOption | MsgType::SetOptionReply => {
                let m = SetOption {
                    seq,
                    heartbeat_interval: self.heartbeat_interval,
                    kap: self.kap,
                };
                if t == MsgType::SetOption {
                    Message::SetOption(m)
                } else {
                    Message::SetOptionReply(m)
                }
            }
            MsgType::EchoRequest => Message::EchoRequest(Echo { seq }),
            MsgType::EchoReply => Message::EchoReply(Echo { seq }),
            MsgType::NodeList => Message::NodeList(NodeList {
                seq,
                list_type: self.node_list_type,
                ring_id: self.ring_id,
                config_version: self.config_version,
                quorate: self.quorate,
                nodes: self.nodes,
                heuristics: self.heuristics,
            }),
            MsgType::NodeListReply => Message::NodeListReply(NodeListReply {
                seq,
                list_type: self.node_list_type,
                ring_id: self.ring_id,
                vote: self.vote,
            }),
            MsgType::AskForVote => Message::AskForVote(SeqOnly { seq }),
            MsgType::AskForVoteReply => Message::AskForVoteReply(AskForVoteReply {
                seq,
                vote: self.vote,
                ring_id: self.ring_id,
            }),
            MsgType::VoteInfo => Message::VoteInfo(VoteInfo {
                seq,
                vote: self.vote,
                ring_id: self.ring_id,
            }),
            MsgType::VoteInfoReply => Message::VoteInfoReply(SeqOnly { seq }),
            MsgType::HeuristicsChange => Message::HeuristicsChange(HeuristicsChange {
                seq,
                heuristics: self.heuristics,
            }),
            MsgType::HeuristicsChangeReply => {
                Message::HeuristicsChangeReply(HeuristicsChangeReply {
                    seq,
                    vote: self.vote,
                    ring_id: self.ring_id,
                    heuristics: self.heuristics,
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// One TLV: its option type and its value.
struct Tlv<'a> {
    option: u16,
    value: &'a [u8],
}

/// A TLV whose header or value runs past the end of its container. `option`
/// is its type if the two type bytes are present.
struct TlvOverrun {
    option: Option<u16>,
}

/// Walks the TLVs of a non-empty buffer (a message body or a NODE_INFO
/// value), back to back, until the buffer ends exactly.
struct TlvReader<'a> {
    rest: &'a [u8],
}

impl<'a> TlvReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        TlvReader { rest: buf }
    }

    /// The next TLV; `None` at the exact end of the buffer.
    fn next_tlv(&mut self) -> Option<Result<Tlv<'a>, TlvOverrun>> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((header, after_header)) = self.rest.split_first_chunk::<TLV_HEADER_LEN>() else {
            let option = self.rest.first_chunk::<2>().map(|b| u16::from_be_bytes(*b));
            self.rest = &[];
            return Some(Err(TlvOverrun { option }));
        };
        let option = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if after_header.len() < len {
            self.rest = &[];
            return Some(Err(TlvOverrun {
                option: Some(option),
            }));
        }
        let (value, rest) = after_header.split_at(len);
        self.rest = rest;
        Some(Ok(Tlv { option, value }))
    }
}

/// The value as a fixed-size array, or `WrongLength`.
fn fixed<const N: usize>(value: &[u8]) -> Result<[u8; N], DecodeErrorKind> {
    <[u8; N]>::try_from(value).map_err(|_| DecodeErrorKind::WrongLength)
}

fn read_u8(value: &[u8]) -> Result<u8, DecodeErrorKind> {
    fixed::<1>(value).map(|[b]| b)
}

fn read_u16(value: &[u8]) -> Result<u16, DecodeErrorKind> {
    fixed::<2>(value).map(u16::from_be_bytes)
}

fn read_u32(value: &[u8]) -> Result<u32, DecodeErrorKind> {
    fixed::<4>(value).map(u32::from_be_bytes)
}

fn read_u64(value: &[u8]) -> Result<u64, DecodeErrorKind> {
    fixed::<8>(value).map(u64::from_be_bytes)
}

/// A u8 option with a closed set of values: wrong length first, then range.
fn read_enum<T>(value: &[u8], convert: impl Fn(u8) -> Option<T>) -> Result<T, DecodeErrorKind> {
    convert(read_u8(value)?).ok_or(DecodeErrorKind::OutOfRange)
}

/// A 0/1 flag.
fn read_flag(value: &[u8]) -> Result<bool, DecodeErrorKind> {
    read_enum(value, |b| match b {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    })
}

fn read_u16_array(value: &[u8]) -> Result<Vec<u16>, DecodeErrorKind> {
    let pairs = value.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(DecodeErrorKind::WrongLength);
    }
    Ok(pairs
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect())
}

fn read_ring_id(value: &[u8]) -> Result<RingId, DecodeErrorKind> {
    let bytes = fixed::<12>(value)?;
    let (node, seq) = bytes.split_at(4);
    Ok(RingId {
        node_id: read_u32(node)?,
        seq: read_u64(seq)?,
    })
}

fn read_tie_breaker(value: &[u8]) -> Result<TieBreaker, DecodeErrorKind> {
    let [mode, n0, n1, n2, n3] = fixed::<5>(value)?;
    // `from_wire` keeps the node id only for mode 3, as the reference does.
    TieBreaker::from_wire(mode, u32::from_be_bytes([n0, n1, n2, n3]))
        .ok_or(DecodeErrorKind::OutOfRange)
}

/// A NODE_INFO value: nested TLVs with NODE_ID (required, non-zero),
/// DATA_CENTER_ID and NODE_STATE; other nested options are ignored.
fn read_node_info(value: &[u8]) -> Result<NodeInfo, DecodeErrorKind> {
    if value.is_empty() {
        return Err(DecodeErrorKind::Truncated);
    }
    let mut node = NodeInfo::new(0);
    let mut reader = TlvReader::new(value);
    while let Some(tlv) = reader.next_tlv() {
        let tlv = tlv.map_err(|_| DecodeErrorKind::Truncated)?;
        match tlv.option {
            opt::NODE_ID => node.node_id = read_u32(tlv.value)?,
            opt::DATA_CENTER_ID => node.data_center_id = read_u32(tlv.value)?,
            opt::NODE_STATE => node.state = Some(read_enum(tlv.value, NodeState::from_u8)?),
            _ => {}
        }
    }
    if node.node_id == 0 {
        return Err(DecodeErrorKind::OutOfRange);
    }
    Ok(node)
}

/// Decodes one top-level TLV into `fields`. On error `fields` is unchanged.
fn apply_option(fields: &mut Fields, tlv: &Tlv<'_>) -> Result<(), DecodeErrorKind> {
    let v = tlv.value;
    match tlv.option {
        opt::MSG_SEQ_NUMBER => fields.seq = Some(read_u32(v)?),
        opt::CLUSTER_NAME => fields.cluster_name = Some(v.to_vec()),
        opt::TLS_SUPPORTED => fields.tls_supported = Some(read_enum(v, TlsSupported::from_u8)?),
        opt::TLS_CLIENT_CERT_REQUIRED => fields.tls_client_cert_required = Some(read_u8(v)? != 0),
        opt::SUPPORTED_MESSAGES => fields.supported_messages = Some(read_u16_array(v)?),
        opt::SUPPORTED_OPTIONS => fields.supported_options = Some(read_u16_array(v)?),
        opt::REPLY_ERROR_CODE => fields.reply_error_code = Some(ErrorCode(read_u16(v)?)),
        opt::SERVER_MAXIMUM_REQUEST_SIZE => fields.server_max_request_size = Some(read_u32(v)?),
        opt::SERVER_MAXIMUM_REPLY_SIZE => fields.server_max_reply_size = Some(read_u32(v)?),
        opt::NODE_ID => fields.node_id = Some(read_u32(v)?),
        opt::SUPPORTED_DECISION_ALGORITHMS => {
            fields.supported_algorithms = Some(read_u16_array(v)?)
        }
        opt::DECISION_ALGORITHM => fields.decision_algorithm = Some(read_u16(v)?),
        opt::HEARTBEAT_INTERVAL => fields.heartbeat_interval = Some(read_u32(v)?),
        opt::RING_ID => fields.ring_id = Some(read_ring_id(v)?),
        opt::CONFIG_VERSION => fields.config_version = Some(read_u64(v)?),
        opt::DATA_CENTER_ID => fields.data_center_id = Some(read_u32(v)?),
        opt::NODE_STATE => fields.node_state = Some(read_enum(v, NodeState::from_u8)?),
        opt::NODE_INFO => fields.nodes.push(read_node_info(v)?),
        opt::NODE_LIST_TYPE => fields.node_list_type = Some(read_enum(v, NodeListType::from_u8)?),
        opt::VOTE => fields.vote = Some(read_enum(v, Vote::from_u8)?),
        opt::QUORATE => fields.quorate = Some(read_flag(v)?),
        opt::TIE_BREAKER => fields.tie_breaker = Some(read_tie_breaker(v)?),
        opt::HEURISTICS => fields.heuristics = Some(read_enum(v, Heuristics::from_wire)?),
        opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER => fields.kap = Some(read_flag(v)?),
        // Unknown options are skipped: this keeps the protocol extensible.
        _ => {}
    }
    Ok(())
}

/// Decodes every known option of a message body (the bytes after the
/// header), following the reference decoder:
///
/// - an empty body is an error;
/// - a TLV running past the end, or 1..3 trailing bytes, is an error;
/// - unknown option types are skipped;
/// - the last occurrence of an option wins, except NODE_INFO, which appends;
/// - fixed lengths and value ranges are checked; decoding stops at the first
///   bad option, and the error carries the seq decoded so far.
pub fn decode_fields(body: &[u8]) -> Result<Fields, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError {
            kind: DecodeErrorKind::EmptyBody,
            seq: None,
            option: None,
        });
    }
    let mut fields = Fields::default();
    let mut reader = TlvReader::new(body);
    while let Some(tlv) = reader.next_tlv() {
        let result = match tlv {
            Ok(tlv) => apply_option(&mut fields, &tlv).map_err(|kind| (kind, Some(tlv.option))),
            Err(overrun) => Err((DecodeErrorKind::Truncated, overrun.option)),
        };
        if let Err((kind, option)) = result {
            return Err(DecodeError {
                kind,
                seq: fields.seq,
                option,
            });
        }
    }
    Ok(fields)
}

/// Decodes a message body as a message of type `t`. Options that type does
/// not use are decoded (and validated) but dropped. Missing required options
/// are not an error here: the server answers them with error 7.
pub fn decode(t: MsgType, body: &[u8]) -> Result<Message, DecodeError> {
    decode_fields(body).map(|fields| fields.into_message(t))
}

/// The ECHO_REPLY for a whole ECHO_REQUEST message (header included): the
/// same bytes with the type changed to ECHO_REPLY, so every TLV, unknown ones
/// included, is reflected. Input shorter than a type field is returned as is.
pub fn echo_reply_from_request(raw: &[u8]) -> Vec<u8> {
    let mut reply = raw.to_vec();
    if let Some(type_field) = reply.first_chunk_mut::<2>() {
        *type_field = (MsgType::EchoReply as u16).to_be_bytes();
    }
    reply
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Appends TLVs to a message being built, remembering the first value that
/// does not fit a TLV.
struct TlvWriter<'a> {
    out: &'a mut Vec<u8>,
    error: Option<EncodeError>,
}

impl TlvWriter<'_> {
    fn tlv(&mut self, option: u16, value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let Ok(len) = u16::try_from(value.len()) else {
            self.error = Some(EncodeError::ValueTooLong {
                option,
                len: value.len(),
            });
            return;
        };
        self.out.extend_from_slice(&option.to_be_bytes());
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(value);
    }

    fn u8(&mut self, option: u16, value: Option<u8>) {
        if let Some(v) = value {
            self.tlv(option, &[v]);
        }
    }

    fn flag(&mut self, option: u16, value: Option<bool>) {
        self.u8(option, value.map(u8::from));
    }

    fn u16(&mut self, option: u16, value: Option<u16>) {
        if let Some(v) = value {
            self.tlv(option, &v.to_be_bytes());
        }
    }

    fn u32(&mut self, option: u16, value: Option<u32>) {
        if let Some(v) = value {
            self.tlv(option, &v.to_be_bytes());
        }
    }

    fn u64(&mut self, option: u16, value: Option<u64>) {
        if let Some(v) = value {
            self.tlv(option, &v.to_be_bytes());
        }
    }

    fn bytes(&mut self, option: u16, value: Option<&[u8]>) {
        if let Some(v) = value {
            self.tlv(option, v);
        }
    }

    fn u16_array(&mut self, option: u16, value: Option<&[u16]>) {
        if let Some(items) = value {
            let bytes: Vec<u8> = items.iter().flat_map(|i| i.to_be_bytes()).collect();
            self.tlv(option, &bytes);
        }
    }

    fn ring_id(&mut self, value: Option<RingId>) {
        if let Some(r) = value {
            let mut bytes = [0u8; 12];
            bytes[..4].copy_from_slice(&r.node_id.to_be_bytes());
            bytes[4..].copy_from_slice(&r.seq.to_be_bytes());
            self.tlv(opt::RING_ID, &bytes);
        }
    }

    fn tie_breaker(&mut self, value: Option<TieBreaker>) {
        if let Some(tb) = value {
            let [n0, n1, n2, n3] = tb.wire_node_id().to_be_bytes();
            self.tlv(opt::TIE_BREAKER, &[tb.mode(), n0, n1, n2, n3]);
        }
    }

    /// `Some(Heuristics::Undefined)` writes nothing: "undefined" is, by
    /// definition, the absence of the option on the wire.
    fn heuristics(&mut self, value: Option<Heuristics>) {
        self.u8(opt::HEURISTICS, value.and_then(Heuristics::to_wire));
    }

    fn vote(&mut self, value: Option<Vote>) {
        self.u8(opt::VOTE, value.map(|v| v as u8));
    }

    fn node_list_type(&mut self, value: Option<NodeListType>) {
        self.u8(opt::NODE_LIST_TYPE, value.map(|t| t as u8));
    }

    fn error_code(&mut self, value: Option<ErrorCode>) {
        self.u16(opt::REPLY_ERROR_CODE, value.map(|c| c.0));
    }

    /// NODE_INFO: NODE_ID, DATA_CENTER_ID if non-zero, NODE_STATE if set.
    fn node_info(&mut self, node: &NodeInfo) {
        let mut nested = Vec::with_capacity(24);
        let mut inner = TlvWriter {
            out: &mut nested,
            error: None,
        };
        inner.u32(opt::NODE_ID, Some(node.node_id));
        if node.data_center_id != 0 {
            inner.u32(opt::DATA_CENTER_ID, Some(node.data_center_id));
        }
        inner.u8(opt::NODE_STATE, node.state.map(|s| s as u8));
        self.tlv(opt::NODE_INFO, &nested);
    }
}

/// Writes the body TLVs of `m`, in the reference emission order.
fn write_body(m: &Message, w: &mut TlvWriter<'_>) {
    match m {
        Message::Preinit(p) => {
            w.u32(opt::MSG_SEQ_NUMBER, p.seq);
            w.bytes(opt::CLUSTER_NAME, p.cluster_name.as_deref());
        }
        Message::PreinitReply(p) => {
            w.u32(opt::MSG_SEQ_NUMBER, p.seq);
            w.u8(opt::TLS_SUPPORTED, p.tls_supported.map(|t| t as u8));
            w.flag(opt::TLS_CLIENT_CERT_REQUIRED, p.tls_client_cert_required);
        }
        Message::StartTls(StartTls { seq })
        | Message::EchoRequest(Echo { seq })
        | Message::EchoReply(Echo { seq })
        | Message::AskForVote(SeqOnly { seq })
        | Message::VoteInfoReply(SeqOnly { seq }) => {
            w.u32(opt::MSG_SEQ_NUMBER, *seq);
        }
        Message::Init(i) => {
            w.u32(opt::MSG_SEQ_NUMBER, i.seq);
            w.u16_array(opt::SUPPORTED_MESSAGES, i.supported_messages.as_deref());
            w.u16_array(opt::SUPPORTED_OPTIONS, i.supported_options.as_deref());
            w.u32(opt::NODE_ID, i.node_id);
            w.u16(opt::DECISION_ALGORITHM, i.decision_algorithm);
            w.u32(opt::HEARTBEAT_INTERVAL, i.heartbeat_interval);
            w.tie_breaker(i.tie_breaker);
            w.ring_id(i.ring_id);
        }
        Message::InitReply(r) => {
            w.error_code(r.error_code);
            w.u16_array(opt::SUPPORTED_MESSAGES, r.supported_messages.as_deref());
            w.u16_array(opt::SUPPORTED_OPTIONS, r.supported_options.as_deref());
            w.u32(opt::MSG_SEQ_NUMBER, r.seq);
            w.u32(opt::SERVER_MAXIMUM_REQUEST_SIZE, r.server_max_request_size);
            w.u32(opt::SERVER_MAXIMUM_REPLY_SIZE, r.server_max_reply_size);
            w.u16_array(
                opt::SUPPORTED_DECISION_ALGORITHMS,
                r.supported_algorithms.as_deref(),
            );
        }
        Message::ServerError(e) => {
            w.u32(opt::MSG_SEQ_NUMBER, e.seq);
            w.error_code(e.error_code);
        }
        Message::SetOption(s) | Message::SetOptionReply(s) => {
            w.u32(opt::MSG_SEQ_NUMBER, s.seq);
            w.u32(opt::HEARTBEAT_INTERVAL, s.heartbeat_interval);
            w.flag(opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER, s.kap);
        }
        Message::NodeList(l) => {
            w.u32(opt::MSG_SEQ_NUMBER, l.seq);
            w.node_list_type(l.list_type);
            w.ring_id(l.ring_id);
            w.u64(opt::CONFIG_VERSION, l.config_version);
            w.flag(opt::QUORATE, l.quorate);
            for node in &l.nodes {
                w.node_info(node);
            }
            w.heuristics(l.heuristics);
        }
        Message::NodeListReply(r) => {
            w.u32(opt::MSG_SEQ_NUMBER, r.seq);
            w.node_list_type(r.list_type);
            w.ring_id(r.ring_id);
            w.vote(r.vote);
        }
        Message::AskForVoteReply(r) => {
            w.u32(opt::MSG_SEQ_NUMBER, r.seq);
            w.vote(r.vote);
            w.ring_id(r.ring_id);
        }
        Message::VoteInfo(v) => {
            w.u32(opt::MSG_SEQ_NUMBER, v.seq);
            w.vote(v.vote);
            w.ring_id(v.ring_id);
        }
        Message::HeuristicsChange(h) => {
            w.u32(opt::MSG_SEQ_NUMBER, h.seq);
            w.heuristics(h.heuristics);
        }
        Message::HeuristicsChangeReply(h) => {
            w.u32(opt::MSG_SEQ_NUMBER, h.seq);
            w.vote(h.vote);
            w.ring_id(h.ring_id);
            w.heuristics(h.heuristics);
        }
    }
}

/// Appends the whole message `m` (header and body) to `out`.
///
/// If `m` cannot be represented on the wire (an option value over 65535
/// bytes, such as a huge cluster name, or a body over 4 GiB), nothing is
/// appended and the error is returned: `out` is left exactly as it was, so
/// a truncated or partial message can never be sent.
pub fn try_encode(m: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&(m.msg_type() as u16).to_be_bytes());
    out.extend_from_slice(&[0; 4]); // body length, patched below
    let mut writer = TlvWriter {
        out: &mut *out,
        error: None,
    };
    write_body(m, &mut writer);
    let error = writer.error;
    let body_len = out.len() - start - HEADER_LEN;
    let result = match (error, u32::try_from(body_len)) {
        (Some(e), _) => Err(e),
        (None, Err(_)) => Err(EncodeError::BodyTooLong { len: body_len }),
        (None, Ok(len)) => {
            let length_field = start + 2..start + HEADER_LEN;
            if let Some(field) = out.get_mut(length_field) {
                field.copy_from_slice(&len.to_be_bytes());
            }
            Ok(())
        }
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends the whole message `m` (header and body) to `out`.
///
/// Infallible form of [`try_encode`], used by [`Message::encode`]. A message
/// that cannot be represented on the wire (see [`try_encode`]) appends
/// nothing and is logged as an error; it never truncates a value or drops a
/// single option. Messages the server sends cannot hit this: their only
/// variable-length values are the fixed supported lists of INIT_REPLY.
/// Code that builds messages from untrusted sizes should call
/// [`try_encode`] instead.
pub(super) fn encode(m: &Message, out: &mut Vec<u8>) {
    if let Err(e) = try_encode(m, out) {
        tracing::error!(msg_type = m.msg_type().name(), "cannot encode message: {e}");
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

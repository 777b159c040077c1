//! The qdevice-net wire protocol: framing, TLV options and typed messages.
//!
//! Pure code: bytes in, typed messages out, typed errors; no sockets and no
//! async. A message is a 6-byte header (u16 type, u32 body length, both
//! big-endian) followed by a body of TLVs (u16 option type, u16 length,
//! value). See `docs/protocol-notes.md` and the reference summary for the
//! meaning of every field.

mod codec;
mod error;

pub use codec::{decode, decode_fields, echo_reply_from_request, try_encode, Fields};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};

pub use qnetd_algorithms::{
    AlgorithmKind, Heuristics, NodeId, NodeInfo, NodeState, RingId, TieBreaker, Vote,
};

/// Size of the message header.
pub const HEADER_LEN: usize = 6;

/// Message types (`enum msg_type` of the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MsgType {
    Preinit = 0,
    PreinitReply = 1,
    StartTls = 2,
    Init = 3,
    InitReply = 4,
    ServerError = 5,
    SetOption = 6,
    SetOptionReply = 7,
    EchoRequest = 8,
    EchoReply = 9,
    NodeList = 10,
    NodeListReply = 11,
    AskForVote = 12,
    AskForVoteReply = 13,
    VoteInfo = 14,
    VoteInfoReply = 15,
    HeuristicsChange = 16,
    HeuristicsChangeReply = 17,
}

impl MsgType {
    /// Every type, in code order (the server advertises this list).
    pub const ALL: [MsgType; 18] = [
        MsgType::Preinit,
        MsgType::PreinitReply,
        MsgType::StartTls,
        MsgType::Init,
        MsgType::InitReply,
        MsgType::ServerError,
        MsgType::SetOption,
        MsgType::SetOptionReply,
        MsgType::EchoRequest,
        MsgType::EchoReply,
        MsgType::NodeList,
        MsgType::NodeListReply,
        MsgType::AskForVote,
        MsgType::AskForVoteReply,
        MsgType::VoteInfo,
        MsgType::VoteInfoReply,
        MsgType::HeuristicsChange,
        MsgType::HeuristicsChangeReply,
    ];

    pub fn from_u16(v: u16) -> Option<MsgType> {
        MsgType::ALL.get(usize::from(v)).copied()
    }

    /// Whether clients send this type (the others are server-to-client).
    pub fn is_client_to_server(self) -> bool {
        matches!(
            self,
            MsgType::Preinit
                | MsgType::StartTls
                | MsgType::Init
                | MsgType::SetOption
                | MsgType::EchoRequest
                | MsgType::NodeList
                | MsgType::AskForVote
                | MsgType::VoteInfoReply
                | MsgType::HeuristicsChange
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            MsgType::Preinit => "PREINIT",
            MsgType::PreinitReply => "PREINIT_REPLY",
            MsgType::StartTls => "STARTTLS",
            MsgType::Init => "INIT",
            MsgType::InitReply => "INIT_REPLY",
            MsgType::ServerError => "SERVER_ERROR",
            MsgType::SetOption => "SET_OPTION",
            MsgType::SetOptionReply => "SET_OPTION_REPLY",
            MsgType::EchoRequest => "ECHO_REQUEST",
            MsgType::EchoReply => "ECHO_REPLY",
            MsgType::NodeList => "NODE_LIST",
            MsgType::NodeListReply => "NODE_LIST_REPLY",
            MsgType::AskForVote => "ASK_FOR_VOTE",
            MsgType::AskForVoteReply => "ASK_FOR_VOTE_REPLY",
            MsgType::VoteInfo => "VOTE_INFO",
            MsgType::VoteInfoReply => "VOTE_INFO_REPLY",
            MsgType::HeuristicsChange => "HEURISTICS_CHANGE",
            MsgType::HeuristicsChangeReply => "HEURISTICS_CHANGE_REPLY",
        }
    }
}

/// A parsed message header. The type is kept raw: an unknown type is a
/// protocol-level error the caller answers, not a decode failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub msg_type: u16,
    /// Body length (bytes after the header).
    pub length: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            msg_type: u16::from_be_bytes([b[0], b[1]]),
            length: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
        }
    }

    /// Header plus body.
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.length)
    }
}

/// TLV option types (`enum tlv_opt_type`).
pub mod opt {
    pub const MSG_SEQ_NUMBER: u16 = 0;
    pub const CLUSTER_NAME: u16 = 1;
    pub const TLS_SUPPORTED: u16 = 2;
    pub const TLS_CLIENT_CERT_REQUIRED: u16 = 3;
    pub const SUPPORTED_MESSAGES: u16 = 4;
    pub const SUPPORTED_OPTIONS: u16 = 5;
    pub const REPLY_ERROR_CODE: u16 = 6;
    pub const SERVER_MAXIMUM_REQUEST_SIZE: u16 = 7;
    pub const SERVER_MAXIMUM_REPLY_SIZE: u16 = 8;
    pub const NODE_ID: u16 = 9;
    pub const SUPPORTED_DECISION_ALGORITHMS: u16 = 10;
    pub const DECISION_ALGORITHM: u16 = 11;
    pub const HEARTBEAT_INTERVAL: u16 = 12;
    pub const RING_ID: u16 = 13;
    pub const CONFIG_VERSION: u16 = 14;
    pub const DATA_CENTER_ID: u16 = 15;
    pub const NODE_STATE: u16 = 16;
    pub const NODE_INFO: u16 = 17;
    pub const NODE_LIST_TYPE: u16 = 18;
    pub const VOTE: u16 = 19;
    pub const QUORATE: u16 = 20;
    pub const TIE_BREAKER: u16 = 21;
    pub const HEURISTICS: u16 = 22;
    pub const KEEP_ACTIVE_PARTITION_TIE_BREAKER: u16 = 23;
    /// Number of option types the server knows (0..=23).
    pub const COUNT: u16 = 24;
}

/// REPLY_ERROR_CODE values. Any u16 may appear on the wire, so this is a
/// newtype with named constants rather than a closed enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    pub const NO_ERROR: ErrorCode = ErrorCode(0);
    pub const UNSUPPORTED_NEEDED_MESSAGE: ErrorCode = ErrorCode(1);
    pub const UNSUPPORTED_NEEDED_OPTION: ErrorCode = ErrorCode(2);
    pub const TLS_REQUIRED: ErrorCode = ErrorCode(3);
    pub const UNSUPPORTED_MESSAGE: ErrorCode = ErrorCode(4);
    pub const MESSAGE_TOO_LONG: ErrorCode = ErrorCode(5);
    pub const PREINIT_REQUIRED: ErrorCode = ErrorCode(6);
    pub const DOESNT_CONTAIN_REQUIRED_OPTION: ErrorCode = ErrorCode(7);
    pub const UNEXPECTED_MESSAGE: ErrorCode = ErrorCode(8);
    pub const ERROR_DECODING_MSG: ErrorCode = ErrorCode(9);
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(10);
    pub const INIT_REQUIRED: ErrorCode = ErrorCode(11);
    pub const UNSUPPORTED_DECISION_ALGORITHM: ErrorCode = ErrorCode(12);
    pub const INVALID_HEARTBEAT_INTERVAL: ErrorCode = ErrorCode(13);
    pub const UNSUPPORTED_DECISION_ALGORITHM_MESSAGE: ErrorCode = ErrorCode(14);
    pub const TIE_BREAKER_DIFFERS_FROM_OTHER_NODES: ErrorCode = ErrorCode(15);
    pub const ALGORITHM_DIFFERS_FROM_OTHER_NODES: ErrorCode = ErrorCode(16);
    pub const DUPLICATE_NODE_ID: ErrorCode = ErrorCode(17);
    pub const INVALID_CONFIG_NODE_LIST: ErrorCode = ErrorCode(18);
    pub const INVALID_MEMBERSHIP_NODE_LIST: ErrorCode = ErrorCode(19);

    /// Short symbolic name, for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "no_error",
            1 => "unsupported_needed_message",
            2 => "unsupported_needed_option",
            3 => "tls_required",
            4 => "unsupported_message",
            5 => "message_too_long",
            6 => "preinit_required",
            7 => "doesnt_contain_required_option",
            8 => "unexpected_message",
            9 => "error_decoding_msg",
            10 => "internal_error",
            11 => "init_required",
            12 => "unsupported_decision_algorithm",
            13 => "invalid_heartbeat_interval",
            14 => "unsupported_decision_algorithm_message",
            15 => "tie_breaker_differs_from_other_nodes",
            16 => "algorithm_differs_from_other_nodes",
            17 => "duplicate_node_id",
            18 => "invalid_config_node_list",
            19 => "invalid_membership_node_list",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// TLS_SUPPORTED values: what the server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsSupported {
    Unsupported = 0,
    Supported = 1,
    Required = 2,
}

impl TlsSupported {
    pub fn from_u8(v: u8) -> Option<TlsSupported> {
        Some(match v {
            0 => TlsSupported::Unsupported,
            1 => TlsSupported::Supported,
            2 => TlsSupported::Required,
            _ => return None,
        })
    }
}

/// NODE_LIST_TYPE values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeListType {
    InitialConfig = 0,
    ChangedConfig = 1,
    Membership = 2,
    Quorum = 3,
}

impl NodeListType {
    pub fn from_u8(v: u8) -> Option<NodeListType> {
        Some(match v {
            0 => NodeListType::InitialConfig,
            1 => NodeListType::ChangedConfig,
            2 => NodeListType::Membership,
            3 => NodeListType::Quorum,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------
// Typed messages. Every option is an `Option`: a decoded message may lack
// options its type requires (the server answers that with error 7), and the
// encoder writes exactly the options that are `Some`, in the order the
// reference server emits them.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preinit {
    pub seq: Option<u32>,
    pub cluster_name: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreinitReply {
    pub seq: Option<u32>,
    pub tls_supported: Option<TlsSupported>,
    pub tls_client_cert_required: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartTls {
    pub seq: Option<u32>,
}

/// Emission order: seq, supported messages, supported options, node id,
/// decision algorithm, heartbeat interval, tie-breaker, ring id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Init {
    pub seq: Option<u32>,
    pub supported_messages: Option<Vec<u16>>,
    pub supported_options: Option<Vec<u16>>,
    pub node_id: Option<u32>,
    /// Raw value: the range is checked by the server, not the decoder.
    pub decision_algorithm: Option<u16>,
    pub heartbeat_interval: Option<u32>,
    pub tie_breaker: Option<TieBreaker>,
    pub ring_id: Option<RingId>,
}

/// Emission order: error code, supported messages, supported options, seq,
/// max request size, max reply size, supported algorithms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitReply {
    pub error_code: Option<ErrorCode>,
    pub supported_messages: Option<Vec<u16>>,
    pub supported_options: Option<Vec<u16>>,
    pub seq: Option<u32>,
    pub server_max_request_size: Option<u32>,
    pub server_max_reply_size: Option<u32>,
    pub supported_algorithms: Option<Vec<u16>>,
}

/// Emission order: seq, error code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerError {
    pub seq: Option<u32>,
    pub error_code: Option<ErrorCode>,
}

/// Used for SET_OPTION and SET_OPTION_REPLY. Emission order: seq, heartbeat
/// interval, keep-active-partition tie-breaker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOption {
    pub seq: Option<u32>,
    pub heartbeat_interval: Option<u32>,
    pub kap: Option<bool>,
}

/// Used for ECHO_REQUEST and ECHO_REPLY.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Echo {
    pub seq: Option<u32>,
}

/// Emission order: seq, list type, ring id, config version, quorate, one
/// NODE_INFO per node, heuristics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeList {
    pub seq: Option<u32>,
    pub list_type: Option<NodeListType>,
    pub ring_id: Option<RingId>,
    pub config_version: Option<u64>,
    pub quorate: Option<bool>,
    pub nodes: Vec<NodeInfo>,
    pub heuristics: Option<Heuristics>,
}

/// Emission order: seq, list type, ring id, vote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeListReply {
    pub seq: Option<u32>,
    pub list_type: Option<NodeListType>,
    pub ring_id: Option<RingId>,
    pub vote: Option<Vote>,
}

/// Used for ASK_FOR_VOTE and VOTE_INFO_REPLY (seq only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqOnly {
    pub seq: Option<u32>,
}

/// Emission order: seq, vote, ring id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AskForVoteReply {
    pub seq: Option<u32>,
    pub vote: Option<Vote>,
    pub ring_id: Option<RingId>,
}

/// Emission order: seq, vote, ring id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoteInfo {
    pub seq: Option<u32>,
    pub vote: Option<Vote>,
    pub ring_id: Option<RingId>,
}

/// Emission order: seq, heuristics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeuristicsChange {
    pub seq: Option<u32>,
    pub heuristics: Option<Heuristics>,
}

/// Emission order: seq, vote, ring id, heuristics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeuristicsChangeReply {
    pub seq: Option<u32>,
    pub vote: Option<Vote>,
    pub ring_id: Option<RingId>,
    pub heuristics: Option<Heuristics>,
}

/// A typed message of any of the 18 types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Preinit(Preinit),
    PreinitReply(PreinitReply),
    StartTls(StartTls),
    Init(Init),
    InitReply(InitReply),
    ServerError(ServerError),
    SetOption(SetOption),
    SetOptionReply(SetOption),
    EchoRequest(Echo),
    EchoReply(Echo),
    NodeList(NodeList),
    NodeListReply(NodeListReply),
    AskForVote(SeqOnly),
    AskForVoteReply(AskForVoteReply),
    VoteInfo(VoteInfo),
    VoteInfoReply(SeqOnly),
    HeuristicsChange(HeuristicsChange),
    HeuristicsChangeReply(HeuristicsChangeReply),
}

impl Message {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Preinit(_) => MsgType::Preinit,
            Message::PreinitReply(_) => MsgType::PreinitReply,
            Message::StartTls(_) => MsgType::StartTls,
            Message::Init(_) => MsgType::Init,
            Message::InitReply(_) => MsgType::InitReply,
            Message::ServerError(_) => MsgType::ServerError,
            Message::SetOption(_) => MsgType::SetOption,
            Message::SetOptionReply(_) => MsgType::SetOptionReply,
            Message::EchoRequest(_) => MsgType::EchoRequest,
            Message::EchoReply(_) => MsgType::EchoReply,
            Message::NodeList(_) => MsgType::NodeList,
            Message::NodeListReply(_) => MsgType::NodeListReply,
            Message::AskForVote(_) => MsgType::AskForVote,
            Message::AskForVoteReply(_) => MsgType::AskForVoteReply,
            Message::VoteInfo(_) => MsgType::VoteInfo,
            Message::VoteInfoReply(_) => MsgType::VoteInfoReply,
            Message::HeuristicsChange(_) => MsgType::HeuristicsChange,
            Message::HeuristicsChangeReply(_) => MsgType::HeuristicsChangeReply,
        }
    }

    /// The sequence number, if the message carries one.
    pub fn seq(&self) -> Option<u32> {
        match self {
            Message::Preinit(m) => m.seq,
            Message::PreinitReply(m) => m.seq,
            Message::StartTls(m) => m.seq,
            Message::Init(m) => m.seq,
            Message::InitReply(m) => m.seq,
            Message::ServerError(m) => m.seq,
            Message::SetOption(m) | Message::SetOptionReply(m) => m.seq,
            Message::EchoRequest(m) | Message::EchoReply(m) => m.seq,
            Message::NodeList(m) => m.seq,
            Message::NodeListReply(m) => m.seq,
            Message::AskForVote(m) | Message::VoteInfoReply(m) => m.seq,
            Message::AskForVoteReply(m) => m.seq,
            Message::VoteInfo(m) => m.seq,
            Message::HeuristicsChange(m) => m.seq,
            Message::HeuristicsChangeReply(m) => m.seq,
        }
    }

    /// Appends the whole message (header and body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::encode(self, out)
    }

    /// The whole message as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }
}

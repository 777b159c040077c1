//! Tests of the wire codec: byte-exact checks against the captured hex dumps
//! of the reference server, round trips of every message type, every decode
//! rule and range check, and a no-panic sweep over garbage input.

use super::*;
use crate::wire::{AlgorithmKind, Header, HeuristicsChangeReply, VoteInfo, HEADER_LEN};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Parses a hex dump; spaces and `|` separators are ignored.
fn hex(dump: &str) -> Vec<u8> {
    let digits: Vec<u8> = dump
        .bytes()
        .filter(|b| b.is_ascii_hexdigit())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        })
        .collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// One TLV.
fn tlv(option: u16, value: &[u8]) -> Vec<u8> {
    let len = u16::try_from(value.len()).expect("test TLV too long");
    let mut v = option.to_be_bytes().to_vec();
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn seq_tlv(seq: u32) -> Vec<u8> {
    tlv(opt::MSG_SEQ_NUMBER, &seq.to_be_bytes())
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Splits a whole message into its parsed header and its body, checking the
/// header's length field.
fn split(msg: &[u8]) -> (Header, &[u8]) {
    let head: &[u8; HEADER_LEN] = msg.first_chunk().expect("message shorter than a header");
    let header = Header::parse(head);
    let body = &msg[HEADER_LEN..];
    assert_eq!(header.length as usize, body.len(), "header length field");
    (header, body)
}

/// The option types of a body, in order (panics on malformed input).
fn option_types(mut body: &[u8]) -> Vec<u16> {
    let mut types = Vec::new();
    while !body.is_empty() {
        let t = u16::from_be_bytes([body[0], body[1]]);
        let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
        types.push(t);
        body = &body[4 + len..];
    }
    types
}

/// The value of the first TLV of type `option` in `body`.
fn option_value(mut body: &[u8], option: u16) -> Option<Vec<u8>> {
    while !body.is_empty() {
        let t = u16::from_be_bytes([body[0], body[1]]);
        let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
        if t == option {
            return Some(body[4..4 + len].to_vec());
        }
        body = &body[4 + len..];
    }
    None
}

/// Checks one captured dump both ways: decode gives `expected`, encoding
/// `expected` gives the dump.
fn check_exact(dump: &str, expected: Message) {
    let bytes = hex(dump);
    let (header, body) = split(&bytes);
    assert_eq!(header.msg_type, expected.msg_type() as u16);
    let t = MsgType::from_u16(header.msg_type).expect("known type");
    assert_eq!(decode(t, body), Ok(expected.clone()));
    assert_eq!(expected.to_bytes(), bytes, "encoding of {expected:?}");
}

fn err(kind: DecodeErrorKind, seq: Option<u32>, option: Option<u16>) -> DecodeError {
    DecodeError { kind, seq, option }
}

/// Decoding `value` as option `option`, preceded by seq 7.
fn decode_one(option: u16, value: &[u8]) -> Result<Fields, DecodeError> {
    decode_fields(&cat(&[seq_tlv(7), tlv(option, value)]))
}

/// Asserts that option `option` with `value` is rejected with `kind`, the
/// preceding seq echoed, and the option named.
fn assert_rejected(option: u16, value: &[u8], kind: DecodeErrorKind) {
    assert_eq!(
        decode_one(option, value),
        Err(err(kind, Some(7), Some(option))),
        "option {option} value {value:?}"
    );
}

fn all_messages() -> Vec<u16> {
    (0..18).collect()
}

fn all_options() -> Vec<u16> {
    (0..24).collect()
}

/// One message of each of the 18 types with every option populated.
fn full_messages() -> Vec<Message> {
    let ring = RingId::new(0x0102_0304, 0x0a00_0000_0002_1b40);
    let nodes = vec![
        NodeInfo {
            node_id: 1,
            data_center_id: 0,
            state: None,
        },
        NodeInfo {
            node_id: 2,
            data_center_id: 7,
            state: Some(NodeState::Member),
        },
        NodeInfo {
            node_id: u32::MAX,
            data_center_id: 0,
            state: Some(NodeState::Leaving),
        },
        NodeInfo {
            node_id: 4,
            data_center_id: 3,
            state: Some(NodeState::Dead),
        },
    ];
    vec![
        Message::Preinit(Preinit {
            seq: Some(1),
            cluster_name: Some(b"my\0cluster".to_vec()),
        }),
        Message::PreinitReply(PreinitReply {
            seq: Some(2),
            tls_supported: Some(TlsSupported::Required),
            tls_client_cert_required: Some(true),
        }),
        Message::StartTls(StartTls { seq: Some(3) }),
        Message::Init(Init {
            seq: Some(4),
            supported_messages: Some(all_messages()),
            supported_options: Some(all_options()),
            node_id: Some(5),
            decision_algorithm: Some(AlgorithmKind::Lms as u16),
            heartbeat_interval: Some(8000),
            tie_breaker: Some(TieBreaker::NodeId(9)),
            ring_id: Some(ring),
        }),
        Message::InitReply(InitReply {
            error_code: Some(ErrorCode::DUPLICATE_NODE_ID),
            supported_messages: Some(all_messages()),
            supported_options: Some(all_options()),
            seq: Some(5),
            server_max_request_size: Some(32768),
            server_max_reply_size: Some(1 << 24),
            supported_algorithms: Some(vec![0, 1, 2, 3]),
        }),
        Message::ServerError(ServerError {
            seq: Some(6),
            error_code: Some(ErrorCode::ERROR_DECODING_MSG),
        }),
        Message::SetOption(SetOption {
            seq: Some(7),
            heartbeat_interval: Some(10_000),
            kap: Some(true),
        }),
        Message::SetOptionReply(SetOption {
            seq: Some(8),
            heartbeat_interval: Some(12_000),
            kap: Some(false),
        }),
        Message::EchoRequest(Echo { seq: Some(9) }),
        Message::EchoReply(Echo { seq: Some(10) }),
        Message::NodeList(NodeList {
            seq: Some(11),
            list_type: Some(NodeListType::Quorum),
            ring_id: Some(ring),
            config_version: Some(u64::MAX - 1),
            quorate: Some(true),
            nodes,
            heuristics: Some(Heuristics::Fail),
        }),
        Message::NodeListReply(NodeListReply {
            seq: Some(12),
            list_type: Some(NodeListType::Membership),
            ring_id: Some(ring),
            vote: Some(Vote::WaitForReply),
        }),
        Message::AskForVote(SeqOnly { seq: Some(13) }),
        Message::AskForVoteReply(AskForVoteReply {
            seq: Some(14),
            vote: Some(Vote::Nack),
            ring_id: Some(ring),
        }),
        Message::VoteInfo(VoteInfo {
            seq: Some(15),
            vote: Some(Vote::NoChange),
            ring_id: Some(ring),
        }),
        Message::VoteInfoReply(SeqOnly {
            seq: Some(u32::MAX),
        }),
        Message::HeuristicsChange(HeuristicsChange {
            seq: Some(17),
            heuristics: Some(Heuristics::Pass),
        }),
        Message::HeuristicsChangeReply(HeuristicsChangeReply {
            seq: Some(18),
            vote: Some(Vote::Ack),
            ring_id: Some(ring),
            heuristics: Some(Heuristics::Fail),
        }),
    ]
}

// ---------------------------------------------------------------------------
// Captured dumps of the reference server (protocol summary §1.6)
// ---------------------------------------------------------------------------

#[test]
fn dump_preinit() {
    check_exact(
        "0000 00000015 | 0000 0004 00000001 | 0001 0009 6d79636c7573746572",
        Message::Preinit(Preinit {
            seq: Some(1),
            cluster_name: Some(b"mycluster".to_vec()),
        }),
    );
}

#[test]
fn dump_preinit_reply() {
    check_exact(
        "0001 00000012 | 0000 0004 00000001 | 0002 0001 00 | 0003 0001 01",
        Message::PreinitReply(PreinitReply {
            seq: Some(1),
            tls_supported: Some(TlsSupported::Unsupported),
            tls_client_cert_required: Some(true),
        }),
    );
}

#[test]
fn dump_server_error_with_seq() {
    check_exact(
        "0005 0000000e | 0000 0004 00000005 | 0006 0002 000d",
        Message::ServerError(ServerError {
            seq: Some(5),
            error_code: Some(ErrorCode::INVALID_HEARTBEAT_INTERVAL),
        }),
    );
}

#[test]
fn dump_server_error_without_seq() {
    check_exact(
        "0005 00000006 | 0006 0002 0004",
        Message::ServerError(ServerError {
            seq: None,
            error_code: Some(ErrorCode::UNSUPPORTED_MESSAGE),
        }),
    );
}

#[test]
fn dump_node_list_reply() {
    check_exact(
        "000b 00000022 | 0000 0004 00000006 | 0012 0001 00 \
         | 000d 000c 00000001 0000000000000004 | 0013 0001 03",
        Message::NodeListReply(NodeListReply {
            seq: Some(6),
            list_type: Some(NodeListType::InitialConfig),
            ring_id: Some(RingId::new(1, 4)),
            vote: Some(Vote::AskLater),
        }),
    );
}

#[test]
fn dump_vote_info() {
    check_exact(
        "000e 0000001d | 0000 0004 00000001 | 0013 0001 01 \
         | 000d 000c 00000001 0000000000000008",
        Message::VoteInfo(VoteInfo {
            seq: Some(1),
            vote: Some(Vote::Ack),
            ring_id: Some(RingId::new(1, 8)),
        }),
    );
}

#[test]
fn dump_echo_reply() {
    let reply = "0009 00000008 | 0000 0004 00000001";
    check_exact(reply, Message::EchoReply(Echo { seq: Some(1) }));
    let request = hex("0008 00000008 | 0000 0004 00000001");
    assert_eq!(echo_reply_from_request(&request), hex(reply));
}

#[test]
fn dump_init_reply_140_bytes() {
    let dump = "0004 00000086 \
        0006 0002 0000 \
        0004 0024 0000 0001 0002 0003 0004 0005 0006 0007 0008 0009 000a 000b \
                  000c 000d 000e 000f 0010 0011 \
        0005 0030 0000 0001 0002 0003 0004 0005 0006 0007 0008 0009 000a 000b \
                  000c 000d 000e 000f 0010 0011 0012 0013 0014 0015 0016 0017 \
        0000 0004 00000002 \
        0007 0004 00008000 \
        0008 0004 00008000 \
        000a 0008 0000 0001 0002 0003";
    assert_eq!(hex(dump).len(), 140);
    check_exact(
        dump,
        Message::InitReply(InitReply {
            error_code: Some(ErrorCode::NO_ERROR),
            supported_messages: Some(MsgType::ALL.iter().map(|t| *t as u16).collect()),
            supported_options: Some((0..opt::COUNT).collect()),
            seq: Some(2),
            server_max_request_size: Some(32768),
            server_max_reply_size: Some(32768),
            supported_algorithms: Some(AlgorithmKind::ALL.iter().map(|a| *a as u16).collect()),
        }),
    );
}

// ---------------------------------------------------------------------------
// Round trips and emission order
// ---------------------------------------------------------------------------

#[test]
fn full_messages_cover_every_type() {
    let types: Vec<MsgType> = full_messages().iter().map(Message::msg_type).collect();
    assert_eq!(types, MsgType::ALL.to_vec());
}

#[test]
fn round_trip_every_type_with_all_options() {
    for m in full_messages() {
        let bytes = m.to_bytes();
        let (header, body) = split(&bytes);
        assert_eq!(header.msg_type, m.msg_type() as u16);
        assert_eq!(
            decode(m.msg_type(), body),
            Ok(m.clone()),
            "{}",
            m.msg_type().name()
        );
    }
}

#[test]
fn round_trip_every_type_with_no_options_but_seq() {
    // A body with only seq decodes to every type with its other options None.
    for t in MsgType::ALL {
        let m = decode(t, &seq_tlv(42)).expect("seq-only body decodes");
        assert_eq!(m.msg_type(), t);
        assert_eq!(m.seq(), Some(42));
        let expected = cat(&[vec![0, t as u8, 0, 0, 0, 8], seq_tlv(42)]);
        assert_eq!(m.to_bytes(), expected, "{}", t.name());
    }
}

#[test]
fn round_trip_tie_breakers_and_node_variants() {
    for tb in [
        TieBreaker::Lowest,
        TieBreaker::Highest,
        TieBreaker::NodeId(0),
        TieBreaker::NodeId(u32::MAX),
    ] {
        let m = Message::Init(Init {
            seq: Some(1),
            tie_breaker: Some(tb),
            ..Init::default()
        });
        let bytes = m.to_bytes();
        let (_, body) = split(&bytes);
        assert_eq!(decode(MsgType::Init, body), Ok(m));
        let value = option_value(body, opt::TIE_BREAKER).expect("tie-breaker emitted");
        let mut expected = vec![tb.mode()];
        expected.extend_from_slice(&tb.wire_node_id().to_be_bytes());
        assert_eq!(value, expected);
    }
    // Empty node list and empty arrays survive a round trip.
    let m = Message::NodeList(NodeList {
        seq: Some(1),
        list_type: Some(NodeListType::Membership),
        ..NodeList::default()
    });
    let bytes = m.to_bytes();
    assert_eq!(decode(MsgType::NodeList, split(&bytes).1), Ok(m));
    let m = Message::InitReply(InitReply {
        error_code: Some(ErrorCode(0xffff)),
        supported_messages: Some(vec![]),
        supported_options: Some(vec![]),
        supported_algorithms: Some(vec![]),
        ..InitReply::default()
    });
    let bytes = m.to_bytes();
    assert_eq!(decode(MsgType::InitReply, split(&bytes).1), Ok(m));
}

#[test]
fn emission_order_of_every_type() {
    use opt::*;
    let expected: [&[u16]; 18] = [
        &[MSG_SEQ_NUMBER, CLUSTER_NAME],
        &[MSG_SEQ_NUMBER, TLS_SUPPORTED, TLS_CLIENT_CERT_REQUIRED],
        &[MSG_SEQ_NUMBER],
        &[
            MSG_SEQ_NUMBER,
            SUPPORTED_MESSAGES,
            SUPPORTED_OPTIONS,
            NODE_ID,
            DECISION_ALGORITHM,
            HEARTBEAT_INTERVAL,
            TIE_BREAKER,
            RING_ID,
        ],
        &[
            REPLY_ERROR_CODE,
            SUPPORTED_MESSAGES,
            SUPPORTED_OPTIONS,
            MSG_SEQ_NUMBER,
            SERVER_MAXIMUM_REQUEST_SIZE,
            SERVER_MAXIMUM_REPLY_SIZE,
            SUPPORTED_DECISION_ALGORITHMS,
        ],
        &[MSG_SEQ_NUMBER, REPLY_ERROR_CODE],
        &[
            MSG_SEQ_NUMBER,
            HEARTBEAT_INTERVAL,
            KEEP_ACTIVE_PARTITION_TIE_BREAKER,
        ],
        &[
            MSG_SEQ_NUMBER,
            HEARTBEAT_INTERVAL,
            KEEP_ACTIVE_PARTITION_TIE_BREAKER,
        ],
        &[MSG_SEQ_NUMBER],
        &[MSG_SEQ_NUMBER],
        &[
            MSG_SEQ_NUMBER,
            NODE_LIST_TYPE,
            RING_ID,
            CONFIG_VERSION,
            QUORATE,
            NODE_INFO,
            NODE_INFO,
            NODE_INFO,
            NODE_INFO,
            HEURISTICS,
        ],
        &[MSG_SEQ_NUMBER, NODE_LIST_TYPE, RING_ID, VOTE],
        &[MSG_SEQ_NUMBER],
        &[MSG_SEQ_NUMBER, VOTE, RING_ID],
        &[MSG_SEQ_NUMBER, VOTE, RING_ID],
        &[MSG_SEQ_NUMBER],
        &[MSG_SEQ_NUMBER, HEURISTICS],
        &[MSG_SEQ_NUMBER, VOTE, RING_ID, HEURISTICS],
    ];
    for (m, order) in full_messages().iter().zip(expected) {
        let bytes = m.to_bytes();
        assert_eq!(
            option_types(split(&bytes).1),
            order,
            "{}",
            m.msg_type().name()
        );
    }
}

#[test]
fn node_info_encoding_is_byte_exact() {
    let m = Message::NodeList(NodeList {
        seq: Some(5),
        list_type: Some(NodeListType::Quorum),
        quorate: Some(false),
        nodes: vec![
            NodeInfo::new(1),
            NodeInfo {
                node_id: 2,
                data_center_id: 9,
                state: None,
            },
            NodeInfo {
                node_id: 3,
                data_center_id: 0,
                state: Some(NodeState::Dead),
            },
        ],
        ..NodeList::default()
    });
    let expected = hex("000a 00000043 \
         0000 0004 00000005 | 0012 0001 03 | 0014 0001 00 \
         | 0011 0008 0009 0004 00000001 \
         | 0011 0010 0009 0004 00000002 000f 0004 00000009 \
         | 0011 000d 0009 0004 00000003 0010 0001 02");
    assert_eq!(m.to_bytes(), expected);
    assert_eq!(decode(MsgType::NodeList, split(&expected).1), Ok(m));
}

#[test]
fn undefined_heuristics_is_not_emitted() {
    let m = Message::HeuristicsChangeReply(HeuristicsChangeReply {
        seq: Some(1),
        heuristics: Some(Heuristics::Undefined),
        ..HeuristicsChangeReply::default()
    });
    assert_eq!(m.to_bytes(), hex("0011 00000008 0000 0004 00000001"));
}

#[test]
fn encode_appends_without_touching_existing_bytes() {
    let mut out = vec![0xaa, 0xbb];
    Message::EchoReply(Echo { seq: Some(1) }).encode(&mut out);
    assert_eq!(out, hex("aabb 0009 00000008 0000 0004 00000001"));
    // A message with no options is a bare header.
    assert_eq!(
        Message::StartTls(StartTls::default()).to_bytes(),
        hex("0002 00000000")
    );
}

// ---------------------------------------------------------------------------
// Values that do not fit on the wire
// ---------------------------------------------------------------------------

#[test]
fn largest_cluster_name_encodes() {
    let name = vec![b'x'; 65535];
    let m = Message::Preinit(Preinit {
        seq: Some(1),
        cluster_name: Some(name),
    });
    let bytes = m.to_bytes();
    assert_eq!(bytes.len(), HEADER_LEN + 8 + 4 + 65535);
    assert_eq!(decode(MsgType::Preinit, split(&bytes).1), Ok(m));
}

#[test]
fn oversized_cluster_name_is_refused_whole() {
    let m = Message::Preinit(Preinit {
        seq: Some(1),
        cluster_name: Some(vec![b'x'; 65536]),
    });
    let mut out = vec![1, 2, 3];
    assert_eq!(
        try_encode(&m, &mut out),
        Err(EncodeError::ValueTooLong {
            option: opt::CLUSTER_NAME,
            len: 65536
        })
    );
    assert_eq!(out, [1, 2, 3], "nothing appended on error");
    // The infallible form appends nothing either: never a partial message.
    m.encode(&mut out);
    assert_eq!(out, [1, 2, 3]);
    assert!(m.to_bytes().is_empty());
}

#[test]
fn oversized_u16_array_is_refused_whole() {
    let fits = Message::Init(Init {
        seq: Some(1),
        supported_options: Some(vec![7; 32767]),
        ..Init::default()
    });
    assert!(try_encode(&fits, &mut Vec::new()).is_ok());
    let too_big = Message::Init(Init {
        seq: Some(1),
        supported_options: Some(vec![7; 32768]),
        node_id: Some(3),
        ..Init::default()
    });
    let mut out = Vec::new();
    assert_eq!(
        try_encode(&too_big, &mut out),
        Err(EncodeError::ValueTooLong {
            option: opt::SUPPORTED_OPTIONS,
            len: 65536
        })
    );
    assert!(out.is_empty());
}

#[test]
fn try_encode_matches_encode() {
    for m in full_messages() {
        let mut out = Vec::new();
        assert_eq!(try_encode(&m, &mut out), Ok(()));
        assert_eq!(out, m.to_bytes());
    }
}

// ---------------------------------------------------------------------------
// Decoding rules (§2.2)
// ---------------------------------------------------------------------------

#[test]
fn empty_body_is_an_error() {
    assert_eq!(
        decode_fields(&[]),
        Err(err(DecodeErrorKind::EmptyBody, None, None))
    );
    for t in MsgType::ALL {
        assert!(decode(t, &[]).is_err());
    }
}

#[test]
fn tlv_running_past_the_end_is_an_error() {
    // Declared 5 bytes, 2 present.
    let body = cat(&[seq_tlv(3), hex("0001 0005 6162")]);
    assert_eq!(
        decode_fields(&body),
        Err(err(
            DecodeErrorKind::Truncated,
            Some(3),
            Some(opt::CLUSTER_NAME)
        ))
    );
    // Without a seq before it, none is echoed.
    assert_eq!(
        decode_fields(&hex("0000 0004 000000")),
        Err(err(
            DecodeErrorKind::Truncated,
            None,
            Some(opt::MSG_SEQ_NUMBER)
        ))
    );
    // An unknown option running past the end is an error too.
    assert_eq!(
        decode_fields(&cat(&[seq_tlv(3), hex("1234 ffff 00")])),
        Err(err(DecodeErrorKind::Truncated, Some(3), Some(0x1234)))
    );
    // A length of exactly the remaining bytes is fine.
    assert!(decode_fields(&cat(&[seq_tlv(3), hex("1234 0001 00")])).is_ok());
}

#[test]
fn trailing_bytes_shorter_than_a_tlv_header_are_an_error() {
    let cases: [(&str, Option<u16>); 3] = [("00", None), ("0001", Some(1)), ("001300", Some(19))];
    for (trailer, option) in cases {
        let body = cat(&[seq_tlv(9), hex(trailer)]);
        assert_eq!(
            decode_fields(&body),
            Err(err(DecodeErrorKind::Truncated, Some(9), option)),
            "trailer {trailer}"
        );
        // Trailing bytes alone, without any TLV.
        assert_eq!(
            decode_fields(&hex(trailer)),
            Err(err(DecodeErrorKind::Truncated, None, option))
        );
    }
}

#[test]
fn unknown_options_are_skipped() {
    let body = cat(&[
        tlv(opt::COUNT, &[1, 2, 3]),
        seq_tlv(4),
        tlv(0x00ff, &[]),
        tlv(0xffff, &[0; 7]),
        tlv(opt::VOTE, &[1]),
        tlv(0x8000, b"odd"),
    ]);
    let fields = decode_fields(&body).expect("decodes");
    assert_eq!(
        fields,
        Fields {
            seq: Some(4),
            vote: Some(Vote::Ack),
            ..Fields::default()
        }
    );
    // A body of unknown options only is valid and empty.
    assert_eq!(decode_fields(&tlv(99, &[])), Ok(Fields::default()));
}

#[test]
fn last_occurrence_wins() {
    let body = cat(&[
        seq_tlv(1),
        tlv(opt::CLUSTER_NAME, b"first"),
        tlv(opt::SUPPORTED_MESSAGES, &hex("0000 0001 0002")),
        tlv(opt::VOTE, &[1]),
        tlv(opt::RING_ID, &hex("00000001 0000000000000001")),
        tlv(opt::TIE_BREAKER, &hex("03 00000009")),
        tlv(opt::CLUSTER_NAME, b""),
        tlv(opt::SUPPORTED_MESSAGES, &hex("0011")),
        tlv(opt::VOTE, &[2]),
        seq_tlv(2),
        tlv(opt::RING_ID, &hex("00000002 0000000000000003")),
        tlv(opt::TIE_BREAKER, &hex("01 00000000")),
    ]);
    let f = decode_fields(&body).expect("decodes");
    assert_eq!(f.seq, Some(2));
    assert_eq!(f.cluster_name, Some(Vec::new()));
    assert_eq!(
        f.supported_messages,
        Some(vec![17]),
        "arrays replaced wholesale"
    );
    assert_eq!(f.vote, Some(Vote::Nack));
    assert_eq!(f.ring_id, Some(RingId::new(2, 3)));
    assert_eq!(f.tie_breaker, Some(TieBreaker::Lowest));
}

#[test]
fn node_info_occurrences_append_in_order() {
    let body = cat(&[
        seq_tlv(1),
        tlv(opt::NODE_INFO, &tlv(opt::NODE_ID, &[0, 0, 0, 3])),
        tlv(opt::NODE_INFO, &tlv(opt::NODE_ID, &[0, 0, 0, 1])),
        tlv(opt::NODE_INFO, &tlv(opt::NODE_ID, &[0, 0, 0, 3])),
    ]);
    let f = decode_fields(&body).expect("decodes");
    assert_eq!(
        f.nodes,
        vec![NodeInfo::new(3), NodeInfo::new(1), NodeInfo::new(3)],
        "duplicates kept, order kept"
    );
}

#[test]
fn seq_is_echoed_only_if_decoded_before_the_bad_option() {
    let bad_vote = tlv(opt::VOTE, &[0]);
    assert_eq!(
        decode_fields(&cat(&[seq_tlv(5), bad_vote.clone()])),
        Err(err(DecodeErrorKind::OutOfRange, Some(5), Some(opt::VOTE)))
    );
    assert_eq!(
        decode_fields(&cat(&[bad_vote, seq_tlv(5)])),
        Err(err(DecodeErrorKind::OutOfRange, None, Some(opt::VOTE)))
    );
    // A malformed seq is itself the bad option: nothing to echo...
    assert_eq!(
        decode_fields(&tlv(opt::MSG_SEQ_NUMBER, &[0, 0, 1])),
        Err(err(
            DecodeErrorKind::WrongLength,
            None,
            Some(opt::MSG_SEQ_NUMBER)
        ))
    );
    // ...unless an earlier seq was valid: that one is echoed.
    assert_eq!(
        decode_fields(&cat(&[seq_tlv(8), tlv(opt::MSG_SEQ_NUMBER, &[0; 5])])),
        Err(err(
            DecodeErrorKind::WrongLength,
            Some(8),
            Some(opt::MSG_SEQ_NUMBER)
        ))
    );
    // Decoding stops at the first bad option.
    assert_eq!(
        decode_fields(&cat(&[
            seq_tlv(1),
            tlv(opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER, &[2]),
            tlv(opt::VOTE, &[0]),
        ])),
        Err(err(
            DecodeErrorKind::OutOfRange,
            Some(1),
            Some(opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER)
        ))
    );
}

#[test]
fn decode_validates_options_the_type_does_not_use() {
    // An ECHO_REQUEST carrying a bad VOTE is still undecodable (the reference
    // decodes every option before looking at the type).
    let body = cat(&[seq_tlv(1), tlv(opt::VOTE, &[9])]);
    assert_eq!(
        decode(MsgType::EchoRequest, &body),
        Err(err(DecodeErrorKind::OutOfRange, Some(1), Some(opt::VOTE)))
    );
}

#[test]
fn decode_picks_the_fields_of_the_type() {
    let body = cat(&[
        seq_tlv(3),
        tlv(opt::CLUSTER_NAME, b"c"),
        tlv(opt::VOTE, &[1]),
        tlv(opt::HEARTBEAT_INTERVAL, &hex("00001f40")),
        tlv(opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER, &[1]),
    ]);
    assert_eq!(
        decode(MsgType::Preinit, &body),
        Ok(Message::Preinit(Preinit {
            seq: Some(3),
            cluster_name: Some(b"c".to_vec()),
        }))
    );
    let expected = SetOption {
        seq: Some(3),
        heartbeat_interval: Some(8000),
        kap: Some(true),
    };
    assert_eq!(
        decode(MsgType::SetOption, &body),
        Ok(Message::SetOption(expected.clone()))
    );
    assert_eq!(
        decode(MsgType::SetOptionReply, &body),
        Ok(Message::SetOptionReply(expected))
    );
    assert_eq!(
        decode(MsgType::AskForVote, &body),
        Ok(Message::AskForVote(SeqOnly { seq: Some(3) }))
    );
    assert_eq!(
        decode(MsgType::VoteInfoReply, &body),
        Ok(Message::VoteInfoReply(SeqOnly { seq: Some(3) }))
    );
    assert_eq!(
        decode(MsgType::EchoRequest, &body),
        Ok(Message::EchoRequest(Echo { seq: Some(3) }))
    );
    assert_eq!(
        decode(MsgType::VoteInfo, &body),
        Ok(Message::VoteInfo(VoteInfo {
            seq: Some(3),
            vote: Some(Vote::Ack),
            ring_id: None,
        }))
    );
}

#[test]
fn every_option_decodes_into_fields() {
    let body = cat(&[
        seq_tlv(0xdead_beef),
        tlv(opt::CLUSTER_NAME, b"\0x\0"),
        tlv(opt::TLS_SUPPORTED, &[1]),
        tlv(opt::TLS_CLIENT_CERT_REQUIRED, &[0]),
        tlv(opt::SUPPORTED_MESSAGES, &hex("0001 ffff")),
        tlv(opt::SUPPORTED_OPTIONS, &hex("0017")),
        tlv(opt::REPLY_ERROR_CODE, &hex("0013")),
        tlv(opt::SERVER_MAXIMUM_REQUEST_SIZE, &hex("00008000")),
        tlv(opt::SERVER_MAXIMUM_REPLY_SIZE, &hex("01000000")),
        tlv(opt::NODE_ID, &hex("00000000")),
        tlv(opt::SUPPORTED_DECISION_ALGORITHMS, &hex("0003 0000")),
        tlv(opt::DECISION_ALGORITHM, &hex("ffff")),
        tlv(opt::HEARTBEAT_INTERVAL, &hex("00000000")),
        tlv(opt::RING_ID, &hex("ffffffff 0a0000000021b40a")),
        tlv(opt::CONFIG_VERSION, &hex("0102030405060708")),
        tlv(opt::DATA_CENTER_ID, &hex("00000004")),
        tlv(opt::NODE_STATE, &[3]),
        tlv(opt::NODE_INFO, &tlv(opt::NODE_ID, &hex("00000002"))),
        tlv(opt::NODE_LIST_TYPE, &[1]),
        tlv(opt::VOTE, &[5]),
        tlv(opt::QUORATE, &[0]),
        tlv(opt::TIE_BREAKER, &hex("02 00000007")),
        tlv(opt::HEURISTICS, &[2]),
        tlv(opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER, &[0]),
    ]);
    let expected = Fields {
        seq: Some(0xdead_beef),
        cluster_name: Some(b"\0x\0".to_vec()),
        tls_supported: Some(TlsSupported::Supported),
        tls_client_cert_required: Some(false),
        supported_messages: Some(vec![1, 0xffff]),
        supported_options: Some(vec![23]),
        supported_algorithms: Some(vec![3, 0]),
        reply_error_code: Some(ErrorCode::INVALID_MEMBERSHIP_NODE_LIST),
        server_max_request_size: Some(32768),
        server_max_reply_size: Some(1 << 24),
        node_id: Some(0),
        decision_algorithm: Some(0xffff),
        heartbeat_interval: Some(0),
        ring_id: Some(RingId::new(u32::MAX, 0x0a00_0000_0021_b40a)),
        config_version: Some(0x0102_0304_0506_0708),
        data_center_id: Some(4),
        node_state: Some(NodeState::Leaving),
        nodes: vec![NodeInfo::new(2)],
        node_list_type: Some(NodeListType::ChangedConfig),
        vote: Some(Vote::NoChange),
        quorate: Some(false),
        tie_breaker: Some(TieBreaker::Highest),
        heuristics: Some(Heuristics::Fail),
        kap: Some(false),
    };
    assert_eq!(decode_fields(&body), Ok(expected));
}

// ---------------------------------------------------------------------------
// Lengths and ranges (§2.3)
// ---------------------------------------------------------------------------

#[test]
fn fixed_length_options_reject_other_lengths() {
    let fixed_lengths: [(u16, usize); 19] = [
        (opt::MSG_SEQ_NUMBER, 4),
        (opt::TLS_SUPPORTED, 1),
        (opt::TLS_CLIENT_CERT_REQUIRED, 1),
        (opt::REPLY_ERROR_CODE, 2),
        (opt::SERVER_MAXIMUM_REQUEST_SIZE, 4),
        (opt::SERVER_MAXIMUM_REPLY_SIZE, 4),
        (opt::NODE_ID, 4),
        (opt::DECISION_ALGORITHM, 2),
        (opt::HEARTBEAT_INTERVAL, 4),
        (opt::RING_ID, 12),
        (opt::CONFIG_VERSION, 8),
        (opt::DATA_CENTER_ID, 4),
        (opt::NODE_STATE, 1),
        (opt::NODE_LIST_TYPE, 1),
        (opt::VOTE, 1),
        (opt::QUORATE, 1),
        (opt::TIE_BREAKER, 5),
        (opt::HEURISTICS, 1),
        (opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER, 1),
    ];
    for (option, len) in fixed_lengths {
        // The right length with a valid value (1 is in every range).
        assert!(decode_one(option, &vec![1; len]).is_ok(), "option {option}");
        for bad_len in [0, len - 1, len + 1, len * 2 + 3] {
            if bad_len == len {
                continue;
            }
            // For a bad seq the preceding valid seq 7 is the one echoed.
            assert_eq!(
                decode_one(option, &vec![1; bad_len]),
                Err(err(DecodeErrorKind::WrongLength, Some(7), Some(option))),
                "option {option} length {bad_len}"
            );
        }
    }
}

#[test]
fn u16_arrays_must_have_even_length() {
    for option in [
        opt::SUPPORTED_MESSAGES,
        opt::SUPPORTED_OPTIONS,
        opt::SUPPORTED_DECISION_ALGORITHMS,
    ] {
        for odd in [1, 3, 37] {
            assert_rejected(option, &vec![0; odd], DecodeErrorKind::WrongLength);
        }
        let empty = decode_one(option, &[]).expect("empty array is valid");
        let one = decode_one(option, &hex("abcd")).expect("valid");
        let (empty, one) = match option {
            opt::SUPPORTED_MESSAGES => (empty.supported_messages, one.supported_messages),
            opt::SUPPORTED_OPTIONS => (empty.supported_options, one.supported_options),
            _ => (empty.supported_algorithms, one.supported_algorithms),
        };
        assert_eq!(empty, Some(vec![]));
        assert_eq!(one, Some(vec![0xabcd]));
    }
}

/// Checks a u8 option accepts exactly the values in `valid`.
fn check_u8_range(option: u16, valid: &[u8]) {
    for v in 0..=u8::MAX {
        let result = decode_one(option, &[v]);
        if valid.contains(&v) {
            assert!(result.is_ok(), "option {option} value {v}");
        } else {
            assert_eq!(
                result,
                Err(err(DecodeErrorKind::OutOfRange, Some(7), Some(option))),
                "option {option} value {v}"
            );
        }
    }
}

#[test]
fn u8_option_ranges() {
    check_u8_range(opt::TLS_SUPPORTED, &[0, 1, 2]);
    check_u8_range(opt::NODE_STATE, &[1, 2, 3]);
    check_u8_range(opt::NODE_LIST_TYPE, &[0, 1, 2, 3]);
    check_u8_range(opt::VOTE, &[1, 2, 3, 4, 5]);
    check_u8_range(opt::QUORATE, &[0, 1]);
    check_u8_range(opt::HEURISTICS, &[1, 2]);
    check_u8_range(opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER, &[0, 1]);
    // TLS_CLIENT_CERT_REQUIRED takes any value.
    check_u8_range(
        opt::TLS_CLIENT_CERT_REQUIRED,
        &(0..=u8::MAX).collect::<Vec<_>>(),
    );
}

#[test]
fn u8_option_values_map_to_types() {
    let f = |option, v| decode_one(option, &[v]).expect("valid");
    assert_eq!(
        f(opt::TLS_SUPPORTED, 2).tls_supported,
        Some(TlsSupported::Required)
    );
    assert_eq!(
        f(opt::TLS_CLIENT_CERT_REQUIRED, 0).tls_client_cert_required,
        Some(false)
    );
    assert_eq!(
        f(opt::TLS_CLIENT_CERT_REQUIRED, 200).tls_client_cert_required,
        Some(true)
    );
    assert_eq!(f(opt::NODE_STATE, 2).node_state, Some(NodeState::Dead));
    assert_eq!(
        f(opt::NODE_LIST_TYPE, 3).node_list_type,
        Some(NodeListType::Quorum)
    );
    assert_eq!(f(opt::VOTE, 4).vote, Some(Vote::WaitForReply));
    assert_eq!(f(opt::QUORATE, 1).quorate, Some(true));
    assert_eq!(f(opt::HEURISTICS, 1).heuristics, Some(Heuristics::Pass));
    assert_eq!(f(opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER, 1).kap, Some(true));
}

#[test]
fn tie_breaker_mode_range_and_node_id() {
    for mode in [0u8, 4, 5, 255] {
        let mut value = vec![mode];
        value.extend_from_slice(&[0, 0, 0, 1]);
        assert_rejected(opt::TIE_BREAKER, &value, DecodeErrorKind::OutOfRange);
    }
    let tb = |value: &str| decode_one(opt::TIE_BREAKER, &hex(value)).map(|f| f.tie_breaker);
    // The node id is dropped (forced to 0) unless the mode is NODE_ID.
    assert_eq!(tb("01 12345678"), Ok(Some(TieBreaker::Lowest)));
    assert_eq!(tb("02 ffffffff"), Ok(Some(TieBreaker::Highest)));
    assert_eq!(tb("03 12345678"), Ok(Some(TieBreaker::NodeId(0x1234_5678))));
    assert_eq!(tb("03 00000000"), Ok(Some(TieBreaker::NodeId(0))));
}

#[test]
fn options_without_range_checks() {
    // Values the decoder leaves to the server.
    assert_eq!(
        decode_one(opt::DECISION_ALGORITHM, &hex("0004")).map(|f| f.decision_algorithm),
        Ok(Some(4))
    );
    assert_eq!(
        decode_one(opt::REPLY_ERROR_CODE, &hex("ffff")).map(|f| f.reply_error_code),
        Ok(Some(ErrorCode(0xffff)))
    );
    assert_eq!(
        decode_one(opt::NODE_ID, &hex("00000000")).map(|f| f.node_id),
        Ok(Some(0))
    );
    assert_eq!(
        decode_one(opt::CLUSTER_NAME, &[]).map(|f| f.cluster_name),
        Ok(Some(vec![]))
    );
    let long_name = vec![0u8; 65535];
    assert_eq!(
        decode_one(opt::CLUSTER_NAME, &long_name).map(|f| f.cluster_name),
        Ok(Some(long_name))
    );
}

// ---------------------------------------------------------------------------
// NODE_INFO nested rules (§2.5)
// ---------------------------------------------------------------------------

fn node_info(parts: &[Vec<u8>]) -> Result<Fields, DecodeError> {
    decode_one(opt::NODE_INFO, &cat(parts))
}

fn nested_id(id: u32) -> Vec<u8> {
    tlv(opt::NODE_ID, &id.to_be_bytes())
}

#[test]
fn node_info_valid_forms() {
    let nodes = |parts: &[Vec<u8>]| node_info(parts).map(|f| f.nodes);
    assert_eq!(nodes(&[nested_id(5)]), Ok(vec![NodeInfo::new(5)]));
    assert_eq!(
        nodes(&[
            tlv(opt::NODE_STATE, &[3]),
            tlv(opt::DATA_CENTER_ID, &hex("00000002")),
            nested_id(5),
        ]),
        Ok(vec![NodeInfo {
            node_id: 5,
            data_center_id: 2,
            state: Some(NodeState::Leaving),
        }]),
        "nested order does not matter"
    );
    // Unknown nested options (including ones known at top level) are ignored,
    // even when their value would be invalid there.
    assert_eq!(
        nodes(&[
            tlv(opt::VOTE, &[0]),
            nested_id(6),
            tlv(0xffff, &[]),
            tlv(opt::NODE_INFO, &[]),
            tlv(opt::RING_ID, &[1]),
        ]),
        Ok(vec![NodeInfo::new(6)])
    );
    // Last nested NODE_ID wins; a zero one is fine if a later one is not.
    assert_eq!(
        nodes(&[nested_id(1), nested_id(2)]),
        Ok(vec![NodeInfo::new(2)])
    );
    assert_eq!(
        nodes(&[nested_id(0), nested_id(2)]),
        Ok(vec![NodeInfo::new(2)])
    );
    // Explicit DATA_CENTER_ID 0 is the same as none.
    assert_eq!(
        nodes(&[nested_id(3), tlv(opt::DATA_CENTER_ID, &[0; 4])]),
        Ok(vec![NodeInfo::new(3)])
    );
}

#[test]
fn node_info_errors() {
    use DecodeErrorKind::*;
    let e = |kind| Err(err(kind, Some(7), Some(opt::NODE_INFO)));
    // Empty value.
    assert_eq!(node_info(&[]), e(Truncated));
    // NODE_ID missing or zero.
    assert_eq!(
        node_info(&[tlv(opt::DATA_CENTER_ID, &[0, 0, 0, 1])]),
        e(OutOfRange)
    );
    assert_eq!(node_info(&[tlv(99, &[])]), e(OutOfRange));
    assert_eq!(node_info(&[nested_id(0)]), e(OutOfRange));
    assert_eq!(node_info(&[nested_id(2), nested_id(0)]), e(OutOfRange));
    // Wrong nested lengths.
    assert_eq!(node_info(&[tlv(opt::NODE_ID, &[0, 0, 1])]), e(WrongLength));
    assert_eq!(
        node_info(&[nested_id(1), tlv(opt::DATA_CENTER_ID, &[1; 5])]),
        e(WrongLength)
    );
    assert_eq!(
        node_info(&[nested_id(1), tlv(opt::NODE_STATE, &[1, 1])]),
        e(WrongLength)
    );
    assert_eq!(
        node_info(&[nested_id(1), tlv(opt::NODE_STATE, &[])]),
        e(WrongLength)
    );
    // NODE_STATE range.
    for state in [0u8, 4, 255] {
        assert_eq!(
            node_info(&[nested_id(1), tlv(opt::NODE_STATE, &[state])]),
            e(OutOfRange)
        );
    }
    // Nested framing: overrun, and 1..3 trailing bytes.
    assert_eq!(node_info(&[hex("0009 0008 00000001")]), e(Truncated));
    for trailer in ["00", "0009", "000900"] {
        assert_eq!(
            node_info(&[nested_id(1), hex(trailer)]),
            e(Truncated),
            "{trailer}"
        );
        assert_eq!(node_info(&[hex(trailer)]), e(Truncated), "{trailer}");
    }
    // Without a preceding seq, none is echoed.
    assert_eq!(
        decode_fields(&tlv(opt::NODE_INFO, &nested_id(0))),
        Err(err(OutOfRange, None, Some(opt::NODE_INFO)))
    );
    // An error in a later NODE_INFO fails the whole body.
    assert_eq!(
        decode_fields(&cat(&[
            seq_tlv(2),
            tlv(opt::NODE_INFO, &nested_id(1)),
            tlv(opt::NODE_INFO, &[]),
        ])),
        Err(err(Truncated, Some(2), Some(opt::NODE_INFO)))
    );
}

// ---------------------------------------------------------------------------
// ECHO_REPLY
// ---------------------------------------------------------------------------

#[test]
fn echo_reply_reflects_every_byte() {
    let request = cat(&[
        hex("0008 00000019"),
        seq_tlv(77),
        tlv(0x4242, b"unknown"),
        hex("ab"), // even malformed tails are reflected
    ]);
    let reply = echo_reply_from_request(&request);
    assert_eq!(reply.len(), request.len());
    assert_eq!(reply[..2], [0, 9]);
    assert_eq!(reply[2..], request[2..]);
    // Degenerate inputs do not panic.
    assert_eq!(echo_reply_from_request(&[]), Vec::<u8>::new());
    assert_eq!(echo_reply_from_request(&[8]), vec![8]);
    assert_eq!(echo_reply_from_request(&[0, 8]), vec![0, 9]);
}

// ---------------------------------------------------------------------------
// Garbage input
// ---------------------------------------------------------------------------

/// Deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Decodes `body` every way and checks the results are consistent: every
/// type decodes iff the fields decode, and a decoded message re-encodes to a
/// body that decodes to the same message.
fn check_consistent(body: &[u8]) -> bool {
    let fields = decode_fields(body);
    for t in MsgType::ALL {
        let decoded = decode(t, body);
        match (&fields, decoded) {
            (Ok(f), Ok(m)) => {
                assert_eq!(m, f.clone().into_message(t));
                let bytes = m.to_bytes();
                let (header, re_body) = split(&bytes);
                assert_eq!(header.msg_type, t as u16);
                if re_body.is_empty() {
                    assert!(decode(t, re_body).is_err());
                } else {
                    assert_eq!(decode(t, re_body), Ok(m));
                }
            }
            (Err(e), Err(e2)) => assert_eq!(*e, e2),
            (f, d) => panic!("decode_fields {f:?} but decode {d:?}"),
        }
    }
    if let Err(e) = &fields {
        assert_eq!(e.kind == DecodeErrorKind::EmptyBody, body.is_empty());
    }
    fields.is_ok()
}

#[test]
fn random_bodies_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(48) as usize;
        let body = rng.bytes(len);
        check_consistent(&body);
    }
}

/// The length of a fixed-length option (arrays: one entry; name: 3).
fn valid_len(option: u16) -> Option<usize> {
    Some(match option {
        opt::TLS_SUPPORTED
        | opt::TLS_CLIENT_CERT_REQUIRED
        | opt::NODE_STATE
        | opt::NODE_LIST_TYPE
        | opt::VOTE
        | opt::QUORATE
        | opt::HEURISTICS
        | opt::KEEP_ACTIVE_PARTITION_TIE_BREAKER => 1,
        opt::SUPPORTED_MESSAGES
        | opt::SUPPORTED_OPTIONS
        | opt::SUPPORTED_DECISION_ALGORITHMS
        | opt::REPLY_ERROR_CODE
        | opt::DECISION_ALGORITHM => 2,
        opt::CLUSTER_NAME => 3,
        opt::MSG_SEQ_NUMBER
        | opt::SERVER_MAXIMUM_REQUEST_SIZE
        | opt::SERVER_MAXIMUM_REPLY_SIZE
        | opt::NODE_ID
        | opt::HEARTBEAT_INTERVAL
        | opt::DATA_CENTER_ID => 4,
        opt::TIE_BREAKER => 5,
        opt::CONFIG_VERSION => 8,
        opt::RING_ID => 12,
        _ => return None,
    })
}

/// A random TLV with a plausible type and length; the value is random,
/// sometimes a valid small value, sometimes nested TLVs.
fn random_tlv(rng: &mut XorShift, depth: u32) -> Vec<u8> {
    let option = match rng.below(10) {
        0 => rng.next() as u16,
        _ => rng.below(26) as u16,
    };
    let value = if option == opt::NODE_INFO && depth < 2 && rng.below(4) != 0 {
        let count = rng.below(4);
        let mut nested = Vec::new();
        for _ in 0..count {
            nested.extend(random_tlv(rng, depth + 1));
        }
        nested
    } else {
        // Mostly the right length for the option, sometimes any length.
        let len = match (rng.below(4), valid_len(option)) {
            (0, _) | (_, None) => rng.below(40) as usize,
            (_, Some(len)) => len,
        };
        let mut value = rng.bytes(len);
        if rng.below(4) != 0 {
            // Small values are in range for most options.
            for b in value.iter_mut() {
                *b = rng.below(4) as u8;
            }
        }
        value
    };
    tlv(option, &value)
}

#[test]
fn random_tlv_sequences_never_panic() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let mut successes = 0;
    let mut failures = 0;
    for _ in 0..20_000 {
        let count = rng.below(6);
        let mut body = Vec::new();
        for _ in 0..count {
            body.extend(random_tlv(&mut rng, 0));
        }
        // Sometimes cut or extend the body at a random point.
        match rng.below(5) {
            0 if !body.is_empty() => {
                let cut = rng.below(body.len() as u64) as usize;
                body.truncate(cut);
            }
            1 => {
                let extra = rng.below(4) as usize;
                body.extend(rng.bytes(extra));
            }
            _ => {}
        }
        if check_consistent(&body) {
            successes += 1;
        } else {
            failures += 1;
        }
    }
    // Both paths must be well exercised for the sweep to mean anything.
    assert!(successes > 2_000, "only {successes} bodies decoded");
    assert!(failures > 2_000, "only {failures} bodies rejected");
}

#[test]
fn mutated_valid_messages_never_panic() {
    let mut rng = XorShift(0xfeed_face_cafe_f00d);
    let originals: Vec<Vec<u8>> = full_messages()
        .iter()
        .map(|m| m.to_bytes()[HEADER_LEN..].to_vec())
        .collect();
    for i in 0..20_000 {
        let mut body = originals[i % originals.len()].clone();
        for _ in 0..=rng.below(3) {
            if body.is_empty() {
                break;
            }
            let at = rng.below(body.len() as u64) as usize;
            match rng.below(3) {
                0 => body[at] ^= 1 << rng.below(8),
                1 => body[at] = rng.next() as u8,
                _ => body.truncate(at),
            }
        }
        check_consistent(&body);
    }
}

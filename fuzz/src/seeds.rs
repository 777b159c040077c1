//! The seed corpus: byte-exact captures of the reference server (the
//! verified dumps of the protocol summary, also checked in
//! `src/wire/tests.rs`), one message of every type as our tests build them,
//! and real client sequences (PREINIT, INIT, lists, echo, votes) in the input
//! format of each target. `tests/corpus.rs` writes them to `corpus/<target>/`
//! (`cargo test --test corpus -- --ignored write_seed_corpus`).

use qnetd_core::wire::{
    AlgorithmKind, AskForVoteReply, Echo, ErrorCode, Heuristics, HeuristicsChange,
    HeuristicsChangeReply, Init, InitReply, Message, MsgType, NodeInfo, NodeList, NodeListReply,
    NodeListType, NodeState, Preinit, PreinitReply, RingId, SeqOnly, ServerError, SetOption,
    StartTls, TieBreaker, TlsSupported, Vote, VoteInfo,
};

/// Parses a hex dump; anything but hex digits is ignored.
pub fn hex(dump: &str) -> Vec<u8> {
    let digits: Vec<u8> = dump
        .bytes()
        .filter_map(|b| (b as char).to_digit(16))
        .map(|d| d as u8)
        .collect();
    digits
        .chunks(2)
        .map(|p| p[0] << 4 | p.get(1).unwrap_or(&0))
        .collect()
}

/// The verified dumps of the reference (protocol summary §1.6).
pub const DUMPS: &[(&str, &str)] = &[
    (
        "preinit",
        "0000 00000015 | 0000 0004 00000001 | 0001 0009 6d79636c7573746572",
    ),
    (
        "preinit_reply",
        "0001 00000012 | 0000 0004 00000001 | 0002 0001 00 | 0003 0001 01",
    ),
    (
        "server_error_seq",
        "0005 0000000e | 0000 0004 00000005 | 0006 0002 000d",
    ),
    ("server_error_noseq", "0005 00000006 | 0006 0002 0004"),
    (
        "node_list_reply",
        "000b 00000022 | 0000 0004 00000006 | 0012 0001 00 \
         | 000d 000c 00000001 0000000000000004 | 0013 0001 03",
    ),
    (
        "vote_info",
        "000e 0000001d | 0000 0004 00000001 | 0013 0001 01 \
         | 000d 000c 00000001 0000000000000008",
    ),
    ("echo_request", "0008 00000008 | 0000 0004 00000001"),
    ("echo_reply", "0009 00000008 | 0000 0004 00000001"),
    (
        "init_reply",
        "0004 00000086 0006 0002 0000 \
         0004 0024 0000 0001 0002 0003 0004 0005 0006 0007 0008 0009 000a 000b \
                   000c 000d 000e 000f 0010 0011 \
         0005 0030 0000 0001 0002 0003 0004 0005 0006 0007 0008 0009 000a 000b \
                   000c 000d 000e 000f 0010 0011 0012 0013 0014 0015 0016 0017 \
         0000 0004 00000002 0007 0004 00008000 0008 0004 00008000 \
         000a 0008 0000 0001 0002 0003",
    ),
];

/// One message of each of the 18 types with every option set (as in
/// `src/wire/tests.rs`).
pub fn full_messages() -> Vec<Message> {
    let ring = RingId::new(0x0102_0304, 0x0a00_0000_0002_1b40);
    let nodes = vec![
        NodeInfo::new(1),
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
    ];
    let all_messages: Vec<u16> = MsgType::ALL.iter().map(|t| *t as u16).collect();
    let all_options: Vec<u16> = (0..24).collect();
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
            supported_messages: Some(all_messages.clone()),
            supported_options: Some(all_options.clone()),
            node_id: Some(5),
            decision_algorithm: Some(AlgorithmKind::Lms as u16),
            heartbeat_interval: Some(8000),
            tie_breaker: Some(TieBreaker::NodeId(9)),
            ring_id: Some(ring),
        }),
        Message::InitReply(InitReply {
            error_code: Some(ErrorCode::DUPLICATE_NODE_ID),
            supported_messages: Some(all_messages),
            supported_options: Some(all_options),
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

/// The messages a real corosync-qdevice sends on one connection, in order:
/// PREINIT, INIT, its config, membership and quorum lists, a heartbeat and
/// the reply to a VOTE_INFO.
pub fn client_sequence(
    cluster: &[u8],
    node: u32,
    config: &[u32],
    ring: RingId,
    members: &[u32],
    algorithm: AlgorithmKind,
) -> Vec<Message> {
    let list = |ids: &[u32]| ids.iter().map(|&id| NodeInfo::new(id)).collect::<Vec<_>>();
    vec![
        Message::Preinit(Preinit {
            seq: Some(1),
            cluster_name: Some(cluster.to_vec()),
        }),
        Message::Init(Init {
            seq: Some(2),
            supported_messages: Some(MsgType::ALL.iter().map(|t| *t as u16).collect()),
            supported_options: Some((0..24).collect()),
            node_id: Some(node),
            decision_algorithm: Some(algorithm as u16),
            heartbeat_interval: Some(8000),
            tie_breaker: Some(TieBreaker::Lowest),
            ring_id: Some(ring),
        }),
        Message::NodeList(NodeList {
            seq: Some(3),
            list_type: Some(NodeListType::InitialConfig),
            ring_id: None,
            config_version: Some(1),
            quorate: None,
            nodes: list(config),
            heuristics: None,
        }),
        Message::NodeList(NodeList {
            seq: Some(4),
            list_type: Some(NodeListType::Membership),
            ring_id: Some(ring),
            config_version: None,
            quorate: None,
            nodes: list(members),
            heuristics: Some(Heuristics::Pass),
        }),
        Message::NodeList(NodeList {
            seq: Some(5),
            list_type: Some(NodeListType::Quorum),
            ring_id: None,
            config_version: None,
            quorate: Some(true),
            nodes: list(members),
            heuristics: None,
        }),
        Message::EchoRequest(Echo { seq: Some(6) }),
        Message::VoteInfoReply(SeqOnly { seq: Some(1) }),
    ]
}

/// Seeds of the codec target: raw message streams.
pub fn codec() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = DUMPS
        .iter()
        .map(|(name, dump)| (format!("dump-{name}"), hex(dump)))
        .collect();
    for m in full_messages() {
        out.push((format!("full-{}", m.msg_type().name()), m.to_bytes()));
    }
    let stream: Vec<u8> = client_sequence(
        b"mycluster",
        1,
        &[1, 2],
        RingId::new(1, 4),
        &[1, 2],
        AlgorithmKind::Ffsplit,
    )
    .iter()
    .flat_map(Message::to_bytes)
    .collect();
    out.push(("client-sequence".into(), stream));
    out
}

/// Operation codes of the session target's input (see `session::World::step`).
pub mod session_ops {
    /// Send a message built from a compact description.
    pub const BUILT: u8 = 0;
    /// Send raw bytes: a u16 length (mod 512), then the bytes.
    pub const RAW: u8 = 9;
    pub const CLOSE: u8 = 10;
    pub const TIMER: u8 = 11;
    pub const TOGGLE_FULL: u8 = 12;
    pub const ADVANCE_TIME: u8 = 13;
}

/// Session input: a settings byte (TLS off, no client certificate), then
/// each client's real message sequence as raw frames, interleaved.
fn session_raw(clients: &[(u32, AlgorithmKind, RingId, &[u32])], config: &[u32]) -> Vec<u8> {
    let mut out = vec![0x00];
    let sequences: Vec<Vec<Message>> = clients
        .iter()
        .map(|&(node, algorithm, ring, members)| {
            client_sequence(b"alpha", node, config, ring, members, algorithm)
        })
        .collect();
    let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        for (slot, seq) in sequences.iter().enumerate() {
            if let Some(m) = seq.get(step) {
                let bytes = m.to_bytes();
                out.push((slot as u8) << 4 | session_ops::RAW);
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(&bytes);
            }
        }
    }
    out
}

/// Session input in the compact form: PREINIT, INIT, config, membership
/// and quorum lists, ASK_FOR_VOTE, VOTE_INFO_REPLY for each client, with
/// `algorithm` (the INIT algorithm byte of `session::build_message`).
fn session_compact(slots: &[(u8, u8)], algorithm: u8, extra: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    for &(slot, ring) in slots {
        let op = slot << 4 | session_ops::BUILT;
        // PREINIT "alpha"; INIT node slot+1, heartbeat 8000, lowest.
        out.extend_from_slice(&[op, 0, 0]);
        out.extend_from_slice(&[op, 14, 0x20 | slot, 0, algorithm, 0, ring]);
    }
    let members: u8 = slots.iter().map(|&(s, _)| 1 << s).sum();
    for &(slot, ring) in slots {
        let op = slot << 4 | session_ops::BUILT;
        out.extend_from_slice(&[op, 30, 0, members]); // config: every slot
        out.extend_from_slice(&[op, 42, 1, ring, members]); // membership
        out.extend_from_slice(&[op, 62, 1, members]); // quorum, quorate
        out.extend_from_slice(&[op, 72]); // ask for vote
        out.extend_from_slice(&[op, 80, 2]); // vote info reply
    }
    out.extend_from_slice(extra);
    out
}

/// Seeds of the session target.
pub fn session() -> Vec<(String, Vec<u8>)> {
    let config = [1, 2, 3];
    let r = RingId::new(1, 4);
    let mut out = Vec::new();
    for (name, algorithm) in [
        ("ffsplit", AlgorithmKind::Ffsplit),
        ("lms", AlgorithmKind::Lms),
        ("test", AlgorithmKind::Test),
    ] {
        out.push((
            format!("raw-{name}-three-nodes"),
            session_raw(
                &[
                    (1, algorithm, r, &[1, 2, 3]),
                    (2, algorithm, r, &[1, 2, 3]),
                    (3, algorithm, r, &[1, 2, 3]),
                ],
                &config,
            ),
        ));
    }
    out.push((
        "raw-2nodelms".into(),
        session_raw(
            &[
                (1, AlgorithmKind::TwoNodeLms, r, &[1, 2]),
                (2, AlgorithmKind::TwoNodeLms, r, &[1, 2]),
            ],
            &[1, 2],
        ),
    ));
    // A split: node 1 alone in ring 1.8, nodes 2 and 3 in ring 2.8.
    out.push((
        "raw-ffsplit-split".into(),
        session_raw(
            &[
                (1, AlgorithmKind::Ffsplit, RingId::new(1, 8), &[1]),
                (2, AlgorithmKind::Ffsplit, RingId::new(2, 8), &[2, 3]),
                (3, AlgorithmKind::Ffsplit, RingId::new(2, 8), &[2, 3]),
            ],
            &config,
        ),
    ));
    use session_ops::*;
    // Ring byte: node (b >> 5) + 1, seq b & 0x1f.
    let split = [
        // Slot 0 moves to ring 1.9 alone, slot 1 to ring 2.9 alone.
        BUILT,
        42,
        1,
        0x09,
        0x01,
        0x10 | BUILT,
        42,
        1,
        0x29,
        0x02,
        0x10 | BUILT,
        72,
        TIMER,
        0x10 | TIMER,
        ADVANCE_TIME,
        0x10,
        0x00,
        0x10 | CLOSE,
        BUILT,
        72,
    ];
    for (name, algorithm) in [("ffsplit", 1), ("2nodelms", 2), ("lms", 3), ("test", 0)] {
        out.push((
            format!("compact-{name}"),
            session_compact(&[(0, 0x04), (1, 0x04)], algorithm, &split),
        ));
    }
    out.push((
        "compact-lms-three".into(),
        session_compact(&[(0, 0x04), (1, 0x04), (2, 0x04)], 3, &split),
    ));
    // TLS: settings "on, client certificate required", STARTTLS, INIT.
    let mut tls = vec![0x04, BUILT, 0, 0, BUILT, 10, 3];
    tls.extend_from_slice(&[BUILT, 14, 0x20, 0, 1, 0, 0x04]);
    out.push(("compact-starttls".into(), tls));
    // Raw garbage: unknown type and an oversized claim.
    let mut garbage = vec![0x00, 0x20 | RAW, 0, 14];
    garbage.extend_from_slice(&hex("0063 00000002 abcd 0008 7fffffff"));
    out.push(("raw-garbage".into(), garbage));
    out
}

/// Raw-event input (mode 3 of the algorithms target): algorithm `kind`
/// (`AlgorithmKind as u8`), tie-breaker lowest, three nodes join and report
/// config [1, 2, 3] and membership 1.4 [1, 2, 3], ask for a vote, then a
/// split: node 3 alone in ring 3.9, nodes 1 and 2 in ring 1.9; node 3's
/// timer fires and acknowledges its VOTE_INFO; node 1 leaves. Then the
/// server restarts; node 3 comes back first (its cluster seeded with the
/// remembered holder), a `restore` names [1, 2] again, node 1 comes back.
fn algorithms_raw(kind: u8) -> Vec<u8> {
    // Node byte k - 1 is node k; ring byte: node (b >> 5) + 1, seq b & 0x1f.
    let mut out = vec![3, kind, 0];
    for n in 0..3u8 {
        out.extend_from_slice(&[0, 0, n, 0x04, 0]); // join, ring 1.4
    }
    for n in 0..3u8 {
        out.extend_from_slice(&[1, 5, n, 0x07]); // initial config 1..=3
        out.extend_from_slice(&[1, 7, n, 0x04, 0x07, 1]); // membership, pass
        out.extend_from_slice(&[1, 10, n, 1, 0x07]); // quorum, quorate
        out.extend_from_slice(&[1, 12, n]); // ask for vote
    }
    out.extend_from_slice(&[100, 7, 2, 0x49, 0x04, 1]); // node 3: ring 3.9 [3]
    out.extend_from_slice(&[1, 7, 0, 0x09, 0x03, 1]); // node 1: ring 1.9 [1, 2]
    out.extend_from_slice(&[1, 7, 1, 0x09, 0x03, 1]); // node 2: ring 1.9 [1, 2]
    out.extend_from_slice(&[200, 15, 2]); // node 3's timer
    out.extend_from_slice(&[1, 13, 2, 0]); // node 3 acknowledges a VOTE_INFO
    out.extend_from_slice(&[1, 12, 0]); // node 1 asks for a vote
    out.extend_from_slice(&[1, 2, 0]); // node 1 leaves
    out.extend_from_slice(&[50, 0x44, 0]); // the server restarts
    out.extend_from_slice(&[1, 0, 2, 0x49, 0]); // node 3 joins, ring 3.9
    out.extend_from_slice(&[1, 5, 2, 0x07]); // its config
    out.extend_from_slice(&[1, 7, 2, 0x49, 0x04, 1]); // its membership [3]
    out.extend_from_slice(&[1, 0x84, 0, 0x03, 50]); // restore: holder [1, 2]
    out.extend_from_slice(&[1, 0, 0, 0x09, 0]); // node 1 joins, ring 1.9
    out.extend_from_slice(&[1, 5, 0, 0x07]); // its config
    out.extend_from_slice(&[1, 7, 0, 0x09, 0x03, 1]); // its membership [1, 2]
    out
}

/// Seeds of the algorithms target: simulator schedules (modes 0-2, and
/// 4-6 with server restarts; an empty script is the schedule of the seed-0
/// generator, the others start with a few fixed choices) and raw event
/// sequences for every algorithm.
pub fn algorithms() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (mode, name) in [
        (0u8, "ffsplit"),
        (1, "lms"),
        (2, "2nodelms"),
        (4, "ffsplit-restarts"),
        (5, "lms-restarts"),
        (6, "2nodelms-restarts"),
    ] {
        out.push((format!("sim-{name}"), vec![mode]));
        // 4 nodes, connected, then alternating deliveries and partitions.
        let mut script = vec![mode, 2, 1, 2, 3, 4, 0, 0, 1];
        script.extend((0u8..96).map(|i| i.wrapping_mul(37)));
        out.push((format!("sim-{name}-script"), script));
    }
    for (kind, name) in [(0u8, "test"), (1, "ffsplit"), (2, "2nodelms"), (3, "lms")] {
        out.push((format!("raw-{name}"), algorithms_raw(kind)));
    }
    out
}

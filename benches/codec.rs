//! Codec micro-benchmarks: encode and decode of each message a busy server
//! handles, with realistic contents (2- and 16-node lists).
//! `cargo bench --bench codec`.

use qnetd_core::wire::{
    self, AlgorithmKind, Echo, ErrorCode, InitReply, Message, MsgType, NodeInfo, NodeList,
    NodeListReply, NodeListType, NodeState, Preinit, RingId, SeqOnly, TieBreaker, Vote, VoteInfo,
};
use qnetd_tools::client::{init_message, NodeParams};

fn main() {
    divan::main();
}

fn samples() -> Vec<(&'static str, Message)> {
    let ring = RingId::new(1, 8);
    let p = NodeParams {
        cluster: "bench00001".into(),
        node_id: 1,
        algorithm: AlgorithmKind::Ffsplit,
        tie_breaker: TieBreaker::Lowest,
        heartbeat_ms: 8000,
        ring,
    };
    let members = |n: u32, t: NodeListType| {
        Message::NodeList(NodeList {
            seq: Some(5),
            list_type: Some(t),
            ring_id: (t == NodeListType::Membership).then_some(ring),
            quorate: (t == NodeListType::Quorum).then_some(true),
            nodes: (1..=n)
                .map(|id| NodeInfo {
                    state: (t == NodeListType::Quorum).then_some(NodeState::Member),
                    ..NodeInfo::new(id)
                })
                .collect(),
            ..Default::default()
        })
    };
    vec![
        (
            "preinit",
            Message::Preinit(Preinit {
                seq: Some(1),
                cluster_name: Some(b"bench00001".to_vec()),
            }),
        ),
        ("init", Message::Init(init_message(2, &p))),
        (
            "init_reply",
            Message::InitReply(InitReply {
                error_code: Some(ErrorCode::NO_ERROR),
                supported_messages: Some(MsgType::ALL.iter().map(|t| *t as u16).collect()),
                supported_options: Some((0..wire::opt::COUNT).collect()),
                seq: Some(2),
                server_max_request_size: Some(32768),
                server_max_reply_size: Some(32768),
                supported_algorithms: Some(vec![0, 1, 2, 3]),
            }),
        ),
        ("config_2", members(2, NodeListType::InitialConfig)),
        ("membership_2", members(2, NodeListType::Membership)),
        ("membership_16", members(16, NodeListType::Membership)),
        ("quorum_16", members(16, NodeListType::Quorum)),
        (
            "node_list_reply",
            Message::NodeListReply(NodeListReply {
                seq: Some(5),
                list_type: Some(NodeListType::Membership),
                ring_id: Some(ring),
                vote: Some(Vote::NoChange),
            }),
        ),
        (
            "vote_info",
            Message::VoteInfo(VoteInfo {
                seq: Some(3),
                vote: Some(Vote::Ack),
                ring_id: Some(ring),
            }),
        ),
        (
            "vote_info_reply",
            Message::VoteInfoReply(SeqOnly { seq: Some(3) }),
        ),
        ("echo_request", Message::EchoRequest(Echo { seq: Some(9) })),
    ]
}

const NAMES: &[&str] = &[
    "preinit",
    "init",
    "init_reply",
    "config_2",
    "membership_2",
    "membership_16",
    "quorum_16",
    "node_list_reply",
    "vote_info",
    "vote_info_reply",
    "echo_request",
];

fn sample(name: &str) -> Message {
    samples()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m)
        .expect("known sample")
}

#[divan::bench(args = NAMES)]
fn encode(bencher: divan::Bencher, name: &str) {
    let msg = sample(name);
    let mut out = Vec::with_capacity(512);
    bencher.bench_local(|| {
        out.clear();
        divan::black_box(&msg).encode(&mut out);
        out.len()
    });
}

#[divan::bench(args = NAMES)]
fn decode(bencher: divan::Bencher, name: &str) {
    let msg = sample(name);
    let bytes = msg.to_bytes();
    let t = msg.msg_type();
    bencher.bench_local(|| {
        wire::decode(t, divan::black_box(&bytes[wire::HEADER_LEN..])).expect("decodes")
    });
}

//! Fuzz harness of the protocol state machine: up to [`SLOTS`] client
//! connections, each a qnetd-core [`Session`] on one shared [`Arbiter`]
//! (clients pick one of a few cluster names, so several clusters exist at
//! once), driven exactly as the server's connection driver drives them, on a
//! virtual clock. The input is a sequence of operations: a client sends a
//! message (built from a compact description, so that deep states are
//! reachable, and pushed through a [`FrameReader`] as the driver does) or
//! raw bytes, the connection closes, time passes (deadlines and algorithm
//! timers fire through `handle_timeout`), a client stops or resumes reading
//! its replies.
//!
//! Asserted after every operation:
//! - nothing panics;
//! - everything a session transmits decodes and has a server-to-client type;
//! - a VOTE_INFO goes only to a client that completed INIT and whose config
//!   and membership lists the server has (the algorithms' promise);
//! - the table agrees with the sessions: client and cluster counts, every
//!   joined client listed in its cluster with its mailbox;
//! - no two clients of one cluster (algorithms other than `test`, which
//!   breaks it by design) hold ACK for different ring ids, where a client
//!   holds the last ACK/NACK it received for its current ring (the ring of
//!   its INIT or of the last membership list it sent), as the real client
//!   does.
//!
//! At the end every remaining connection closes and the table must be empty.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_core::arbiter::Arbiter;
use qnetd_core::close::CloseReason;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_core::framing::{Frame, FrameReader};
use qnetd_core::session::Session;
use qnetd_core::table::lock;
use qnetd_core::wire::{
    self, AlgorithmKind, Echo, Header, Heuristics, HeuristicsChange, Init, Message, MsgType,
    NodeInfo, NodeList, NodeListType, Preinit, RingId, SeqOnly, SetOption, StartTls, TieBreaker,
    Vote, VoteInfo, HEADER_LEN,
};

use crate::input::Input;

/// Number of client connections.
pub const SLOTS: usize = 5;

/// Cluster names the clients choose from (the last is picked from input).
const NAMES: [&[u8]; 2] = [b"alpha", b"beta"];

/// One client connection and the model of the client behind it.
struct Slot {
    session: Session,
    reader: FrameReader,
    /// The client does not read: what the session transmits waits.
    stalled: bool,
    /// The client's current ring id (INIT, then its membership lists).
    ring: Option<RingId>,
    /// The vote the client holds for `ring`.
    held: Option<Vote>,
    /// Seq of the last VOTE_INFO received.
    last_vote_info: Option<u32>,
    next_seq: u32,
    /// The node id INIT proposed (the model's view before the reply).
    init_node: Option<u32>,
}

struct World {
    arbiter: Arc<Arbiter>,
    t0: Instant,
    slots: Vec<Option<Slot>>,
    now_ms: u64,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut world = World::new(&mut input);
    let mut ops = 0;
    while !input.is_empty() && ops < 2000 {
        ops += 1;
        world.step(&mut input);
        world.check();
    }
    let going_down = input.bool();
    for i in 0..SLOTS {
        world.close(
            i,
            if going_down {
                CloseReason::ServerShutdown
            } else {
                CloseReason::ClientClosed
            },
        );
    }
    world.check();
    let table = &world.arbiter.table;
    assert_eq!(table.client_count(), 0, "clients left in the table");
    assert_eq!(table.cluster_count(), 0, "clusters left in the table");
}

impl World {
    fn new(input: &mut Input<'_>) -> World {
        let flags = input.u8();
        let mut settings = Settings {
            tls: match flags % 3 {
                0 => TlsMode::Off,
                1 => TlsMode::On,
                _ => TlsMode::Required,
            },
            client_cert_required: flags & 0x04 != 0,
            dpd_enabled: flags & 0x08 == 0,
            keep_active_partition_tie_breaker: flags & 0x10 != 0,
            ..Settings::default()
        };
        if flags & 0x20 != 0 {
            settings.max_client_receive_size = 96;
        }
        let t0 = Instant::now();
        World {
            arbiter: Arbiter::for_tests(settings, t0),
            t0,
            slots: (0..SLOTS).map(|_| None).collect(),
            now_ms: 0,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    fn connect(&mut self, i: usize) -> &mut Slot {
        let now = self.now();
        let arbiter = Arc::clone(&self.arbiter);
        let max = arbiter.settings.max_client_receive_size;
        self.slots[i].get_or_insert_with(|| {
            let addr: SocketAddr = ([192, 0, 2, i as u8], 5403).into();
            Slot {
                session: Session::new(arbiter, addr, now),
                reader: FrameReader::new(max),
                stalled: false,
                ring: None,
                held: None,
                last_vote_info: None,
                next_seq: 1,
                init_node: None,
            }
        })
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.u8();
        let i = usize::from(op >> 4) % SLOTS;
        match op & 0x0f {
            0..=8 => {
                let bytes = {
                    let slot = self.connect(i);
                    build_message(input, slot).to_bytes()
                };
                self.push(i, &bytes, input);
            }
            9 => {
                let len = usize::from(input.u16() % 512);
                let bytes = input.bytes(len).to_vec();
                self.connect(i);
                self.push(i, &bytes, input);
            }
            10 => self.close(i, CloseReason::ClientClosed),
            11 => {
                // Time jumps to this client's next deadline.
                let next = self.slots[i]
                    .as_ref()
                    .and_then(|s| s.session.poll_timeout());
                if let Some(t) = next {
                    let ms = t.saturating_duration_since(self.t0).as_millis() as u64;
                    self.now_ms = self.now_ms.max(ms);
                }
                self.timeouts();
            }
            12 => {
                if let Some(slot) = self.slots[i].as_mut() {
                    slot.stalled = !slot.stalled;
                }
                self.drain();
            }
            13 => {
                self.now_ms += u64::from(input.u16());
                self.timeouts();
            }
            _ => {
                // Accessors the driver calls; must not panic.
                if let Some(slot) = &self.slots[i] {
                    let _ = slot.session.dead_peer_interval_ms();
                    let _ = slot.session.algorithm_ran();
                    if let Some(t) = slot.session.poll_timeout() {
                        let _ = t.saturating_duration_since(self.now());
                    }
                }
            }
        }
    }

    /// Every session whose deadline passed handles it.
    fn timeouts(&mut self) {
        let now = self.now();
        for slot in self.slots.iter_mut().flatten() {
            // Bounded: each call handles at least one deadline.
            for _ in 0..8 {
                match slot.session.poll_timeout() {
                    Some(t) if t <= now => slot.session.handle_timeout(now),
                    _ => break,
                }
            }
        }
        self.drain();
    }

    /// Pushes bytes the client sent through its frame reader and the
    /// session, as the driver does, then delivers what every session has.
    fn push(&mut self, i: usize, bytes: &[u8], input: &mut Input<'_>) {
        let now = self.now();
        if let Some(slot) = self.slots[i].as_mut() {
            slot.reader.push(bytes);
            while let Some(frame) = slot.reader.next_frame() {
                if let Frame::Message(raw) = &frame {
                    note_sent(slot, raw);
                }
                slot.session.handle_frame(frame, now);
                if slot.session.poll_start_tls() {
                    // The bytes after STARTTLS belong to the handshake.
                    slot.reader.take_buffered();
                    let name = slot
                        .session
                        .cluster_name()
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default();
                    let peer_names = match input.u8() % 4 {
                        0 => None,
                        1 => Some(vec!["other".to_string()]),
                        2 => Some(vec![name.to_uppercase()]),
                        _ => Some(vec![name]),
                    };
                    slot.session.handle_tls_established(peer_names, now);
                }
                if slot.session.node_id().is_none() {
                    // INIT refused or not yet sent: the model has no vote.
                    slot.held = None;
                }
                if slot.session.poll_close().is_some() {
                    break;
                }
            }
        }
        self.drain();
    }

    /// The connection of slot `i` closes.
    fn close(&mut self, i: usize, reason: CloseReason) {
        if let Some(mut slot) = self.slots[i].take() {
            slot.session.close(reason);
            slot.session.finish(self.now());
            self.drain();
        }
    }

    /// Lets every session take its mailbox and hands what it transmits to
    /// its client (unless stalled), checking each message; closes the
    /// sessions that want to close. Repeats until nothing moves.
    fn drain(&mut self) {
        let now = self.now();
        for _ in 0..4 * SLOTS {
            let mut closing = Vec::new();
            for i in 0..SLOTS {
                let Some(slot) = self.slots[i].as_mut() else {
                    continue;
                };
                slot.session.handle_mailbox(now);
                if !slot.stalled {
                    let mut out = Vec::new();
                    slot.session.poll_transmit(&mut out);
                    let mut frames = FrameReader::new(usize::MAX >> 1);
                    frames.push(&out);
                    let mut n = 0;
                    while let Some(f) = frames.next_frame() {
                        let Frame::Message(raw) = f else {
                            panic!("the server sent a message it cannot frame itself");
                        };
                        n += raw.len();
                        deliver(&self.arbiter, slot, &raw);
                    }
                    assert_eq!(n, out.len(), "transmitted bytes are whole messages");
                }
                if slot.session.poll_close().is_some() {
                    closing.push(i);
                }
            }
            if closing.is_empty() {
                return;
            }
            for i in closing {
                if let Some(mut slot) = self.slots[i].take() {
                    slot.session.finish(now);
                }
            }
        }
    }

    /// The invariants that hold between operations.
    fn check(&self) {
        let table = &self.arbiter.table;
        let mut joined = 0;
        let mut names = BTreeSet::new();
        // Per cluster: the rings its clients hold ACK for.
        let mut ack_rings: BTreeMap<Vec<u8>, BTreeSet<RingId>> = BTreeMap::new();
        for slot in self.slots.iter().flatten() {
            let Some(node) = slot.session.node_id() else {
                continue;
            };
            joined += 1;
            let name = slot.session.cluster_name().expect("joined without a name");
            names.insert(name.to_vec());
            let cluster = table.get(name).expect("joined client's cluster missing");
            let entry = lock(&cluster);
            assert!(
                entry.cluster.client(node).is_some(),
                "joined node {node} not in its cluster"
            );
            assert!(
                entry.mailboxes.contains_key(&node),
                "no mailbox for node {node}"
            );
            if entry.cluster.algorithm() != AlgorithmKind::Test && slot.held == Some(Vote::Ack) {
                if let Some(ring) = slot.ring {
                    ack_rings.entry(name.to_vec()).or_default().insert(ring);
                }
            }
        }
        assert_eq!(table.client_count(), joined, "table client count");
        assert_eq!(table.cluster_count(), names.len(), "table cluster count");
        for (name, rings) in ack_rings {
            assert!(
                rings.len() <= 1,
                "cluster {:?}: clients hold ACK for rings {rings:?}",
                String::from_utf8_lossy(&name)
            );
        }
    }
}

/// Checks one message a client received and applies it to its model.
fn deliver(arbiter: &Arbiter, slot: &mut Slot, bytes: &[u8]) {
    let msg = decode_whole(bytes);
    let t = msg.msg_type();
    assert!(
        !t.is_client_to_server() || t == MsgType::EchoReply,
        "server sent a client-to-server {}",
        t.name()
    );
    if let Message::VoteInfo(v) = &msg {
        let node = slot.session.node_id().expect("VOTE_INFO to a non-client");
        let name = slot.session.cluster_name().expect("client without a name");
        let cluster = arbiter
            .table
            .get(name)
            .expect("VOTE_INFO from a missing cluster");
        let entry = lock(&cluster);
        let client = entry
            .cluster
            .client(node)
            .expect("VOTE_INFO to a non-member");
        assert!(
            client.config.is_some() && client.membership.is_some(),
            "VOTE_INFO to node {node} before its config and membership lists"
        );
        slot.last_vote_info = v.seq;
    }
    let (vote, ring) = match &msg {
        Message::NodeListReply(r) => (r.vote, r.ring_id),
        Message::AskForVoteReply(r) => (r.vote, r.ring_id),
        Message::HeuristicsChangeReply(r) => (r.vote, r.ring_id),
        Message::VoteInfo(v) => (v.vote, v.ring_id),
        Message::InitReply(r) => {
            if r.error_code == Some(wire::ErrorCode::NO_ERROR) {
                assert_eq!(
                    slot.session.node_id(),
                    slot.init_node,
                    "INIT_REPLY(ok) node"
                );
            }
            (None, None)
        }
        _ => (None, None),
    };
    if let (Some(vote), Some(ring)) = (vote, ring) {
        if Some(ring) == slot.ring && vote != Vote::NoChange {
            slot.held = Some(vote);
        }
    }
}

/// Decodes a whole queued message, which must be well-formed.
fn decode_whole(bytes: &[u8]) -> Message {
    let head: &[u8; HEADER_LEN] = bytes.first_chunk().expect("queued message too short");
    let header = Header::parse(head);
    assert_eq!(
        header.length as usize,
        bytes.len() - HEADER_LEN,
        "length field"
    );
    let t = MsgType::from_u16(header.msg_type).expect("queued message of unknown type");
    wire::decode(t, &bytes[HEADER_LEN..]).expect("queued message does not decode")
}

/// The client model's view of what it sends: INIT and membership lists set
/// its ring; a new ring drops its vote (the client stops voting until the
/// server answers for the new ring).
fn note_sent(slot: &mut Slot, raw: &[u8]) {
    let Some(t) = raw
        .first_chunk::<2>()
        .and_then(|b| MsgType::from_u16(u16::from_be_bytes(*b)))
    else {
        return;
    };
    let Ok(msg) = wire::decode(t, raw.get(HEADER_LEN..).unwrap_or_default()) else {
        return;
    };
    let ring = match &msg {
        Message::Init(m) if slot.session.node_id().is_none() => {
            slot.init_node = m.node_id;
            m.ring_id
        }
        Message::NodeList(l) if l.list_type == Some(NodeListType::Membership) => l.ring_id,
        _ => None,
    };
    if let Some(ring) = ring {
        if slot.ring != Some(ring) {
            slot.held = None;
        }
        slot.ring = Some(ring);
    }
}

/// A node list: bit `k` of `mask` lists node `k + 1`.
fn node_list(mask: u8) -> Vec<NodeInfo> {
    (0..8u32)
        .filter(|k| mask & (1 << k) != 0)
        .map(|k| NodeInfo::new(k + 1))
        .collect()
}

fn ring(input: &mut Input<'_>) -> RingId {
    let b = input.u8();
    RingId::new(u32::from(b >> 5) + 1, u64::from(b & 0x1f))
}

fn heuristics(b: u8) -> Option<Heuristics> {
    match b % 3 {
        0 => None,
        1 => Some(Heuristics::Pass),
        _ => Some(Heuristics::Fail),
    }
}

/// A client message from a compact description: mostly well-formed and
/// plausible, sometimes with options missing or out of range.
fn build_message(input: &mut Input<'_>, slot: &mut Slot) -> Message {
    let kind = input.u8();
    // Bit 7: drop the sequence number.
    let seq = if kind & 0x80 != 0 {
        None
    } else {
        slot.next_seq = slot.next_seq.wrapping_add(1);
        Some(slot.next_seq)
    };
    match kind & 0x7f {
        0..=9 => {
            let b = input.u8();
            let name = match b % 4 {
                0 | 1 => Some(NAMES[usize::from(b % 2)].to_vec()),
                2 => Some(input.bytes(usize::from(b >> 4)).to_vec()),
                _ => None,
            };
            Message::Preinit(Preinit {
                seq,
                cluster_name: name,
            })
        }
        10..=13 => Message::StartTls(StartTls { seq }),
        14..=29 => {
            let b = input.u8();
            let missing = input.u8();
            let node = match b % 8 {
                7 => input.u32(),
                n => u32::from(n) + 1,
            };
            let hb = match (b >> 3) % 8 {
                0 => 0,
                1 => 999,
                2 => 120_001,
                3 => input.u32(),
                _ => 8000,
            };
            let algorithm = match input.u8() % 8 {
                0 => AlgorithmKind::Test as u16,
                1 | 4 => AlgorithmKind::Ffsplit as u16,
                2 | 5 => AlgorithmKind::TwoNodeLms as u16,
                3 | 6 => AlgorithmKind::Lms as u16,
                _ => input.u16(),
            };
            let tb = match input.u8() % 6 {
                0 | 3 => TieBreaker::Lowest,
                1 | 4 => TieBreaker::Highest,
                2 => TieBreaker::NodeId(1),
                _ => TieBreaker::NodeId(input.u32()),
            };
            let ring = ring(input);
            let keep = |bit: u8| missing & 0x80 == 0 || missing & (1 << bit) == 0;
            Message::Init(Init {
                seq,
                supported_messages: keep(0)
                    .then(|| MsgType::ALL.iter().map(|t| *t as u16).collect()),
                supported_options: keep(1).then(|| (0..24).collect()),
                node_id: keep(2).then_some(node),
                decision_algorithm: keep(3).then_some(algorithm),
                heartbeat_interval: keep(4).then_some(hb),
                tie_breaker: keep(5).then_some(tb),
                ring_id: keep(6).then_some(ring),
            })
        }
        30..=41 => {
            let b = input.u8();
            let nodes = node_list(input.u8());
            Message::NodeList(NodeList {
                seq,
                list_type: Some(if b & 1 == 0 {
                    NodeListType::InitialConfig
                } else {
                    NodeListType::ChangedConfig
                }),
                ring_id: None,
                config_version: (b & 2 != 0).then_some(u64::from(b >> 2)),
                quorate: None,
                nodes,
                heuristics: None,
            })
        }
        42..=61 => {
            let b = input.u8();
            let ring = ring(input);
            let nodes = node_list(input.u8());
            Message::NodeList(NodeList {
                seq,
                list_type: Some(NodeListType::Membership),
                ring_id: (b & 0x40 == 0).then_some(ring),
                config_version: None,
                quorate: None,
                nodes,
                heuristics: heuristics(b),
            })
        }
        62..=71 => {
            let b = input.u8();
            let nodes = node_list(input.u8());
            Message::NodeList(NodeList {
                seq,
                list_type: (b & 0x40 == 0).then_some(NodeListType::Quorum),
                ring_id: None,
                config_version: None,
                quorate: (b & 0x20 == 0).then_some(b & 1 == 1),
                nodes,
                heuristics: None,
            })
        }
        72..=79 => Message::AskForVote(SeqOnly { seq }),
        80..=95 => {
            let b = input.u8();
            let reply_seq = match b % 4 {
                // A real client only acknowledges what it received: a
                // client that does not read sends no arbitrary seq.
                0 if !slot.stalled => Some(input.u32()),
                1 => None,
                _ => slot.last_vote_info,
            };
            Message::VoteInfoReply(SeqOnly { seq: reply_seq })
        }
        96..=105 => Message::HeuristicsChange(HeuristicsChange {
            seq,
            heuristics: heuristics(input.u8()),
        }),
        106..=113 => {
            let b = input.u8();
            Message::SetOption(SetOption {
                seq,
                heartbeat_interval: match b % 4 {
                    0 => None,
                    1 => Some(input.u32()),
                    _ => Some(10_000),
                },
                kap: match (b >> 2) % 3 {
                    0 => None,
                    n => Some(n == 1),
                },
            })
        }
        114..=121 => Message::EchoRequest(Echo { seq }),
        _ => Message::VoteInfo(VoteInfo {
            seq,
            vote: Some(Vote::Ack),
            ring_id: Some(ring(input)),
        }),
    }
}

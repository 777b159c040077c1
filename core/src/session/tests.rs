//! Session tests on a virtual clock: every `now` is an explicit offset from
//! one origin, so dead-peer, NACK-acknowledgement, INIT, TLS-handshake and
//! algorithm-timer behaviour is checked to the millisecond, without sleeps,
//! sockets or log scraping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_algorithms::{AlgorithmKind, Heuristics, NodeInfo, RingId, TieBreaker, Vote};

use super::*;
use crate::arbiter::Arbiter;
use crate::close::{CloseReason, TlsFailureKind};
use crate::config::{Settings, TlsMode};
use crate::framing::{Frame, FrameReader, SkipReason};
use crate::mailbox::Delivery;
use crate::memory::{Holders, VoteMemory};
use crate::wire::{
    self, ErrorCode, Init, Message, MsgType, NodeList, NodeListType, Preinit, SeqOnly,
    TlsSupported, HEADER_LEN,
};

/// One arbiter and its clock origin.
struct World {
    arbiter: Arc<Arbiter>,
    t0: Instant,
}

impl World {
    fn new(settings: Settings) -> World {
        let t0 = Instant::now();
        World {
            arbiter: Arbiter::for_tests(settings, t0),
            t0,
        }
    }

    fn plain() -> World {
        World::new(Settings {
            tls: TlsMode::Off,
            ..Settings::default()
        })
    }

    /// The instant `ms` after the origin.
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn session(&self, port: u16, at_ms: u64) -> Session {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        Session::new(Arc::clone(&self.arbiter), addr, self.at(at_ms))
    }
}

/// Encodes `msg`, splits it like the driver does and feeds it at `now`.
fn feed(s: &mut Session, msg: &Message, now: Instant) {
    let mut frames = FrameReader::new(1 << 20);
    frames.push(&msg.to_bytes());
    while let Some(f) = frames.next_frame() {
        s.handle_frame(f, now);
    }
}

/// Everything the session has to send, decoded.
fn sent(s: &mut Session) -> Vec<Message> {
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let mut frames = FrameReader::new(1 << 20);
    frames.push(&out);
    let mut msgs = Vec::new();
    while let Some(Frame::Message(raw)) = frames.next_frame() {
        let t = MsgType::from_u16(u16::from_be_bytes([raw[0], raw[1]])).unwrap();
        msgs.push(wire::decode(t, &raw[HEADER_LEN..]).unwrap());
    }
    msgs
}

fn preinit(cluster: &str) -> Message {
    Message::Preinit(Preinit {
        seq: Some(1),
        cluster_name: Some(cluster.as_bytes().to_vec()),
    })
}

fn init(node: u32, hb: Option<u32>, algorithm: Option<u16>) -> Message {
    Message::Init(Init {
        seq: Some(2),
        supported_messages: None,
        supported_options: None,
        node_id: Some(node),
        decision_algorithm: algorithm,
        heartbeat_interval: hb,
        tie_breaker: Some(TieBreaker::Lowest),
        ring_id: Some(RingId::new(1, 4)),
    })
}

fn list(seq: u32, t: NodeListType, ring: Option<RingId>, nodes: &[u32]) -> Message {
    Message::NodeList(NodeList {
        seq: Some(seq),
        list_type: Some(t),
        ring_id: ring,
        quorate: (t == NodeListType::Quorum).then_some(true),
        nodes: nodes.iter().map(|n| NodeInfo::new(*n)).collect(),
        heuristics: (t == NodeListType::Membership).then_some(Heuristics::Undefined),
        ..Default::default()
    })
}

fn echo(seq: u32) -> Message {
    Message::EchoRequest(wire::Echo { seq: Some(seq) })
}

fn init_code(s: &mut Session) -> ErrorCode {
    match sent(s).pop() {
        Some(Message::InitReply(r)) => r.error_code.unwrap(),
        other => panic!("expected INIT_REPLY, got {other:?}"),
    }
}

fn init_ring(node: u32, ring: RingId) -> Message {
    match init(node, Some(8000), Some(AlgorithmKind::Ffsplit as u16)) {
        Message::Init(mut m) => {
            m.ring_id = Some(ring);
            Message::Init(m)
        }
        _ => unreachable!(),
    }
}

/// A client of `cluster` (ffsplit, heartbeat 8 s, ring 1.4) through INIT at
/// `at_ms`.
fn joined(w: &World, cluster: &str, node: u32, at_ms: u64) -> Session {
    joined_on(w, cluster, node, RingId::new(1, 4), at_ms)
}

fn joined_on(w: &World, cluster: &str, node: u32, ring: RingId, at_ms: u64) -> Session {
    let mut s = w.session(40000 + node as u16, at_ms);
    feed(&mut s, &preinit(cluster), w.at(at_ms));
    feed(&mut s, &init_ring(node, ring), w.at(at_ms));
    assert_eq!(init_code(&mut s), ErrorCode::NO_ERROR);
    s
}

/// The vote a qdevice would hold after `msgs`: the last ACK/NACK of its
/// current ring, from VOTE_INFOs and replies.
fn held(msgs: &[Message], ring: RingId) -> Option<Vote> {
    msgs.iter()
        .rev()
        .filter_map(|m| match m {
            Message::VoteInfo(v) if v.ring_id == Some(ring) => v.vote,
            Message::NodeListReply(r) if r.ring_id == Some(ring) => r.vote,
            _ => None,
        })
        .find(|v| matches!(v, Vote::Ack | Vote::Nack))
}

/// A node as qdevice starts it: INIT on `ring`, config, membership and
/// quorum lists at `at_ms`. Returns the session and what it sent.
fn ffsplit_node(
    w: &World,
    cluster: &str,
    node: u32,
    config: &[u32],
    ring: RingId,
    members: &[u32],
    at_ms: u64,
) -> (Session, Vec<Message>) {
    let mut s = joined_on(w, cluster, node, ring, at_ms);
    let now = w.at(at_ms);
    feed(
        &mut s,
        &list(3, NodeListType::InitialConfig, None, config),
        now,
    );
    feed(
        &mut s,
        &list(4, NodeListType::Membership, Some(ring), members),
        now,
    );
    feed(&mut s, &list(5, NodeListType::Quorum, None, members), now);
    let out = acked(&mut s, now);
    (s, out)
}

/// What the session sent, with every VOTE_INFO acknowledged as qdevice
/// does (and what the acknowledgements caused).
fn acked(s: &mut Session, now: Instant) -> Vec<Message> {
    let mut all = Vec::new();
    loop {
        let out = sent(s);
        if out.is_empty() {
            return all;
        }
        for m in &out {
            if let Message::VoteInfo(v) = m {
                feed(s, &Message::VoteInfoReply(SeqOnly { seq: v.seq }), now);
            }
        }
        all.extend(out);
    }
}

#[test]
fn init_error_code_precedence_matches_the_reference() {
    let w = World::plain();
    let mut s = w.session(1, 0);
    let now = w.at(0);
    // No PREINIT and no heartbeat: the heartbeat check (missing = 0)
    // overrides "preinit required", as the reference does.
    feed(&mut s, &init(1, None, Some(1)), now);
    assert_eq!(init_code(&mut s), ErrorCode::INVALID_HEARTBEAT_INTERVAL);
    // No PREINIT, valid heartbeat, unknown algorithm: 12 overrides 6.
    feed(&mut s, &init(1, Some(8000), Some(9)), now);
    assert_eq!(init_code(&mut s), ErrorCode::UNSUPPORTED_DECISION_ALGORITHM);
    // No PREINIT, everything valid: 6.
    feed(&mut s, &init(1, Some(8000), Some(1)), now);
    assert_eq!(init_code(&mut s), ErrorCode::PREINIT_REQUIRED);
    // After PREINIT, a missing algorithm: 7.
    feed(&mut s, &preinit("c"), now);
    sent(&mut s);
    feed(&mut s, &init(1, Some(8000), None), now);
    assert_eq!(init_code(&mut s), ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION);
    // Heartbeat bounds are inclusive.
    feed(&mut s, &init(1, Some(120_001), Some(1)), now);
    assert_eq!(init_code(&mut s), ErrorCode::INVALID_HEARTBEAT_INTERVAL);
    feed(&mut s, &init(1, Some(120_000), Some(1)), now);
    assert_eq!(init_code(&mut s), ErrorCode::NO_ERROR);
    assert_eq!(s.dead_peer_interval_ms(), 180_000);
}

#[test]
fn a_stream_of_errors_closes_the_connection() {
    let w = World::plain();
    let mut s = w.session(1, 0);
    let skipped = || Frame::Skipped {
        msg_type: 0x4142,
        length: 10,
        reason: SkipReason::UnknownType,
    };
    for i in 1..MAX_PROTOCOL_ERRORS {
        s.handle_frame(skipped(), w.at(0));
        assert_eq!(s.poll_close(), None, "error {i} keeps the connection");
    }
    s.handle_frame(skipped(), w.at(0));
    assert_eq!(
        s.poll_close(),
        Some(&CloseReason::TooManyErrors {
            count: MAX_PROTOCOL_ERRORS
        })
    );
    // Every error was still answered.
    assert_eq!(sent(&mut s).len(), MAX_PROTOCOL_ERRORS as usize);
}

#[test]
fn an_absurd_length_claim_is_answered_and_closes() {
    let w = World::plain();
    let mut s = w.session(1, 0);
    s.handle_frame(
        Frame::Skipped {
            msg_type: MsgType::EchoRequest as u16,
            length: u32::MAX,
            reason: SkipReason::TooLong,
        },
        w.at(0),
    );
    assert!(matches!(
        s.poll_close(),
        Some(CloseReason::MessageTooLong { .. })
    ));
    match sent(&mut s).as_slice() {
        [Message::ServerError(e)] => assert_eq!(e.error_code, Some(ErrorCode::MESSAGE_TOO_LONG)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dpd_interval_limit_refuses_the_heartbeat() {
    let mut settings = Settings {
        tls: TlsMode::Off,
        ..Settings::default()
    };
    settings
        .set_advanced("dpd_interval_coefficient", "150")
        .unwrap();
    settings
        .set_advanced("heartbeat_interval_max", "200000")
        .unwrap();
    let w = World::new(settings);
    let mut s = w.session(1, 0);
    feed(&mut s, &preinit("c"), w.at(0));
    sent(&mut s);
    // 150 x 120001 ms exceeds the 18,000,000 ms timer limit.
    feed(&mut s, &init(1, Some(120_001), Some(1)), w.at(0));
    assert_eq!(init_code(&mut s), ErrorCode::INVALID_HEARTBEAT_INTERVAL);
}

#[test]
fn tls_required_refuses_plain_messages_but_keeps_the_connection() {
    let w = World::new(Settings {
        tls: TlsMode::Required,
        ..Settings::default()
    });
    let mut s = w.session(1, 0);
    feed(&mut s, &preinit("c"), w.at(0));
    match sent(&mut s).pop() {
        Some(Message::PreinitReply(r)) => {
            assert_eq!(r.tls_supported, Some(TlsSupported::Required))
        }
        other => panic!("{other:?}"),
    }
    feed(&mut s, &init(1, Some(8000), Some(1)), w.at(0));
    assert_eq!(s.poll_close(), None);
    match sent(&mut s).pop() {
        Some(Message::ServerError(e)) => {
            assert_eq!(e.error_code, Some(ErrorCode::TLS_REQUIRED));
            assert_eq!(e.seq, Some(2));
        }
        other => panic!("{other:?}"),
    }
    feed(
        &mut s,
        &Message::StartTls(wire::StartTls { seq: Some(3) }),
        w.at(0),
    );
    assert!(s.poll_start_tls());
    assert!(!s.poll_start_tls(), "asked once");
}

#[test]
fn client_certificate_must_name_the_cluster() {
    let settings = Settings {
        tls: TlsMode::On,
        ..Settings::default()
    };
    let w = World::new(settings);
    let start = |names: Option<Vec<String>>| {
        let mut s = w.session(1, 0);
        feed(&mut s, &preinit("c"), w.at(0));
        s.handle_tls_established(names, w.at(1));
        feed(&mut s, &init(1, Some(8000), Some(1)), w.at(2));
        s
    };
    let mut s = start(Some(vec!["C".into()]));
    assert_eq!(s.poll_close(), None);
    assert!(matches!(sent(&mut s).pop(), Some(Message::InitReply(_))));
    let s = start(Some(vec!["other".into()]));
    assert_eq!(
        s.poll_close(),
        Some(&CloseReason::CertificateMismatch {
            names: vec!["other".into()],
            cluster: "c".into()
        })
    );
    let s = start(None);
    assert_eq!(s.poll_close(), Some(&CloseReason::NoClientCertificate));
}

#[test]
fn the_dead_peer_deadline_follows_the_heartbeat() {
    let w = World::plain();
    let mut s = w.session(1, 0);
    // Before INIT: 1.5 x 120 s, but the INIT deadline (5 s) comes first.
    assert_eq!(s.poll_timeout(), Some(w.at(5_000)));
    feed(&mut s, &preinit("c"), w.at(100));
    feed(&mut s, &init(1, Some(8000), Some(1)), w.at(200));
    sent(&mut s);
    // After INIT: 1.5 x 8 s from the last message.
    assert_eq!(s.poll_timeout(), Some(w.at(12_200)));
    s.handle_timeout(w.at(12_199));
    assert_eq!(s.poll_close(), None);
    feed(&mut s, &echo(9), w.at(11_000));
    assert!(matches!(sent(&mut s).as_slice(), [Message::EchoReply(_)]));
    assert_eq!(s.poll_timeout(), Some(w.at(23_000)));
    s.handle_timeout(w.at(23_000));
    assert_eq!(
        s.poll_close(),
        Some(&CloseReason::DeadPeer {
            interval_ms: 12_000
        })
    );
    assert_eq!(s.poll_timeout(), None, "a closing session has no deadline");
}

#[test]
fn a_skipped_message_does_not_count_as_life() {
    let w = World::plain();
    let mut s = joined(&w, "c", 1, 0);
    s.handle_frame(
        Frame::Skipped {
            msg_type: 0x7777,
            length: 4,
            reason: SkipReason::UnknownType,
        },
        w.at(10_000),
    );
    assert_eq!(s.poll_timeout(), Some(w.at(12_000)));
}

#[test]
fn without_dead_peer_detection_an_idle_client_stays() {
    let mut settings = Settings {
        tls: TlsMode::Off,
        ..Settings::default()
    };
    settings.set_advanced("dpd_enabled", "off").unwrap();
    let w = World::new(settings);
    let mut s = joined(&w, "c", 1, 0);
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(w.at(10_000_000));
    assert_eq!(s.poll_close(), None);
}

#[test]
fn init_must_complete_within_init_timeout() {
    let w = World::plain();
    let mut s = w.session(1, 0);
    feed(&mut s, &preinit("c"), w.at(4_000));
    sent(&mut s);
    s.handle_timeout(w.at(4_999));
    assert_eq!(s.poll_close(), None);
    s.handle_timeout(w.at(5_000));
    assert_eq!(
        s.poll_close(),
        Some(&CloseReason::InitTimeout { timeout_ms: 5_000 })
    );
    // A client that completed INIT in time is not cut.
    let mut s = joined(&w, "d", 1, 4_900);
    s.handle_timeout(w.at(5_000));
    assert_eq!(s.poll_close(), None);
}

#[test]
fn the_tls_handshake_has_its_own_deadline_within_init() {
    let mut settings = Settings::default();
    settings.set_advanced("init_timeout", "60000").unwrap();
    let w = World::new(settings);
    let mut s = w.session(1, 0);
    feed(&mut s, &preinit("c"), w.at(100));
    feed(
        &mut s,
        &Message::StartTls(wire::StartTls { seq: Some(2) }),
        w.at(200),
    );
    assert!(s.poll_start_tls());
    assert_eq!(s.poll_timeout(), Some(w.at(10_200)));
    s.handle_timeout(w.at(10_200));
    match s.poll_close() {
        Some(CloseReason::TlsHandshake(f)) => assert_eq!(f.kind, TlsFailureKind::Timeout),
        other => panic!("{other:?}"),
    }
    // With the default INIT deadline (5 s), that one comes first.
    let w = World::new(Settings::default());
    let mut s = w.session(1, 0);
    feed(&mut s, &preinit("c"), w.at(100));
    feed(
        &mut s,
        &Message::StartTls(wire::StartTls { seq: Some(2) }),
        w.at(200),
    );
    assert_eq!(s.poll_timeout(), Some(w.at(5_000)));
    // Once the handshake completed, only INIT's deadline is left.
    s.handle_tls_established(Some(vec!["c".into()]), w.at(300));
    assert_eq!(s.poll_timeout(), Some(w.at(5_000)));
}

/// A session after PREINIT and STARTTLS at `at_ms` (TLS on, INIT deadline
/// 5 s, TLS handshake deadline 10 s).
fn starting_tls(w: &World, at_ms: u64) -> Session {
    let mut s = w.session(1, 0);
    feed(&mut s, &preinit("c"), w.at(at_ms));
    feed(
        &mut s,
        &Message::StartTls(wire::StartTls { seq: Some(2) }),
        w.at(at_ms),
    );
    assert!(s.poll_start_tls());
    s
}

#[test]
fn waiting_for_the_server_stops_the_clients_deadlines() {
    let w = World::new(Settings::default());
    let mut s = starting_tls(&w, 100);
    assert_eq!(s.poll_timeout(), Some(w.at(5_000)));
    // The handshake step waits 9.8 s for a handshake worker.
    s.handle_server_wait(w.at(200));
    assert!(s.waits_for_server());
    assert_eq!(s.poll_timeout(), None, "no client deadline runs meanwhile");
    s.handle_timeout(w.at(10_000));
    assert_eq!(s.poll_close(), None, "not cut while the server is busy");
    // Waiting again changes nothing: the wait started at 200.
    s.handle_server_wait(w.at(5_000));
    s.handle_server_resume(w.at(10_000));
    assert!(!s.waits_for_server());
    // The INIT deadline moved by the 9.8 s waited: 5.0 s + 9.8 s.
    assert_eq!(s.poll_timeout(), Some(w.at(14_800)));
    s.handle_timeout(w.at(14_799));
    assert_eq!(s.poll_close(), None);
    s.handle_timeout(w.at(14_800));
    assert_eq!(
        s.poll_close(),
        Some(&CloseReason::InitTimeout { timeout_ms: 5_000 })
    );
}

#[test]
fn waiting_for_the_server_moves_the_handshake_deadline_too() {
    let mut settings = Settings::default();
    settings.set_advanced("init_timeout", "60000").unwrap();
    let w = World::new(settings);
    let mut s = starting_tls(&w, 100);
    // TLS handshake deadline: 10 s after STARTTLS.
    assert_eq!(s.poll_timeout(), Some(w.at(10_100)));
    // Two steps of the handshake wait 1 s and 2 s for a worker; the
    // client's own round trip in between counts.
    s.handle_server_wait(w.at(100));
    s.handle_server_resume(w.at(1_100));
    assert_eq!(s.poll_timeout(), Some(w.at(11_100)));
    s.handle_server_wait(w.at(3_000));
    s.handle_server_resume(w.at(5_000));
    assert_eq!(s.poll_timeout(), Some(w.at(13_100)));
    s.handle_timeout(w.at(13_099));
    assert_eq!(s.poll_close(), None);
    s.handle_timeout(w.at(13_100));
    match s.poll_close() {
        Some(CloseReason::TlsHandshake(f)) => assert_eq!(f.kind, TlsFailureKind::Timeout),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_that_is_slow_itself_is_still_cut() {
    // Resuming without waiting is a no-op: the deadlines stay.
    let w = World::new(Settings::default());
    let mut s = starting_tls(&w, 100);
    s.handle_server_resume(w.at(3_000));
    assert_eq!(s.poll_timeout(), Some(w.at(5_000)));
    s.handle_timeout(w.at(5_000));
    assert_eq!(
        s.poll_close(),
        Some(&CloseReason::InitTimeout { timeout_ms: 5_000 })
    );
}

#[test]
fn a_nack_must_be_acknowledged_within_the_dead_peer_interval() {
    let w = World::plain();
    let mut s = joined(&w, "c", 1, 0);
    let ring = RingId::new(1, 4);
    s.handle_delivery(
        Delivery::VoteInfo {
            seq: 5,
            vote: Vote::Nack,
            ring,
        },
        w.at(1_000),
    );
    assert!(
        matches!(sent(&mut s).as_slice(), [Message::VoteInfo(v)] if v.vote == Some(Vote::Nack))
    );
    // Heartbeats keep the peer alive, but not the NACK.
    feed(&mut s, &echo(6), w.at(12_000));
    assert_eq!(s.poll_timeout(), Some(w.at(13_000)));
    // A reply to an older VOTE_INFO does not count.
    feed(
        &mut s,
        &Message::VoteInfoReply(SeqOnly { seq: Some(4) }),
        w.at(12_500),
    );
    s.handle_timeout(w.at(13_000));
    assert_eq!(
        s.poll_close(),
        Some(&CloseReason::NackNotAcknowledged {
            seq: 5,
            within_ms: 12_000
        })
    );

    // Acknowledged in time (or a later VOTE_INFO acknowledged): no deadline.
    let mut s = joined(&w, "d", 1, 0);
    s.handle_delivery(
        Delivery::VoteInfo {
            seq: 7,
            vote: Vote::Nack,
            ring,
        },
        w.at(1_000),
    );
    feed(
        &mut s,
        &Message::VoteInfoReply(SeqOnly { seq: Some(8) }),
        w.at(2_000),
    );
    assert_eq!(s.poll_timeout(), Some(w.at(14_000)), "only the dead peer's");
}

#[test]
fn the_algorithm_timer_is_armed_cancelled_and_fired_by_time() {
    let w = World::plain();
    let mut s = joined(&w, "c", 1, 0);
    s.handle_delivery(Delivery::ArmTimer { after_ms: 2_000 }, w.at(500));
    assert_eq!(s.poll_timeout(), Some(w.at(2_500)));
    s.handle_delivery(Delivery::CancelTimer, w.at(600));
    assert_eq!(s.poll_timeout(), Some(w.at(12_000)));
}

#[test]
fn the_restart_hold_ends_on_the_algorithm_timer() {
    // A cluster whose partition {3,4} held the vote before a restart; node 1
    // comes back alone. During the hold it gets NACK; at the hold's end its
    // timer re-decides and it gets ACK.
    let t0 = Instant::now();
    let mut holders = Holders::new();
    holders.insert(
        b"c".to_vec(),
        crate::memory::Holder {
            algorithm: AlgorithmKind::Ffsplit,
            ring: RingId::new(3, 8),
            members: vec![3, 4],
            since_unix_ms: 0,
            seen_unix_ms: 0,
        },
    );
    let arbiter = Arc::new(Arbiter::new(
        Arc::new(Settings {
            tls: TlsMode::Off,
            ..Settings::default()
        }),
        Arc::new(VoteMemory::new(holders, 30_000, None)),
        t0,
        0,
    ));
    let w = World { arbiter, t0 };
    let ring = RingId::new(1, 9);
    let (mut s, out) = ffsplit_node(&w, "c", 1, &[1, 2, 3, 4], ring, &[1, 2], 1_000);
    assert_eq!(
        held(&out, ring),
        Some(Vote::Nack),
        "held for the old winner: {out:?}"
    );
    assert_eq!(s.poll_timeout(), Some(w.at(13_000)), "dead peer first");
    // Heartbeats until the hold ends.
    for t in (8_000..30_000).step_by(8_000) {
        feed(&mut s, &echo(t as u32), w.at(t));
        sent(&mut s);
    }
    assert_eq!(s.poll_timeout(), Some(w.at(30_000)), "the hold's timer");
    s.handle_timeout(w.at(30_000));
    assert_eq!(s.poll_close(), None);
    let out = sent(&mut s);
    assert_eq!(held(&out, ring), Some(Vote::Ack), "the hold ended: {out:?}");
}

#[test]
fn deliveries_come_out_in_decision_order_before_the_own_reply() {
    let w = World::plain();
    let ring = RingId::new(1, 8);
    let (mut a, a_out) = ffsplit_node(&w, "c", 1, &[1, 2], ring, &[1, 2], 10);
    assert_eq!(held(&a_out, ring), Some(Vote::Ack), "{a_out:?}");
    let (mut b, b_out) = ffsplit_node(&w, "c", 2, &[1, 2], ring, &[1, 2], 20);
    assert_eq!(held(&b_out, ring), Some(Vote::Ack), "{b_out:?}");
    // Node 2's arrival re-voted node 1: a VOTE_INFO waits in its mailbox,
    // not yet encoded; node 1's next reply must come after it.
    assert_eq!(a.mailbox().len(), 1);
    feed(&mut a, &echo(50), w.at(30));
    let out = sent(&mut a);
    assert!(
        matches!(out.as_slice(), [Message::VoteInfo(v), Message::EchoReply(_)] if v.vote == Some(Vote::Ack)),
        "{out:?}"
    );
    // Split 1 / 2: node 2 reports first, then node 1; the lowest node id
    // wins the 50:50 split.
    let (r1, r2) = (RingId::new(1, 12), RingId::new(2, 12));
    feed(
        &mut b,
        &list(6, NodeListType::Membership, Some(r2), &[2]),
        w.at(40),
    );
    feed(&mut b, &list(7, NodeListType::Quorum, None, &[2]), w.at(40));
    let b_first = acked(&mut b, w.at(40));
    feed(
        &mut a,
        &list(6, NodeListType::Membership, Some(r1), &[1]),
        w.at(41),
    );
    feed(&mut a, &list(7, NodeListType::Quorum, None, &[1]), w.at(41));
    let a_out = acked(&mut a, w.at(41));
    b.handle_mailbox(w.at(42));
    let b_out = [b_first, acked(&mut b, w.at(42))].concat();
    // Node 1 keeps its ACK (NO_CHANGE on its new ring), node 2 loses it.
    assert_eq!(held(&a_out, r1), None, "{a_out:?}");
    assert_eq!(held(&b_out, r2), Some(Vote::Nack), "{b_out:?}");
    assert!(matches!(a_out.last(), Some(Message::NodeListReply(_))));
}

#[test]
fn a_full_mailbox_kicks_its_session() {
    let w = World::plain();
    let mut s = joined(&w, "c", 1, 0);
    let ring = RingId::new(1, 4);
    let cap = w.arbiter.settings.max_client_send_buffers;
    for seq in 0..cap as u32 {
        assert!(s.mailbox().deliver(Delivery::VoteInfo {
            seq,
            vote: Vote::Ack,
            ring
        }));
    }
    assert!(!s.mailbox().deliver(Delivery::CancelTimer));
    s.mailbox().kick(CloseReason::SendQueueFull);
    s.handle_mailbox(w.at(1));
    assert_eq!(s.poll_close(), Some(&CloseReason::SendQueueFull));
}

#[test]
fn too_much_unread_output_closes_the_connection() {
    let w = World::plain();
    let mut s = joined(&w, "c", 1, 0);
    let cap = w.arbiter.settings.max_client_send_buffers as u32;
    for seq in 0..cap {
        feed(&mut s, &echo(seq), w.at(1));
    }
    assert_eq!(s.poll_close(), None, "{cap} replies fit");
    feed(&mut s, &echo(cap), w.at(1));
    assert_eq!(s.poll_close(), Some(&CloseReason::SendQueueFull));
}

#[test]
fn no_ack_goes_out_once_the_lease_may_have_expired() {
    let w = World::plain();
    w.arbiter.set_serve_until(Some(w.at(1_000)));
    let ring = RingId::new(1, 9);
    let (_a, a_out) = ffsplit_node(&w, "c", 1, &[1], ring, &[1], 500);
    assert_eq!(held(&a_out, ring), Some(Vote::Ack), "{a_out:?}");
    let (b, b_out) = ffsplit_node(&w, "d", 1, &[1], ring, &[1], 1_000);
    assert_eq!(b.poll_close(), Some(&CloseReason::LeaseExpired));
    assert_eq!(
        held(&b_out, ring),
        None,
        "no ACK after the lease: {b_out:?}"
    );
    // Deliveries are checked too.
    let mut c = joined(&w, "e", 1, 0);
    c.handle_delivery(
        Delivery::VoteInfo {
            seq: 1,
            vote: Vote::Ack,
            ring: RingId::new(1, 9),
        },
        w.at(2_000),
    );
    assert_eq!(c.poll_close(), Some(&CloseReason::LeaseExpired));
    assert!(sent(&mut c).is_empty());
}

#[test]
fn finish_leaves_the_cluster_and_the_others_are_re_decided() {
    let w = World::plain();
    let ring = RingId::new(1, 9);
    let (mut a, _) = ffsplit_node(&w, "c", 1, &[1, 2], ring, &[1, 2], 10);
    let (b, _) = ffsplit_node(&w, "c", 2, &[1, 2], ring, &[1, 2], 10);
    assert_eq!(w.arbiter.table.client_count(), 2);
    a.close(CloseReason::ClientClosed);
    a.finish(w.at(100));
    assert_eq!(w.arbiter.table.client_count(), 1);
    drop(b);
    assert_eq!(
        w.arbiter.table.client_count(),
        0,
        "a dropped session leaves too"
    );
    assert_eq!(w.arbiter.table.cluster_count(), 0);
}

#[test]
fn with_write_ahead_an_ack_waits_until_its_holder_is_durable() {
    let w = World::plain();
    let memory = Arc::clone(w.arbiter.memory());
    memory.set_write_ahead(true, None);
    let ring = RingId::new(1, 9);
    let (mut a, a_out) = ffsplit_node(&w, "c", 1, &[1], ring, &[1], 10);
    // The decision made {1} the holder; its ACK (and the echo reply queued
    // after it) wait for the store.
    assert_eq!(held(&a_out, ring), None, "held back: {a_out:?}");
    feed(&mut a, &echo(77), w.at(20));
    assert!(
        sent(&mut a).is_empty(),
        "the echo reply waits behind the ACK"
    );
    a.handle_mailbox(w.at(30));
    assert!(sent(&mut a).is_empty(), "not durable yet");
    let (_, _, version) = memory.take_changed();
    memory.mark_durable(version);
    a.handle_mailbox(w.at(40));
    let out = sent(&mut a);
    assert_eq!(held(&out, ring), Some(Vote::Ack), "released: {out:?}");
    assert!(
        matches!(out.last(), Some(Message::EchoReply(_))),
        "in order: {out:?}"
    );
    assert_eq!(a.poll_close(), None);
    // An unchanged holder does not wait: the next heartbeat-driven reply is
    // sent at once.
    feed(&mut a, &echo(78), w.at(50));
    assert_eq!(sent(&mut a).len(), 1);
}

#[test]
fn held_acks_are_checked_against_the_lease_when_released() {
    let w = World::plain();
    let memory = Arc::clone(w.arbiter.memory());
    memory.set_write_ahead(true, None);
    w.arbiter.set_serve_until(Some(w.at(1_000)));
    let ring = RingId::new(1, 9);
    let (mut a, a_out) = ffsplit_node(&w, "c", 1, &[1], ring, &[1], 10);
    assert_eq!(held(&a_out, ring), None);
    let (_, _, version) = memory.take_changed();
    memory.mark_durable(version);
    // durable only after the lease's end: the ACK is never sent
    a.handle_mailbox(w.at(1_000));
    assert_eq!(a.poll_close(), Some(&CloseReason::LeaseExpired));
    assert!(sent(&mut a).is_empty());
}

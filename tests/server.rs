//! Integration tests: the real server on 127.0.0.1:0, spoken to byte for
//! byte. Each bad-input test also checks that a healthy cluster next to the
//! offender keeps its votes and its connection.

mod common;

use std::time::Duration;

use common::*;
use qnetd_core::config::Settings;
use qnetd_core::wire::{
    AlgorithmKind, ErrorCode, Heuristics, Message, Preinit, RingId, SeqOnly, TieBreaker, Vote,
};
use qnetd_tools::client::Client;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn preinit_and_init_replies_are_byte_exact() {
    let srv = TestServer::start().await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    // PREINIT seq=1 cluster "mycluster" (verified dump of the reference).
    c.send_raw(&hex(
        "0000 00000015 0000 0004 00000001 0001 0009 6d79636c7573746572",
    ))
    .await
    .unwrap();
    // TLS off on this server: TLS_SUPPORTED=0, client cert required=1.
    assert_eq!(
        c.recv_raw().await.unwrap(),
        hex("0001 00000012 0000 0004 00000001 0002 0001 00 0003 0001 01")
    );
    let p = params("mycluster", 1, TieBreaker::Lowest);
    c.send(&Message::Init(qnetd_tools::client::init_message(2, &p)))
        .await
        .unwrap();
    let mut expected = hex("0004 00000086 0006 0002 0000 0004 0024");
    for t in 0u16..18 {
        expected.extend_from_slice(&t.to_be_bytes());
    }
    expected.extend_from_slice(&hex("0005 0030"));
    for o in 0u16..24 {
        expected.extend_from_slice(&o.to_be_bytes());
    }
    expected.extend_from_slice(&hex(
        "0000 0004 00000002 0007 0004 00008000 0008 0004 00008000 000a 0008 0000 0001 0002 0003",
    ));
    assert_eq!(expected.len(), 140);
    assert_eq!(c.recv_raw().await.unwrap(), expected);
    // ECHO_REPLY is the request with the type changed.
    c.send_raw(&hex("0008 0000000d 0000 0004 00000001 00ff 0001 aa"))
        .await
        .unwrap();
    assert_eq!(
        c.recv_raw().await.unwrap(),
        hex("0009 0000000d 0000 0004 00000001 00ff 0001 aa")
    );
    srv.stop().await;
}

#[tokio::test]
async fn two_node_split_lowest_wins_and_nack_precedes_ack() {
    let srv = TestServer::start().await;
    let (mut n1, mut n2) = healthy_pair(srv.addr, "split-lowest").await;
    // The network splits: each side reports its own ring.
    n1.membership(RingId::new(1, 12), &[1], Heuristics::Undefined)
        .await;
    // Nothing is decided until every connected member reported its ring:
    // the first side to report is told to wait.
    assert_eq!(n1.vote, Some(Vote::WaitForReply));
    n2.c.send_membership(RingId::new(2, 12), &[2], Heuristics::Undefined)
        .await
        .unwrap();
    // Node 2 loses: NACK first (queued before its reply)...
    let (infos, reply) = {
        let mut infos = Vec::new();
        let reply = loop {
            match n2.c.recv().await.unwrap() {
                Message::VoteInfo(v) => infos.push(v),
                Message::NodeListReply(r) => break r,
                m => panic!("unexpected {m:?}"),
            }
        };
        (infos, reply)
    };
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].vote, Some(Vote::Nack));
    assert_eq!(infos[0].ring_id, Some(RingId::new(2, 12)));
    assert_eq!(reply.vote, Some(Vote::NoChange));
    assert_eq!(reply.ring_id, Some(RingId::new(2, 12)));
    // ...and node 1 gets no ACK until node 2 acknowledged its NACK.
    n1.c.expect_silence(Duration::from_millis(200))
        .await
        .unwrap();
    n2.c.reply_vote_info(infos[0].seq.unwrap()).await.unwrap();
    let v = n1.c.recv_vote_info().await.unwrap();
    assert_eq!(v.vote, Some(Vote::Ack));
    assert_eq!(v.ring_id, Some(RingId::new(1, 12)));
    // The decision log says who won and why.
    wait_log(&[
        "decision",
        "cluster=\"split-lowest\"",
        "winner=1.c",
        "reason=\"tie_breaker\"",
        "partitions=1.c [1] score 1; 2.c [2] score 1",
    ])
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn two_node_split_highest_wins() {
    let srv = TestServer::start().await;
    let ring = RingId::new(1, 8);
    let mut n1 = ffsplit_node(
        srv.addr,
        "split-high",
        1,
        &[1, 2],
        ring,
        &[1, 2],
        TieBreaker::Highest,
    )
    .await;
    let mut n2 = ffsplit_node(
        srv.addr,
        "split-high",
        2,
        &[1, 2],
        ring,
        &[1, 2],
        TieBreaker::Highest,
    )
    .await;
    assert_eq!(n1.vote_info().await, Vote::Ack);
    n1.membership(RingId::new(1, 12), &[1], Heuristics::Undefined)
        .await;
    n2.membership(RingId::new(2, 12), &[2], Heuristics::Undefined)
        .await;
    assert_eq!(n1.vote_info().await, Vote::Nack);
    assert_eq!(n2.vote_info().await, Vote::Ack);
    assert_eq!(n1.vote, Some(Vote::Nack));
    assert_eq!(n2.vote, Some(Vote::Ack));
    srv.stop().await;
}

#[tokio::test]
async fn disconnect_of_the_winner_moves_the_vote() {
    let srv = TestServer::start().await;
    let (mut n1, mut n2) = healthy_pair(srv.addr, "move-vote").await;
    n1.membership(RingId::new(1, 12), &[1], Heuristics::Undefined)
        .await;
    n2.membership(RingId::new(2, 12), &[2], Heuristics::Undefined)
        .await;
    assert_eq!(n2.vote, Some(Vote::Nack));
    assert_eq!(n1.vote_info().await, Vote::Ack);
    drop(n1);
    assert_eq!(n2.vote_info().await, Vote::Ack);
    wait_log(&["move-vote", "node=1", "client disconnected"]).await;
    srv.stop().await;
}

#[tokio::test]
async fn garbage_bytes_get_unsupported_message_and_others_are_unharmed() {
    let srv = TestServer::start().await;
    let (mut a1, mut a2) = healthy_pair(srv.addr, "garbage-bystander").await;
    let mut bad = Client::connect(srv.addr).await.unwrap();
    // Type 0x4142 is no message type: the body is skipped, error 4 without seq.
    bad.send_raw(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ").await.unwrap();
    assert_eq!(
        expect_error(&mut bad, ErrorCode::UNSUPPORTED_MESSAGE).await,
        None
    );
    wait_log(&["unknown type", "error 4"]).await;
    assert_unharmed(&mut a1).await;
    assert_unharmed(&mut a2).await;
    srv.stop().await;
}

#[tokio::test]
async fn messages_before_preinit_or_init_are_refused() {
    let srv = TestServer::start().await;
    let (mut a1, _a2) = healthy_pair(srv.addr, "gate-bystander").await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    // NODE_LIST before INIT: error 11 with the seq echoed.
    c.send_config(&[1, 2], true).await.unwrap();
    assert_eq!(
        expect_error(&mut c, ErrorCode::INIT_REQUIRED).await,
        Some(2)
    );
    // INIT before PREINIT: INIT_REPLY with error 6.
    let p = params("gate", 1, TieBreaker::Lowest);
    c.send(&Message::Init(qnetd_tools::client::init_message(3, &p)))
        .await
        .unwrap();
    match c.recv().await.unwrap() {
        Message::InitReply(r) => {
            assert_eq!(r.error_code, Some(ErrorCode::PREINIT_REQUIRED));
            assert_eq!(r.seq, Some(3));
        }
        m => panic!("expected INIT_REPLY, got {m:?}"),
    }
    // STARTTLS before PREINIT: error 6.
    c.send(&Message::StartTls(qnetd_core::wire::StartTls {
        seq: Some(4),
    }))
    .await
    .unwrap();
    expect_error(&mut c, ErrorCode::PREINIT_REQUIRED).await;
    // A server-to-client type: error 8.
    c.send(&Message::VoteInfo(qnetd_core::wire::VoteInfo {
        seq: Some(5),
        vote: Some(Vote::Ack),
        ring_id: Some(RingId::new(1, 1)),
    }))
    .await
    .unwrap();
    assert_eq!(
        expect_error(&mut c, ErrorCode::UNEXPECTED_MESSAGE).await,
        Some(5)
    );
    wait_log(&["before a successful INIT", "error 11"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn oversized_length_is_refused_without_reading_it() {
    let srv = TestServer::start().await;
    let (mut a1, _a2) = healthy_pair(srv.addr, "big-bystander").await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    // A NODE_LIST claiming 2 GiB: error 5 right after the header.
    c.send_raw(&[0x00, 0x0a, 0x80, 0x00, 0x00, 0x00])
        .await
        .unwrap();
    assert_eq!(
        expect_error(&mut c, ErrorCode::MESSAGE_TOO_LONG).await,
        None
    );
    // ... and the connection is closed rather than 2 GiB being read.
    c.expect_closed()
        .await
        .expect("connection closed after the 2 GiB claim");
    wait_log(&["far above max_client_receive_size", "closing"]).await;
    // Exactly at the limit is accepted (32762-byte body), one more is not.
    let mut c2 = Client::connect(srv.addr).await.unwrap();
    let mut msg = vec![0x00, 0x00];
    msg.extend_from_slice(&32762u32.to_be_bytes());
    msg.extend_from_slice(&[0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]);
    msg.extend_from_slice(&[0x00, 0x01]);
    msg.extend_from_slice(&(32762u16 - 12).to_be_bytes());
    msg.resize(6 + 32762, b'x');
    c2.send_raw(&msg).await.unwrap();
    assert!(matches!(c2.recv().await.unwrap(), Message::PreinitReply(_)));
    let mut c3 = Client::connect(srv.addr).await.unwrap();
    msg[5] += 1;
    msg.push(b'x');
    c3.send_raw(&msg).await.unwrap();
    expect_error(&mut c3, ErrorCode::MESSAGE_TOO_LONG).await;
    wait_log(&["longer than max_client_receive_size", "error 5"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn truncated_tlv_gets_decode_error_with_seq() {
    let srv = TestServer::start().await;
    let (mut a1, _a2) = healthy_pair(srv.addr, "tlv-bystander").await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    // PREINIT seq=9, then a CLUSTER_NAME TLV claiming 9 bytes with only 3.
    c.send_raw(&hex("0000 0000000f 0000 0004 00000009 0001 0009 616263"))
        .await
        .unwrap();
    assert_eq!(
        expect_error(&mut c, ErrorCode::ERROR_DECODING_MSG).await,
        Some(9)
    );
    // The connection stays usable.
    c.send(&Message::Preinit(Preinit {
        seq: Some(10),
        cluster_name: Some(b"x".to_vec()),
    }))
    .await
    .unwrap();
    assert!(matches!(c.recv().await.unwrap(), Message::PreinitReply(_)));
    wait_log(&["cannot decode message", "error 9"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn init_consistency_errors_duplicate_algorithm_tie_breaker() {
    let srv = TestServer::start().await;
    let (mut a1, mut a2) = healthy_pair(srv.addr, "consistency").await;
    let try_init = |p: qnetd_tools::client::NodeParams| async move {
        let mut c = Client::connect(srv.addr).await.unwrap();
        c.handshake(&p).await.unwrap().error_code
    };
    // Duplicate node id.
    assert_eq!(
        try_init(params("consistency", 2, TieBreaker::Lowest)).await,
        Some(ErrorCode::DUPLICATE_NODE_ID)
    );
    // Different algorithm.
    let mut p = params("consistency", 3, TieBreaker::Lowest);
    p.algorithm = AlgorithmKind::Lms;
    assert_eq!(
        try_init(p).await,
        Some(ErrorCode::ALGORITHM_DIFFERS_FROM_OTHER_NODES)
    );
    // Different tie-breaker (checked before the algorithm).
    let mut p = params("consistency", 3, TieBreaker::Highest);
    p.algorithm = AlgorithmKind::Lms;
    assert_eq!(
        try_init(p).await,
        Some(ErrorCode::TIE_BREAKER_DIFFERS_FROM_OTHER_NODES)
    );
    // Out-of-range heartbeat and algorithm.
    let mut p = params("consistency-other", 1, TieBreaker::Lowest);
    p.heartbeat_ms = 999;
    assert_eq!(
        try_init(p).await,
        Some(ErrorCode::INVALID_HEARTBEAT_INTERVAL)
    );
    wait_log(&["INIT refused", "duplicate_node_id"]).await;
    assert_unharmed(&mut a1).await;
    assert_unharmed(&mut a2).await;
    assert_eq!(srv.ctx.arbiter.table.client_count(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn second_init_and_second_preinit_are_refused_and_state_kept() {
    let srv = TestServer::start().await;
    let (mut n1, mut n2) = healthy_pair(srv.addr, "second-init").await;
    // Node 2 sends another INIT claiming node 1 with another algorithm.
    let mut p = params("second-init", 1, TieBreaker::Highest);
    p.algorithm = AlgorithmKind::Lms;
    n2.c.send(&Message::Init(qnetd_tools::client::init_message(50, &p)))
        .await
        .unwrap();
    match n2.c.recv().await.unwrap() {
        Message::InitReply(r) => assert_eq!(r.error_code, Some(ErrorCode::UNEXPECTED_MESSAGE)),
        m => panic!("expected INIT_REPLY, got {m:?}"),
    }
    n2.c.send(&Message::Preinit(Preinit {
        seq: Some(51),
        cluster_name: Some(b"other".to_vec()),
    }))
    .await
    .unwrap();
    expect_error(&mut n2.c, ErrorCode::UNEXPECTED_MESSAGE).await;
    wait_log(&["second INIT", "state kept"]).await;
    // The cluster still has nodes 1 and 2 with ffsplit, and decisions work.
    {
        let c = srv.ctx.arbiter.table.get(b"second-init").unwrap();
        let e = qnetd_core::table::lock(&c);
        assert_eq!(e.cluster.algorithm(), AlgorithmKind::Ffsplit);
        assert_eq!(
            e.cluster.clients().keys().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
    n1.membership(RingId::new(1, 12), &[1], Heuristics::Undefined)
        .await;
    n2.membership(RingId::new(2, 12), &[2], Heuristics::Undefined)
        .await;
    assert_eq!(n2.vote, Some(Vote::Nack));
    assert_eq!(n1.vote_info().await, Vote::Ack);
    srv.stop().await;
}

#[tokio::test]
async fn silent_client_is_dropped_by_dead_peer_detection() {
    let srv = TestServer::start().await;
    let (mut n1, mut n2) = healthy_pair(srv.addr, "dpd").await;
    n1.membership(RingId::new(1, 12), &[1], Heuristics::Undefined)
        .await;
    n2.membership(RingId::new(2, 12), &[2], Heuristics::Undefined)
        .await;
    assert_eq!(n1.vote_info().await, Vote::Ack);
    // A third cluster's node with a 1 s heartbeat goes silent.
    let mut p = params("dpd-silent", 1, TieBreaker::Lowest);
    p.heartbeat_ms = 1000;
    let mut silent = connect(srv.addr, &p).await;
    let t0 = std::time::Instant::now();
    silent.timeout = Duration::from_secs(5);
    silent.expect_closed().await.unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(3000),
        "dropped after {waited:?}, expected about 1.5 s"
    );
    wait_log(&["dpd-silent", "dead peer"]).await;
    assert_unharmed(&mut n1).await;
    srv.stop().await;
}

#[tokio::test]
async fn vote_info_reply_for_an_old_round_is_ignored() {
    let srv = TestServer::start().await;
    let (mut n1, mut n2) = healthy_pair(srv.addr, "stale-reply").await;
    n1.membership(RingId::new(1, 12), &[1], Heuristics::Undefined)
        .await;
    n2.c.send_membership(RingId::new(2, 12), &[2], Heuristics::Undefined)
        .await
        .unwrap();
    let nack = match n2.c.recv().await.unwrap() {
        Message::VoteInfo(v) => v,
        m => panic!("{m:?}"),
    };
    assert!(matches!(
        n2.c.recv().await.unwrap(),
        Message::NodeListReply(_)
    ));
    // A reply carrying an older seq does not release the ACK.
    n2.c.send(&Message::VoteInfoReply(SeqOnly {
        seq: Some(nack.seq.unwrap() - 1),
    }))
    .await
    .unwrap();
    n1.c.expect_silence(Duration::from_millis(200))
        .await
        .unwrap();
    n2.c.reply_vote_info(nack.seq.unwrap()).await.unwrap();
    assert_eq!(n1.vote_info().await, Vote::Ack);
    srv.stop().await;
}

#[tokio::test]
async fn max_clients_refuses_extra_connections() {
    let settings = Settings {
        max_clients: 1,
        tls: qnetd_core::config::TlsMode::Off,
        ..Settings::default()
    };
    let srv = TestServer::start_with(settings).await;
    let _first = connect(srv.addr, &params("maxc", 1, TieBreaker::Lowest)).await;
    let mut second = Client::connect(srv.addr).await.unwrap();
    second.expect_closed().await.unwrap();
    wait_log(&["max_clients"]).await;
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_disconnects_clients() {
    let srv = TestServer::start().await;
    let (mut n1, _n2) = healthy_pair(srv.addr, "shutdown").await;
    srv.stop().await;
    n1.c.expect_closed().await.unwrap();
}

#[tokio::test]
async fn unacknowledged_nack_is_bounded() {
    // Node 2 (heartbeat 1 s) loses the split, keeps sending echoes, but never
    // acknowledges its NACK. The winner's ACK must not wait forever: node 2
    // is disconnected after its dead-peer interval (1.5 s) and node 1 gets ACK.
    let srv = TestServer::start().await;
    let ring = RingId::new(1, 8);
    let mut n1 = ffsplit_node(
        srv.addr,
        "nack-bound",
        1,
        &[1, 2],
        ring,
        &[1, 2],
        TieBreaker::Lowest,
    )
    .await;
    let mut p2 = params("nack-bound", 2, TieBreaker::Lowest);
    p2.ring = ring;
    p2.heartbeat_ms = 1000;
    let mut c2 = connect(srv.addr, &p2).await;
    c2.send_config(&[1, 2], true).await.unwrap();
    c2.recv_node_list_reply().await.unwrap();
    c2.send_membership(ring, &[1, 2], Heuristics::Undefined)
        .await
        .unwrap();
    c2.recv_node_list_reply().await.unwrap();
    assert_eq!(n1.vote_info().await, Vote::Ack);

    n1.membership(RingId::new(1, 12), &[1], Heuristics::Undefined)
        .await;
    c2.send_membership(RingId::new(2, 12), &[2], Heuristics::Undefined)
        .await
        .unwrap();
    let nack = match c2.recv().await.unwrap() {
        Message::VoteInfo(v) => v,
        m => panic!("expected VOTE_INFO, got {m:?}"),
    };
    assert_eq!(nack.vote, Some(Vote::Nack));
    let t0 = std::time::Instant::now();
    // Keep the connection alive with echoes, never acknowledge the NACK.
    for i in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let echo = Message::EchoRequest(qnetd_core::wire::Echo { seq: Some(i) });
        if c2.send(&echo).await.is_err() {
            break;
        }
    }
    c2.timeout = Duration::from_secs(3);
    c2.expect_closed().await.unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(4000),
        "dropped after {waited:?}, expected about 1.5 s"
    );
    // The vote moves to the winner once the loser is gone.
    assert_eq!(n1.vote_info().await, Vote::Ack);
    wait_log(&["nack-bound", "NACK not acknowledged"]).await;
    srv.stop().await;
}

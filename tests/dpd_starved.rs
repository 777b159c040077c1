//! Regression test (found by `qnetd bench connect-storm` at 20,000 TLS
//! clients): a server whose runtime is starved for longer than the
//! dead-peer timeout must not disconnect a live client whose heartbeat is
//! waiting, unread, in the socket, just because a VOTE_INFO for that client
//! was queued at the same time. Before the fix, the write of the queued
//! VOTE_INFO raced an already expired dead-peer timer and lost about half
//! the time ("dead peer: write blocked past the dead-peer timeout").

mod common;

use std::time::Duration;

use qnetd_core::config::{Settings, TlsMode};
use qnetd_core::wire::{Echo, ErrorCode, Heuristics, Message, RingId, TieBreaker, Vote};
use qnetd_server::Server;
use qnetd_tools::client::Client;

const CLUSTERS: usize = 8;

async fn node(addr: std::net::SocketAddr, cluster: &str, id: u32) -> Client {
    let mut p = common::params(cluster, id, TieBreaker::Lowest);
    // Dead-peer timeout 1.5 s.
    p.heartbeat_ms = 1000;
    let mut c = Client::connect(addr).await.unwrap();
    let r = c.handshake(&p).await.unwrap();
    assert_eq!(r.error_code, Some(ErrorCode::NO_ERROR));
    c.send_config(&[1, 2], true).await.unwrap();
    c.recv_node_list_reply().await.unwrap();
    c.send_membership(RingId::new(1, 4), &[1, 2], Heuristics::Undefined)
        .await
        .unwrap();
    c
}

#[test]
fn starved_server_keeps_a_client_whose_heartbeat_is_unread() {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = Settings {
        tls: TlsMode::Off,
        listen_address: Some("127.0.0.1".into()),
        port: 0,
        local_socket_file: common::admin_socket_path(),
        metrics_listen: None,
        ..Settings::default()
    };
    let server = server_rt.block_on(Server::bind(settings)).unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = qnetd_server::Shutdown::new();
    server_rt.spawn(server.run(shutdown.clone()));

    client_rt.block_on(async {
        let mut pairs = Vec::new();
        for i in 0..CLUSTERS {
            let name = format!("starved{i}");
            let mut n1 = node(addr, &name, 1).await;
            let mut n2 = node(addr, &name, 2).await;
            // Both get ACK once both memberships are in.
            for c in [&mut n1, &mut n2] {
                let (mut ack, mut reply) = (false, false);
                while !(ack && reply) {
                    match c.recv().await.unwrap() {
                        Message::VoteInfo(v) => {
                            c.reply_vote_info(v.seq.unwrap()).await.unwrap();
                            ack |= v.vote == Some(Vote::Ack);
                        }
                        Message::NodeListReply(_) => reply = true,
                        m => panic!("unexpected {m:?}"),
                    }
                }
            }
            pairs.push((n1, n2));
        }

        // Starve the server for longer than the dead-peer timeout. Meanwhile
        // node 2 of every cluster leaves (the server will queue a VOTE_INFO
        // for node 1), then node 1 sends its heartbeat, which stays unread.
        server_rt.spawn(async { std::thread::sleep(Duration::from_millis(2500)) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut ones = Vec::new();
        for (n1, n2) in pairs {
            drop(n2);
            ones.push(n1);
        }
        for n1 in &mut ones {
            let seq = n1.next_seq();
            n1.send(&Message::EchoRequest(Echo { seq: Some(seq) }))
                .await
                .unwrap();
        }

        // After the stall every node 1 gets its VOTE_INFO and its ECHO_REPLY
        // and stays connected.
        for (i, n1) in ones.iter_mut().enumerate() {
            n1.timeout = Duration::from_secs(5);
            let (mut vote, mut echo) = (false, false);
            while !(vote && echo) {
                match n1.recv().await {
                    Ok(Message::VoteInfo(v)) => {
                        n1.reply_vote_info(v.seq.unwrap()).await.unwrap();
                        vote = true;
                    }
                    Ok(Message::EchoReply(_)) => echo = true,
                    Ok(m) => panic!("cluster starved{i}: unexpected {m:?}"),
                    Err(e) => panic!(
                        "cluster starved{i}: node 1 lost its connection after the stall ({e}); \
                         the server disconnected a live client"
                    ),
                }
            }
            // Keep it alive and check it stays connected.
            let seq = n1.next_seq();
            n1.send(&Message::EchoRequest(Echo { seq: Some(seq) }))
                .await
                .unwrap();
            loop {
                match n1.recv().await {
                    Ok(Message::EchoReply(_)) => break,
                    Ok(Message::VoteInfo(v)) => n1.reply_vote_info(v.seq.unwrap()).await.unwrap(),
                    other => panic!("cluster starved{i}: expected ECHO_REPLY, got {other:?}"),
                }
            }
        }
    });
    shutdown.trigger();
    server_rt.shutdown_timeout(Duration::from_secs(5));
}

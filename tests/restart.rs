//! Restart-safe decisions: a split cluster's vote stays with the partition
//! that held it across a server restart, even when the other half
//! reconnects first (the snapshot in the state directory seeds the
//! keep-active-partition rule and the restart hold).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_core::wire::{RingId, TieBreaker, Vote};

const ALL: [u32; 4] = [1, 2, 3, 4];

fn state_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("qnetd-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        tls: TlsMode::Off,
        state_dir: Some(dir.to_path_buf()),
        restart_vote_hold: 10_000,
        ..Settings::default()
    }
}

/// Applies (and acknowledges) every VOTE_INFO that arrives until the node
/// has been silent for 300 ms (at most 50 votes).
async fn drain(n: &mut Node) {
    for _ in 0..50 {
        match tokio::time::timeout(Duration::from_millis(300), n.c.recv_vote_info()).await {
            Ok(Ok(v)) => n.apply(v.vote, v.ring_id),
            Ok(Err(e)) => panic!("node {}: {e}", n.id),
            Err(_) => return,
        }
    }
    panic!("node {} keeps receiving votes", n.id);
}

async fn node(addr: std::net::SocketAddr, id: u32, ring: RingId, members: &[u32]) -> Node {
    ffsplit_node(addr, "restart", id, &ALL, ring, members, TieBreaker::Lowest).await
}

/// Waits (bounded) until the snapshot names {3,4} as the holder.
async fn wait_snapshot(dir: &std::path::Path) {
    let path = dir.join(qnetd_server::persist::SNAPSHOT_FILE);
    for _ in 0..100 {
        if let Ok(bytes) = std::fs::read(&path) {
            let h = qnetd_core::memory::decode_snapshot(
                &bytes,
                qnetd_server::persist::unix_ms(),
                Duration::from_secs(60),
            )
            .expect("the snapshot decodes");
            if h.get(b"restart".as_slice()).map(|h| h.members.clone()) == Some(vec![3, 4]) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no snapshot naming {{3,4}} in {}", path.display());
}

#[tokio::test]
async fn split_vote_survives_a_restart_with_adverse_reconnect_order() {
    let dir = state_dir();

    // Before the restart: {3,4} came up first and holds the vote; {1,2}
    // joined later as the other half and gets NACK (KAP keeps the vote
    // where LOWEST would move it).
    let srv = TestServer::start_with(settings(&dir)).await;
    let (r12, r34) = (RingId::new(1, 6), RingId::new(3, 8));
    let mut n3 = node(srv.addr, 3, r34, &[3, 4]).await;
    let mut n4 = node(srv.addr, 4, r34, &[3, 4]).await;
    drain(&mut n3).await;
    assert_eq!((n3.vote, n4.vote), (Some(Vote::Ack), Some(Vote::Ack)));
    let mut n1 = node(srv.addr, 1, r12, &[1, 2]).await;
    let mut n2 = node(srv.addr, 2, r12, &[1, 2]).await;
    for n in [&mut n1, &mut n2, &mut n3, &mut n4] {
        drain(n).await;
    }
    assert_eq!((n1.vote, n2.vote), (Some(Vote::Nack), Some(Vote::Nack)));
    assert_eq!((n3.vote, n4.vote), (Some(Vote::Ack), Some(Vote::Ack)));
    wait_snapshot(&dir).await;
    srv.stop().await;

    // After the restart, the losing half reconnects first.
    let srv = TestServer::start_with(settings(&dir)).await;
    let mut n1 = node(srv.addr, 1, r12, &[1, 2]).await;
    let mut n2 = node(srv.addr, 2, r12, &[1, 2]).await;
    drain(&mut n1).await;
    assert_eq!(
        (n1.vote, n2.vote),
        (Some(Vote::Nack), Some(Vote::Nack)),
        "the half that did not hold the vote must not get it while the holder is away"
    );
    wait_log(&["decision", "cluster=\"restart\"", "restart_hold"]).await;
    // Status shows the remembered holder and the hold.
    let reply = ask(&srv.ctx.arbiter.settings.local_socket_file, "json\n").await;
    let st: qnetd_core::status::ServerStatus =
        serde_json::from_str(reply.strip_prefix("OK\n").expect("OK reply")).unwrap();
    assert!(st.state_file.ends_with("decisions.pb"), "{}", st.state_file);
    assert_eq!(st.remembered_clusters, 1);
    assert!(st.restart_hold_remaining_ms > 0);
    let c = st.clusters.iter().find(|c| c.name == "restart").unwrap();
    let held = c.remembered_holder.as_ref().expect("remembered holder");
    assert_eq!(
        (held.ring_id.as_str(), held.members.clone()),
        ("3.8", vec![3, 4])
    );
    // Then the old holder, one node at a time.
    let mut n3 = node(srv.addr, 3, r34, &[3, 4]).await;
    let mut n4 = node(srv.addr, 4, r34, &[3, 4]).await;
    for n in [&mut n1, &mut n2, &mut n3, &mut n4] {
        drain(n).await;
    }
    assert_eq!((n1.vote, n2.vote), (Some(Vote::Nack), Some(Vote::Nack)));
    assert_eq!(
        (n3.vote, n4.vote),
        (Some(Vote::Ack), Some(Vote::Ack)),
        "the vote is where it was before the restart"
    );
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn corrupt_snapshot_is_logged_and_ignored() {
    let dir = std::env::temp_dir().join(format!("qnetd-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(qnetd_server::persist::SNAPSHOT_FILE),
        b"\xff\xff garbage",
    )
    .unwrap();
    let srv = TestServer::start_with(settings(&dir)).await;
    wait_log(&["ignoring the decision snapshot"]).await;
    // The server works: a lone full-membership node gets ACK.
    let n = ffsplit_node(
        srv.addr,
        "fresh",
        1,
        &[1, 2],
        RingId::new(1, 4),
        &[1, 2],
        TieBreaker::Lowest,
    )
    .await;
    assert_eq!(n.vote, Some(Vote::Ack));
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

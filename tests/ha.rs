//! High availability without etcd: the server's role follower
//! (`qnetd_server::ha::follow`) driven by a hand-made role channel and an
//! in-memory vote store, with real protocol clients on loopback. Checks
//! that only a leader listens, that a new leader loads the vote memory and
//! applies the restart hold, that an ACK for a changed holder leaves only
//! after the holder is stored, that the leader stops by its own timer at
//! the end of its lease (clients closed, port closed), that a refused
//! write ends the term without an ACK, and that shutdown resigns.
//! The etcd side is tested by ha/tests/etcd.rs and tests/ha/ (second tier).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qnetd_core::arbiter::Arbiter;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_core::memory::VoteMemory;
use qnetd_core::wire::{Message, RingId, TieBreaker, Vote};
use qnetd_proto::state::HeldVote;
use qnetd_server::ha::{follow, GroupRole as Role, HaShared, MemoryBackend, Term};
use qnetd_server::{ServerCtx, Shutdown};
use tokio::sync::watch;

struct Instance {
    addr: SocketAddr,
    ctx: Arc<ServerCtx>,
    roles: watch::Sender<Role>,
    backend: MemoryBackend,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn instance() -> Instance {
    let port = free_port();
    let settings = Settings {
        tls: TlsMode::Off,
        listen_address: Some("127.0.0.1".into()),
        port,
        admin_socket: false,
        metrics_listen: None,
        state_dir: None,
        restart_vote_hold: 30_000,
        ..Settings::default()
    };
    let origin = Instant::now();
    let memory = VoteMemory::in_memory();
    memory.set_write_ahead(true, Some("test store".into()));
    let arbiter = Arc::new(Arbiter::new(
        Arc::new(settings),
        Arc::new(memory),
        origin,
        qnetd_server::persist::unix_ms(),
    ));
    arbiter.set_serve_until(Some(origin));
    let shared = Arc::new(HaShared::new(
        "g",
        "me",
        vec!["http://x:2379".into()],
        vec![],
    ));
    let ctx =
        Arc::new(ServerCtx::new(arbiter, None, port, None, 1000).with_ha(Arc::clone(&shared)));
    let (roles, rx) = watch::channel(Role::Starting);
    let backend = MemoryBackend::default();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(follow(
        Arc::clone(&ctx),
        rx,
        backend.clone(),
        vec![],
        shared,
        shutdown.clone(),
    ));
    Instance {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        ctx,
        roles,
        backend,
        shutdown,
        task,
    }
}

fn term(revision: i64) -> Term {
    Term { revision, lease: 7 }
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never accepted a connection");
}

async fn wait_refused(addr: SocketAddr) {
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} still accepts connections");
}

/// Reads until the server closes the connection; returns every vote seen.
async fn votes_until_closed(n: &mut Node) -> Vec<Vote> {
    let mut seen = Vec::new();
    for _ in 0..50 {
        match n.c.recv().await {
            Ok(Message::VoteInfo(v)) => seen.extend(v.vote),
            Ok(Message::NodeListReply(r)) => seen.extend(r.vote),
            Ok(_) => {}
            Err(_) => return seen,
        }
    }
    panic!("the connection was not closed");
}

#[tokio::test]
async fn a_standby_does_not_listen_and_a_leader_serves_until_its_deadline() {
    let i = instance();
    i.roles.send_replace(Role::Standby {
        leader: Some("other".into()),
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(i.addr).await.is_err(),
        "a standby must not listen"
    );
    let st = i.ctx.status().ha.expect("HA status");
    assert_eq!(
        (st.role.as_str(), st.leader.as_str(), st.serving),
        ("standby", "other", false)
    );

    // The previous leader gave cluster "split" to {3,4}.
    i.backend.put(HeldVote {
        cluster_name: b"split".to_vec(),
        algorithm: "ffsplit".into(),
        ring_node_id: 3,
        ring_seq: 8,
        members: vec![3, 4],
        since_unix_ms: qnetd_server::persist::unix_ms(),
        seen_unix_ms: qnetd_server::persist::unix_ms(),
    });
    i.backend.lead(5);
    i.roles.send_replace(Role::Leader {
        term: term(5),
        serve_until: Instant::now() + Duration::from_secs(3),
    });
    wait_listening(i.addr).await;
    let st = i.ctx.status().ha.unwrap();
    assert_eq!((st.role.as_str(), st.term, st.serving), ("leader", 5, true));
    assert!(st.lease_remaining_ms > 0);

    // {1,2} reconnects first: the restart hold keeps the vote with {3,4}.
    let ring = RingId::new(1, 9);
    let a = ffsplit_node(
        i.addr,
        "split",
        1,
        &[1, 2, 3, 4],
        ring,
        &[1, 2],
        TieBreaker::Lowest,
    )
    .await;
    assert_ne!(
        a.vote,
        Some(Vote::Ack),
        "the remembered holder keeps the vote"
    );

    // A new cluster's holder is stored before its ACK leaves.
    let mut b = ffsplit_node(
        i.addr,
        "fresh",
        1,
        &[1],
        RingId::new(1, 2),
        &[1],
        TieBreaker::Lowest,
    )
    .await;
    assert_eq!(b.vote, Some(Vote::Ack));
    assert!(
        i.backend.votes().iter().any(|v| v.cluster_name == b"fresh"),
        "the holder was written before the ACK was sent"
    );

    // A renewal extends the deadline: the client stays past the first one.
    i.roles.send_replace(Role::Leader {
        term: term(5),
        serve_until: Instant::now() + Duration::from_secs(4),
    });
    b.c.expect_silence(Duration::from_millis(3200))
        .await
        .unwrap();

    // No renewal: the leader stops by its own timer (the role still says
    // Leader), closes its clients and its port.
    let seen = votes_until_closed(&mut b).await;
    assert!(
        !seen.contains(&Vote::Ack),
        "no ACK at the lease's end: {seen:?}"
    );
    wait_refused(i.addr).await;
    assert!(!i.ctx.status().ha.unwrap().serving);
    assert_eq!(i.ctx.arbiter.table.client_count(), 0);

    i.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), i.task)
        .await
        .expect("stops")
        .unwrap();
    assert!(i.backend.resigned(), "shutdown resigns");
}

#[tokio::test]
async fn a_term_whose_writes_are_refused_sends_no_ack_and_stops() {
    let i = instance();
    // Term 6 leads by the role, but the store refuses its writes (another
    // leader's term took over in etcd).
    i.roles.send_replace(Role::Leader {
        term: term(6),
        serve_until: Instant::now() + Duration::from_secs(20),
    });
    wait_listening(i.addr).await;
    let p = {
        let mut p = params("lost", 1, TieBreaker::Lowest);
        p.ring = RingId::new(1, 3);
        p
    };
    let mut c = connect(i.addr, &p).await;
    c.send_config(&[1], true).await.unwrap();
    let _ = c.recv_node_list_reply().await.unwrap();
    c.send_membership(
        RingId::new(1, 3),
        &[1],
        qnetd_core::wire::Heuristics::Undefined,
    )
    .await
    .unwrap();
    let mut n = Node {
        c,
        id: 1,
        vote: None,
    };
    let seen = votes_until_closed(&mut n).await;
    assert!(
        !seen.contains(&Vote::Ack),
        "no ACK without a stored holder: {seen:?}"
    );
    wait_refused(i.addr).await;
    i.roles.send_replace(Role::NoQuorum {
        since: Instant::now(),
    });
    i.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), i.task)
        .await
        .expect("stops")
        .unwrap();
}

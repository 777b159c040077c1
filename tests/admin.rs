//! Admin surface tests: the real server on 127.0.0.1:0 with its admin socket
//! in a temporary path; requests as `corosync-qnetd-tool` sends them, and the
//! `qnetd status` command.

mod common;

use std::process::Command;

use common::*;
use qnetd_core::status::ServerStatus;
use qnetd_core::wire::{Heuristics, RingId, TieBreaker, Vote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A 2-node ffsplit cluster split 1/2 (node 1 holds the vote).
async fn split_cluster(srv: &TestServer, name: &str) -> (Node, Node) {
    let ring = RingId::new(1, 8);
    let mut n1 = ffsplit_node(
        srv.addr,
        name,
        1,
        &[1, 2],
        ring,
        &[1, 2],
        TieBreaker::Lowest,
    )
    .await;
    let mut n2 = ffsplit_node(
        srv.addr,
        name,
        2,
        &[1, 2],
        ring,
        &[1, 2],
        TieBreaker::Lowest,
    )
    .await;
    assert_eq!(n1.vote_info().await, Vote::Ack);
    n1.membership(RingId::new(1, 0xc), &[1], Heuristics::Undefined)
        .await;
    n2.membership(RingId::new(2, 0xc), &[2], Heuristics::Undefined)
        .await;
    assert_eq!(n1.vote_info().await, Vote::Ack);
    assert_eq!(n2.vote, Some(Vote::Nack));
    (n1, n2)
}

#[tokio::test]
async fn tool_protocol_answers_match_the_reference_format() {
    let srv = TestServer::start().await;
    let sock = srv.ctx.arbiter.settings.local_socket_file.clone();
    let (n1, n2) = split_cluster(&srv, "admin").await;
    let a1 = n1.c.local_addr();
    let a2 = n2.c.local_addr();

    let status = ask(&sock, "status \n").await;
    assert_eq!(
        status,
        format!(
            "OK\nQNetd address:\t\t\t127.0.0.1:{}\nTLS:\t\t\t\tUnsupported\nConnected clients:\t\t2\nConnected clusters:\t\t1\n",
            srv.addr.port()
        )
    );
    let status_v = ask(&sock, "status verbose \n").await;
    assert!(
        status_v
            .ends_with("Connected clusters:\t\t1\nMaximum send/receive size:\t32768/32768 bytes\n"),
        "{status_v}"
    );

    // Node 1's last message was the VOTE_INFO ACK; node 2's the NO_CHANGE
    // reply after its VOTE_INFO NACK (the reference records both kinds).
    let list = ask(&sock, "list \n").await;
    let expected = format!(
        "OK\nCluster \"admin\":\n    Algorithm:\t\tFifty-Fifty split (KAP Tie-breaker)\n    Tie-breaker:\tNode with lowest node ID\n    Node ID 1:\n        Client address:\t\t{a1}\n        Configured node list:\t1, 2\n        Membership node list:\t1\n        Vote:\t\t\tACK (ACK)\n    Node ID 2:\n        Client address:\t\t{a2}\n        Configured node list:\t1, 2\n        Membership node list:\t2\n        Vote:\t\t\tNo change (NACK)\n"
    );
    assert_eq!(list, expected);

    let verbose = ask(&sock, "list verbose cluster \"admin\" \n").await;
    assert!(
        verbose.contains("        HB interval:\t\t8000ms\n"),
        "{verbose}"
    );
    assert!(verbose.contains("        Ring ID:\t\t1.c\n"), "{verbose}");
    assert!(verbose.contains("        Ring ID:\t\t2.c\n"), "{verbose}");
    assert!(
        verbose.contains(
            "        Heuristics:\t\tUndefined (membership: Undefined, regular: Undefined)\n"
        ),
        "{verbose}"
    );
    assert!(verbose.contains("        TLS active:\t\tNo\n"), "{verbose}");
    assert_eq!(ask(&sock, "list cluster \"other\" \n").await, "OK\n");
    assert_eq!(
        ask(&sock, "frobnicate\n").await,
        "Error\nUnknown command 'frobnicate'\n"
    );
    assert_eq!(ask(&sock, "\n").await, "Error\nNo command specified\n");
    srv.stop().await;
}

#[tokio::test]
async fn json_status_reflects_the_state() {
    let srv = TestServer::start().await;
    let sock = srv.ctx.arbiter.settings.local_socket_file.clone();
    let (_n1, _n2) = split_cluster(&srv, "json").await;
    let reply = ask(&sock, "json\n").await;
    let body = reply.strip_prefix("OK\n").expect("OK reply");
    let st: ServerStatus = serde_json::from_str(body).unwrap();
    assert_eq!(st.tls, "off");
    assert_eq!(st.connected_clients, 2);
    assert_eq!(st.initialised_clients, 2);
    let c = &st.clusters[0];
    assert_eq!(c.name, "json");
    assert_eq!(c.algorithm, "ffsplit");
    assert_eq!(c.tie_breaker, "lowest");
    assert!(c.kap);
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(c.nodes[0].ring_id, "1.c");
    assert_eq!(c.nodes[0].membership, vec![1]);
    assert_eq!(c.nodes[0].last_ack_nack.as_deref(), Some("ack"));
    assert_eq!(c.nodes[1].last_ack_nack.as_deref(), Some("nack"));
    assert_eq!(c.partitions.len(), 2);
    let holders: Vec<_> = c.partitions.iter().filter(|p| p.holds_vote).collect();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].ring_id, "1.c");
    assert_eq!(holders[0].nodes, vec![1]);
    assert_eq!(holders[0].score, 1);
    srv.stop().await;
}

#[tokio::test]
async fn qnetd_status_command_prints_tables_and_json() {
    let srv = TestServer::start().await;
    let sock = srv.ctx.arbiter.settings.local_socket_file.clone();
    let (_n1, _n2) = split_cluster(&srv, "cli").await;
    let bin = env!("CARGO_BIN_EXE_qnetd");
    let sock_arg = sock.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["status", "--socket", &sock_arg, "--cluster", "cli"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ring 1.c (nodes 1)"), "{text}");
    assert!(text.contains("NODE  ADDRESS"), "{text}");

    let sock_arg = sock.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["status", "--socket", &sock_arg, "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let st: ServerStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st.clusters[0].name, "cli");
    srv.stop().await;
}

#[tokio::test]
async fn qnetd_status_exits_3_when_no_server_runs() {
    let bin = env!("CARGO_BIN_EXE_qnetd");
    let path = admin_socket_path();
    let out = Command::new(bin)
        .args(["status", "--socket"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running"), "{err}");
}

#[tokio::test]
async fn shutdown_command_stops_the_server() {
    let srv = TestServer::start().await;
    let sock = srv.ctx.arbiter.settings.local_socket_file.clone();
    let (mut n1, _n2) = split_cluster(&srv, "stop").await;
    assert_eq!(ask(&sock, "shutdown \n").await, "OK\n");
    n1.c.expect_closed().await.unwrap();
    // The socket file is removed on the way out.
    for _ in 0..50 {
        if !sock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!sock.exists());
    srv.stop().await;
}

#[tokio::test]
async fn admin_socket_is_owner_only_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let srv = TestServer::start().await;
    let mode = std::fs::metadata(&srv.ctx.arbiter.settings.local_socket_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    srv.stop().await;
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

#[tokio::test]
async fn metrics_after_a_split() {
    let srv = TestServer::start().await;
    let addr = srv.ctx.metrics_addr.expect("metrics on");
    let (_n1, _n2) = split_cluster(&srv, "metrics-split").await;
    let m = scrape(addr).await;
    assert_eq!(
        sample(
            &m,
            "qnetd_cluster_nodes_connected{cluster=\"metrics-split\""
        ),
        2.0
    );
    assert_eq!(
        sample(&m, "qnetd_cluster_partitions{cluster=\"metrics-split\"}"),
        2.0
    );
    assert_eq!(
        sample(&m, "qnetd_cluster_vote_held{cluster=\"metrics-split\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "qnetd_cluster_vote_holder_nodes{cluster=\"metrics-split\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "qnetd_cluster_vote_holder_info{cluster=\"metrics-split\",ring=\"1.c\"}"
        ),
        1.0
    );
    // Counters of this cluster: node 2 got exactly one NACK, node 1 an ACK
    // at the start and one after the split, node 2 one at the start.
    assert_eq!(
        sample(
            &m,
            "qnetd_votes_sent_total{cluster=\"metrics-split\",vote=\"nack\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "qnetd_votes_sent_total{cluster=\"metrics-split\",vote=\"ack\"}"
        ),
        4.0
    );
    assert!(sample(&m, "qnetd_decision_latency_seconds_count") >= 1.0);
    assert!(
        sample(
            &m,
            "qnetd_decisions_total{algorithm=\"ffsplit\",reason=\"tie_breaker\"}"
        ) >= 1.0
    );
    assert!(
        m.contains("# TYPE qnetd_decision_latency_seconds histogram"),
        "{m}"
    );
    // Unknown paths get 404.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 404"), "{out}");
    srv.stop().await;
}

#[tokio::test]
async fn protobuf_status_matches_json_status() {
    use qnetd_proto::Message;
    let srv = TestServer::start().await;
    let sock = srv.ctx.arbiter.settings.local_socket_file.clone();
    let (_n1, _n2) = split_cluster(&srv, "pb").await;
    let mut s = UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"protobuf\n").await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let body = out.strip_prefix(b"OK\n").expect("OK reply");
    let from_pb = ServerStatus::decode(body).unwrap();
    let json = ask(&sock, "json\n").await;
    let from_json: ServerStatus = serde_json::from_str(json.strip_prefix("OK\n").unwrap()).unwrap();
    // Uptime may tick between the two requests; everything else is equal.
    assert_eq!(
        ServerStatus {
            uptime_seconds: 0,
            ..from_pb.clone()
        },
        ServerStatus {
            uptime_seconds: 0,
            ..from_json
        }
    );
    assert_eq!(from_pb.clusters[0].name, "pb");
    assert_eq!(from_pb.clusters[0].partitions.len(), 2);
    srv.stop().await;
}

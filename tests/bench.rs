//! `qnetd bench` at small scale against the real server: every simulated
//! node gets the expected vote (plain and TLS), a mass split gives each
//! cluster's winning half ACK and the other NACK with no double ACK, and
//! reconnect restarts a spawned server. No timing is asserted.

mod common;

use std::time::Duration;

use common::TestServer;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_tools::bench::error::{BenchError, OptionsError};
use qnetd_tools::bench::{self, Config, Workload};

fn small(server: std::net::SocketAddr, clusters: usize, nodes: u32) -> Config {
    Config {
        server,
        clusters,
        nodes,
        heartbeat_ms: 1000,
        timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(20),
        reconnect_jitter: Duration::from_millis(200),
        server_pid: Some(std::process::id()),
        ..Config::default()
    }
}

fn assert_all_voted(r: &bench::Report) {
    assert!(r.ok, "bench run failed:\n{}", r.table());
    assert_eq!(r.connect.done, r.clients, "{}", r.table());
    assert_eq!(r.wrong_votes, 0, "{}", r.table());
    assert_eq!(r.double_acks, 0, "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_storm_plain_every_node_gets_ack() {
    let srv = TestServer::start().await;
    let r = bench::run(&small(srv.addr, 20, 2), Workload::ConnectStorm)
        .await
        .unwrap();
    assert_all_voted(&r);
    assert_eq!(r.clients, 40);
    assert_eq!(r.errors, 0, "{}", r.table());
    assert!(r.server_loaded.is_some(), "RSS/CPU sampled from /proc");
    // The JSON form round-trips.
    let json = serde_json::to_string(&r).unwrap();
    let back: bench::Report = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (back.clients, back.connect.done, back.ok, back.wrong_votes),
        (r.clients, r.connect.done, r.ok, r.wrong_votes)
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_storm_tls_with_per_cluster_certificates() {
    let dir = std::env::temp_dir().join(format!("qnetd-bench-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let srv = TestServer::start_with(Settings {
        tls: TlsMode::Required,
        tls_dir: dir.clone(),
        ..Settings::default()
    })
    .await;
    let mut cfg = small(srv.addr, 20, 2);
    cfg.tls_dir = Some(dir.clone());
    let r = bench::run(&cfg, Workload::ConnectStorm).await.unwrap();
    assert_all_voted(&r);
    assert!(r.tls);
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_while_loaded_reports_the_loaded_clients() {
    let srv = TestServer::start().await;
    let mut cfg = small(srv.addr, 20, 2);
    cfg.loaded_clusters = 5;
    cfg.loaded_heartbeat_ms = 1000;
    cfg.cluster_prefix = "swl".into();
    let r = bench::run(&cfg, Workload::StormWhileLoaded).await.unwrap();
    assert_all_voted(&r);
    assert_eq!(r.clients, 40, "the storm's clients");
    let loaded = r.loaded.as_ref().expect("loaded figures");
    assert_eq!(loaded.clients, 10);
    assert_eq!(loaded.dropped, 0, "{}", r.table());
    assert!(r.load_average.is_some());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_split_gives_one_half_the_vote_without_double_ack() {
    let srv = TestServer::start().await;
    for nodes in [2, 4] {
        let mut cfg = small(srv.addr, 10, nodes);
        cfg.cluster_prefix = format!("split{nodes}-");
        let r = bench::run(&cfg, Workload::MassSplit).await.unwrap();
        assert_all_voted(&r);
        let phase = r.phase.as_ref().expect("split phase");
        assert_eq!(phase.done, r.clients, "{}", r.table());
        assert_eq!(r.decision.as_ref().map(|d| d.count), Some(10));
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_keeps_every_vote() {
    let srv = TestServer::start().await;
    let mut cfg = small(srv.addr, 5, 2);
    cfg.duration = Duration::from_millis(2500);
    let r = bench::run(&cfg, Workload::Steady).await.unwrap();
    assert_all_voted(&r);
    assert!(r.echo_rtt.count > 0, "heartbeats answered:\n{}", r.table());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_a_restart_of_a_spawned_server() {
    let dir = std::env::temp_dir().join(format!("qnetd-bench-re-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cmd = format!(
        "{} serve -f -l 127.0.0.1 -p {port} -s off --metrics-listen off \
         -S lock_file={d}/q.pid,local_socket_file={d}/q.sock,state_dir={d}/state",
        env!("CARGO_BIN_EXE_qnetd"),
        d = dir.display()
    );
    let mut cfg = small(([127, 0, 0, 1], port).into(), 5, 2);
    cfg.server_pid = None;
    cfg.spawn = Some(cmd);
    cfg.server_log = Some(dir.join("server.log"));
    let r = bench::run(&cfg, Workload::Reconnect).await.unwrap();
    assert_all_voted(&r);
    assert_eq!(r.phase.as_ref().map(|p| p.done), Some(10), "{}", r.table());
    assert!(r.restart_s.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_input_is_an_error_not_a_panic() {
    let cfg = Config {
        nodes: 1,
        ..Config::default()
    };
    let e = bench::run(&cfg, Workload::MassSplit).await.unwrap_err();
    assert!(
        matches!(e, BenchError::Options(OptionsError::SplitNeedsTwoNodes)),
        "{e}"
    );
    let cfg = Config {
        tls_dir: Some("/nonexistent/qnetd-bench".into()),
        server: "127.0.0.1:1".parse().unwrap(),
        ..Config::default()
    };
    let e = bench::run(&cfg, Workload::ConnectStorm).await.unwrap_err();
    match &e {
        BenchError::CaCertificate { path, .. } => {
            assert!(path.starts_with("/nonexistent/qnetd-bench"), "{e}")
        }
        other => panic!("expected a CA certificate error, got {other}"),
    }
}

//! The hardening suite at small scale against the real server on
//! 127.0.0.1:0: every flood phase runs while legitimate clusters heartbeat,
//! and none of them may be dropped or see its vote change; the server must
//! admit a new cluster after each phase. (Figures are reported by
//! `qnetd flood` runs, not asserted here.)

mod common;

use std::time::Duration;

use common::*;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_tools::flood::{self, FloodOptions, Phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flood_phase_leaves_legitimate_clusters_alone() {
    let srv = TestServer::start_with(Settings {
        tls: TlsMode::Off,
        init_timeout: 1000,
        ..Settings::default()
    })
    .await;
    let opts = FloodOptions {
        server: srv.addr,
        server_pid: None,
        legit_clusters: 3,
        sockets: 60,
        phase_duration: Duration::from_secs(2),
        cooldown: Duration::from_millis(300),
        heartbeat_ms: 1000,
        phases: Phase::ALL.to_vec(),
        label: "test".into(),
    };
    let report = tokio::time::timeout(Duration::from_secs(120), flood::run(&opts))
        .await
        .expect("the suite ends within 120 s")
        .expect("legitimate clusters set up");
    let table = flood::markdown(&report);
    assert_eq!(report.phases.len(), Phase::ALL.len(), "{table}");
    for p in &report.phases {
        assert!(
            p.passed,
            "phase {:?} failed: {:?}\n{table}",
            p.phase, p.failures
        );
        assert!(
            p.attack_connections > 0,
            "phase {:?} attacked nothing\n{table}",
            p.phase
        );
        assert!(
            p.legit_echoes > 0,
            "phase {:?}: no legitimate echo measured\n{table}",
            p.phase
        );
    }
    // The server did defend itself: it closed idle and oversize sockets and
    // the clients that never read.
    let closed = |ph: Phase| {
        report
            .phases
            .iter()
            .find(|p| p.phase == ph)
            .map_or(0, |p| p.attack_closed_by_server)
    };
    assert!(
        closed(Phase::Idle) > 0,
        "idle sockets closed at the INIT deadline\n{table}"
    );
    assert!(closed(Phase::Oversize) > 0, "2 GiB claims closed\n{table}");
    assert!(
        closed(Phase::NoRead) > 0,
        "non-reading clients dropped\n{table}"
    );
    wait_log(&["disconnecting client", "send queue full"]).await;
    wait_log(&["handshake deadline"]).await;
    srv.stop().await;
}

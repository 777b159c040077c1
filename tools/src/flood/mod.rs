//! `qnetd-flood`: the hardening suite's attack tool. While legitimate 2-node
//! clusters heartbeat and hold their votes, it runs, one phase after the
//! other, floods that must not hurt them: idle sockets, one-byte-at-a-time
//! sockets, maximum-size garbage messages, connect/close churn, clients that
//! complete INIT and then never read while votes are sent to them, and
//! oversize length claims.
//!
//! Each phase reports the legitimate clients' echo round trip (p50/p99/max),
//! whether any of them was dropped or saw its vote change, the server's RSS
//! before, at peak and after (from /proc of `--server-pid`), and whether the
//! server still admits a new cluster afterwards. Everything is bounded in
//! count and time, and only loopback addresses are used (attack sockets
//! spread over 127.1.0.0/16 so that one address's limit is not the only
//! defence tested).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::bench::report::Latency;

mod attack;
mod legit;
mod report;
mod types;

use attack::*;
use legit::*;
pub use report::markdown;
pub use types::*;

/// Runs the suite.
pub async fn run(opts: &FloodOptions) -> Result<FloodReport, FloodError> {
    qnetd_core::sys::raise_nofile_limit(None);
    let legit = Arc::new(Legit {
        stop: AtomicBool::new(false),
        rtts: Mutex::new(vec![Vec::new(); opts.phases.len()]),
        phase: AtomicUsize::new(usize::MAX),
        dropped: AtomicU64::new(0),
        vote_changes: AtomicU64::new(0),
        echo_timeouts: AtomicU64::new(0),
    });
    // Legitimate clusters first; they must all hold ACK before any attack.
    // They run on a runtime of their own (one thread), so that the attack
    // tasks of this process cannot starve them: a late echo must be the
    // server's doing.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), FloodError>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let legit_thread = {
        let legit = Arc::clone(&legit);
        let (server, clusters, hb) = (opts.server, opts.legit_clusters, opts.heartbeat_ms);
        std::thread::Builder::new()
            .name("legit-clients".into())
            .spawn(move || {
                // Ahead of this process's attack threads for the CPU (when
                // allowed: root), so their load does not show up as server
                // latency. Failure only makes the figures more pessimistic.
                // SAFETY: plain syscalls on the calling thread.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, -10);
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(FloodError::Thread(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut tasks = JoinSet::new();
                    for i in 0..clusters {
                        match legit_pair(server, &format!("legit-{i}"), hb).await {
                            Ok(pair) => {
                                for c in pair {
                                    tasks.spawn(legit_node(c, hb, Arc::clone(&legit)));
                                }
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                    tasks.abort_all();
                });
            })
            .map_err(FloodError::Thread)?
    };
    ready_rx.await.map_err(|_| FloodError::ThreadEnded)??;

    let mut reports = Vec::new();
    for (idx, phase) in opts.phases.iter().copied().enumerate() {
        let before = opts.server_pid.and_then(rss_kib);
        let cpu0 = opts.server_pid.and_then(cpu_seconds);
        let dropped0 = legit.dropped.load(Ordering::Relaxed);
        let changes0 = legit.vote_changes.load(Ordering::Relaxed);
        let timeouts0 = legit.echo_timeouts.load(Ordering::Relaxed);
        legit.phase.store(idx, Ordering::Relaxed);
        eprintln!(
            "[{}] phase {} ({}/{}) for {:?}",
            opts.label,
            phase.label(),
            idx + 1,
            opts.phases.len(),
            opts.phase_duration
        );

        let stats = Arc::new(AttackStats::default());
        let until = tokio::time::Instant::now() + opts.phase_duration;
        let count = match phase {
            Phase::Idle | Phase::Slow | Phase::Oversize => opts.sockets,
            Phase::Garbage => (opts.sockets / 20).clamp(1, 64),
            Phase::Churn => (opts.sockets / 20).clamp(1, 32),
            Phase::NoRead => (opts.sockets / 20).clamp(1, 100),
        };
        let mut attackers = JoinSet::new();
        for i in 0..count {
            attackers.spawn(attacker(phase, i, opts.server, until, Arc::clone(&stats)));
        }
        // Sample RSS while the phase runs.
        let peak = Arc::new(AtomicU64::new(before.unwrap_or(0)));
        let sampler = opts.server_pid.map(|pid| {
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                loop {
                    if let Some(r) = rss_kib(pid) {
                        peak.fetch_max(r, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        // Every attacker ends by `until`; bound the wait anyway.
        let _ = tokio::time::timeout(opts.phase_duration + Duration::from_secs(10), async {
            while attackers.join_next().await.is_some() {}
        })
        .await;
        attackers.abort_all();
        tokio::time::sleep(opts.cooldown).await;
        if let Some(s) = sampler {
            s.abort();
        }
        let after = opts.server_pid.and_then(rss_kib);
        let cpu = match (cpu0, opts.server_pid.and_then(cpu_seconds)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let server_alive = alive(opts.server_pid);
        let admits = server_alive
            && tokio::time::timeout(
                Duration::from_secs(15),
                legit_pair(opts.server, &format!("late-{idx}"), opts.heartbeat_ms),
            )
            .await
            .is_ok_and(|r| r.is_ok());

        let rtts = legit
            .rtts
            .lock()
            .map(|r| r[idx].clone())
            .unwrap_or_default();
        let rtt = Latency::from_ms(rtts.iter().map(|us| f64::from(*us) / 1000.0).collect());
        let dropped = legit.dropped.load(Ordering::Relaxed) - dropped0;
        let changes = legit.vote_changes.load(Ordering::Relaxed) - changes0;
        let timeouts = legit.echo_timeouts.load(Ordering::Relaxed) - timeouts0;
        let mut failures = Vec::new();
        if !server_alive {
            failures.push("the server process is gone".to_string());
        }
        if dropped > 0 {
            failures.push(format!("{dropped} legitimate client(s) dropped"));
        }
        if changes > 0 {
            failures.push(format!("{changes} legitimate vote change(s)"));
        }
        if !admits {
            failures.push("a new cluster could not connect and get ACK within 15 s".into());
        }
        reports.push(PhaseReport {
            phase,
            attack_connections: stats.connected.load(Ordering::Relaxed),
            attack_closed_by_server: stats.closed_by_server.load(Ordering::Relaxed),
            attack_connect_failures: stats.connect_failures.load(Ordering::Relaxed),
            legit_echoes: rtt.count,
            legit_rtt_p50_ms: rtt.p50_ms,
            legit_rtt_p99_ms: rtt.p99_ms,
            legit_rtt_max_ms: rtt.max_ms,
            legit_echo_timeouts: timeouts,
            legit_dropped: dropped,
            legit_vote_changes: changes,
            rss_before_kib: before,
            rss_peak_kib: opts.server_pid.map(|_| peak.load(Ordering::Relaxed)),
            rss_after_kib: after,
            server_cpu_seconds: cpu,
            server_alive,
            admits_new_clients: admits,
            passed: failures.is_empty(),
            failures,
        });
        if !server_alive {
            break;
        }
    }
    legit.stop.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(());
    let _ = tokio::task::spawn_blocking(move || legit_thread.join()).await;
    let passed = reports.len() == opts.phases.len() && reports.iter().all(|r| r.passed);
    Ok(FloodReport {
        label: opts.label.clone(),
        server: opts.server.to_string(),
        legit_clusters: opts.legit_clusters,
        sockets: opts.sockets,
        phase_seconds: opts.phase_duration.as_secs_f64(),
        phases: reports,
        passed,
    })
}

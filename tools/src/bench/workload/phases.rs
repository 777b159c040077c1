//! The phases after the connect phase: steady (echo round trips for a
//! while), mass-split (every cluster splits at once; safety and decision
//! latency per cluster) and reconnect (the server restarts; time until
//! every node votes again).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::tracking::{cpu_delta, Run};
use super::Config;
use crate::bench::error::{BenchError, OptionsError};
use crate::bench::node::{self, held, Phase, RunCtx, View};
use crate::bench::proc::Spawned;
use crate::bench::report::{sample_proc, Latency, PhaseReport, Report};
use crate::bench::safety;
use qnetd_core::wire::TieBreaker;

/// Which half wins a 50:50 or uneven split under ffsplit.
pub(super) fn split_winner(nodes: u32, tb: TieBreaker) -> View {
    let low = nodes / 2;
    let high = nodes - low;
    if high > low {
        return View::High;
    }
    match tb {
        TieBreaker::Lowest => View::Low,
        TieBreaker::Highest => View::High,
        TieBreaker::NodeId(n) if n > low && n <= nodes => View::High,
        TieBreaker::NodeId(_) => View::Low,
    }
}

/// Steady: every connected node keeps its heartbeats for `cfg.duration`;
/// the phase counts the nodes that kept their ACK and connection.
pub(super) async fn steady(
    cfg: &Config,
    run: &mut Run,
    ctx: &RunCtx,
    pid: Option<u32>,
    report: &mut Report,
) {
    // Nodes that did not connect in time stop trying, so the
    // steady figures are those of the connected ones only.
    if let Some(sem) = &ctx.first_connect {
        sem.close();
    }
    let start = Instant::now();
    let a = pid.and_then(sample_proc);
    let gens: Vec<u32> = run
        .shared
        .iter()
        .map(|s| s.generation.load(Ordering::Relaxed))
        .collect();
    let rtt_before: Vec<usize> = run
        .shared
        .iter()
        .map(|s| s.echo_rtt_us.lock().map(|v| v.len()).unwrap_or(0))
        .collect();
    while start.elapsed() < cfg.duration {
        let total = run.specs.len();
        let errors = run.errors();
        run.progress.show("steady", total, total, errors, start);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.progress.end();
    let b = pid.and_then(sample_proc);
    let mut rtts = Vec::new();
    let mut kept = 0;
    for (i, sh) in run.shared.iter().enumerate() {
        if let Ok(v) = sh.echo_rtt_us.lock() {
            rtts.extend(
                v[rtt_before[i].min(v.len())..]
                    .iter()
                    .map(|u| *u as f64 / 1e3),
            );
        }
        if sh.generation.load(Ordering::Relaxed) == gens[i]
            && sh.vote.load(Ordering::Acquire) == held::ACK
        {
            kept += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    report.phase = Some(PhaseReport {
        name: "steady".into(),
        done: kept,
        expected: run.specs.len(),
        wall_s: wall,
        throughput_per_s: rtts.len() as f64 / wall,
        latency: Latency::from_ms(rtts),
        server_cpu_s: cpu_delta(a, b),
    });
}

/// Mass-split: every cluster splits at once; returns each node's expected
/// final vote.
pub(super) async fn mass_split(
    cfg: &Config,
    run: &mut Run,
    ctx: &RunCtx,
    pid: Option<u32>,
    ctl_tx: &watch::Sender<Phase>,
    names: &[Arc<str>],
    report: &mut Report,
) -> Vec<u8> {
    let mut expect: Vec<u8> = vec![held::ACK; run.specs.len()];
    let winner = split_winner(cfg.nodes, cfg.tie_breaker);
    for (i, sp) in run.specs.iter().enumerate() {
        expect[i] = if sp.half() == winner {
            held::ACK
        } else {
            held::NACK
        };
    }
    let a = pid.and_then(sample_proc);
    let t1 = ctx.now_ns();
    let _ = ctl_tx.send(Phase::Split);
    let exp = expect.clone();
    run.wait_all("mass-split", |i, sh| {
        sh.vote.load(Ordering::Acquire) == exp[i]
            && sh
                .timeline
                .lock()
                .map(|t| t.last().is_some_and(|e| e.view != View::Whole))
                .unwrap_or(false)
    })
    .await;
    let b = pid.and_then(sample_proc);
    let mut phase = run.phase_report(
        "split",
        t1,
        |sp, t| {
            let last = t.last()?;
            let want = if sp.half() == winner {
                held::ACK
            } else {
                held::NACK
            };
            (last.vote == want && last.view != View::Whole).then_some(last.t_ns)
        },
        cpu_delta(a, b),
    );
    // Safety and decision latency, per cluster.
    let k = cfg.nodes as usize;
    let mut doubles = 0;
    let mut decisions = Vec::new();
    let mut split_lat = Vec::new();
    for (c, name) in names.iter().enumerate() {
        let tl: Vec<Vec<node::Event>> = run.shared[c * k..(c + 1) * k]
            .iter()
            .map(|s| s.timeline.lock().map(|t| t.clone()).unwrap_or_default())
            .collect();
        // Per node: from the first membership list of its
        // cluster leaving the bench to the node's final vote
        // (the bench's own fan-out to thousands of tasks is in
        // wall_s, not here).
        let first_send = tl
            .iter()
            .filter_map(|t| {
                t.iter()
                    .find(|e| e.t_ns >= t1 && e.view != View::Whole)
                    .map(|e| e.t_ns)
            })
            .min();
        for (i, t) in tl.iter().enumerate() {
            if let (Some(start), Some(last)) = (first_send, t.last()) {
                if last.view != View::Whole && last.vote == expect[c * k + i] {
                    split_lat.push(last.t_ns.saturating_sub(start) as f64 / 1e6);
                }
            }
        }
        let d = safety::double_acks(&tl, t1);
        if doubles == 0 {
            if let Some(first) = d.first() {
                report.error_samples.push(format!(
                    "double ACK in cluster {} at +{:.3} ms: {:?}",
                    name,
                    first.t_ns.saturating_sub(t1) as f64 / 1e6,
                    first.holders
                ));
            }
        }
        doubles += d.len();
        let last_in = run.shared[c * k..(c + 1) * k]
            .iter()
            .map(|s| s.last_membership_ns.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let first_out = tl
            .iter()
            .flat_map(|t| t.iter())
            .filter(|e| {
                e.t_ns >= last_in
                    && e.view != View::Whole
                    && (e.vote == held::ACK || e.vote == held::NACK)
            })
            .map(|e| e.t_ns)
            .min();
        if let Some(out) = first_out {
            decisions.push(out.saturating_sub(last_in) as f64 / 1e6);
        }
    }
    report.double_acks = doubles;
    report.decision = Some(Latency::from_ms(decisions));
    phase.latency = Latency::from_ms(split_lat);
    phase.name = "split".into();
    report.phase = Some(phase);
    expect
}

/// Reconnect: restarts the spawned server and waits until every node votes
/// again; returns the new server's PID and the errors the restart caused.
pub(super) async fn reconnect(
    cfg: &Config,
    run: &mut Run,
    ctx: &RunCtx,
    spawned: &mut Option<Spawned>,
    report: &mut Report,
) -> Result<(u32, u64), BenchError> {
    let errors_before = run.errors();
    let gens: Vec<u32> = run
        .shared
        .iter()
        .map(|s| s.generation.load(Ordering::Relaxed))
        .collect();
    let s = spawned
        .as_mut()
        .ok_or(BenchError::Options(OptionsError::ReconnectNeedsSpawn))?;
    let t_stop = Instant::now();
    s.stop(Duration::from_secs(10)).await;
    let new_pid = s.start()?;
    s.wait_ready(cfg.server, cfg.timeout).await?;
    let restart = t_stop.elapsed().as_secs_f64();
    let pid = Some(new_pid);
    let a = pid.and_then(sample_proc);
    let t1 = ctx.now_ns();
    let g = gens.clone();
    run.wait_all("reconnect", |i, sh| {
        sh.generation.load(Ordering::Relaxed) > g[i] && sh.vote.load(Ordering::Acquire) == held::ACK
    })
    .await;
    let b = pid.and_then(sample_proc);
    let phase = run.phase_report(
        "reconnect",
        t1,
        |_, t| {
            let first_gen = t.first()?.generation;
            t.iter()
                .find(|e| e.generation > first_gen && e.vote == held::ACK)
                .map(|e| e.t_ns)
        },
        cpu_delta(a, b),
    );
    report.restart_s = Some(restart);
    report.server_loaded = b;
    report.phase = Some(phase);
    Ok((new_pid, run.errors() - errors_before))
}

//! The loaded set of `storm-while-loaded`: clusters that are connected and
//! heartbeating before the storm starts, run on a thread of their own with
//! a single-threaded runtime, at a higher CPU priority than the storm's
//! tasks when the system allows it (nice -5 needs CAP_SYS_NICE). So the
//! bench's own storm work (thousands of TLS client handshakes) does not
//! show up as server latency in their echo round trips; what does show is
//! the server's fairness between connected clients and newcomers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::error::BenchError;
use super::node::{self, held, NodeShared, NodeSpec, Phase, RunCtx};
use super::report::{Latency, LoadedReport};

/// Nice value asked for the loaded set's thread.
const LOADED_NICE: i32 = -5;

/// The loaded clients, running.
pub struct LoadedSet {
    pub specs: Vec<NodeSpec>,
    pub shared: Vec<Arc<NodeShared>>,
    ctl: watch::Sender<Phase>,
    thread: Option<std::thread::JoinHandle<()>>,
    nice: Arc<std::sync::atomic::AtomicI32>,
}

/// Where the storm started, per loaded client.
pub struct Mark {
    generations: Vec<u32>,
    errors: Vec<u32>,
    rtts: Vec<usize>,
    /// The storm's start, nanoseconds since the run's epoch.
    at_ns: u64,
}

impl LoadedSet {
    /// Starts every loaded node on its own thread (connections ramped by
    /// `ctx.first_connect`).
    pub fn start(specs: Vec<NodeSpec>, ctx: Arc<RunCtx>) -> Result<LoadedSet, BenchError> {
        let shared: Vec<Arc<NodeShared>> =
            specs.iter().map(|_| Arc::new(NodeShared::new())).collect();
        let (ctl, ctl_rx) = watch::channel(Phase::Whole);
        let nice = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let (s2, sh2, n2) = (specs.clone(), shared.clone(), Arc::clone(&nice));
        let thread = std::thread::Builder::new()
            .name("bench-loaded".into())
            .spawn(move || {
                n2.store(raise_priority(), Ordering::Relaxed);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("qnetd-bench: cannot start the loaded set's runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for (sp, sh) in s2.into_iter().zip(sh2) {
                        tasks.spawn(node::run_node(sp, sh, Arc::clone(&ctx), ctl_rx.clone()));
                    }
                    while tasks.join_next().await.is_some() {}
                });
            })
            .map_err(BenchError::LoadedThread)?;
        Ok(LoadedSet {
            specs,
            shared,
            ctl,
            thread: Some(thread),
            nice,
        })
    }

    /// Loaded clients holding ACK now.
    pub fn voting(&self) -> usize {
        self.shared
            .iter()
            .filter(|s| s.vote.load(Ordering::Acquire) == held::ACK)
            .count()
    }

    /// Notes where every loaded client is when the storm starts (`now_ns`
    /// on the run's clock).
    pub fn mark(&self, now_ns: u64) -> Mark {
        Mark {
            generations: self
                .shared
                .iter()
                .map(|s| s.generation.load(Ordering::Relaxed))
                .collect(),
            errors: self
                .shared
                .iter()
                .map(|s| s.errors.load(Ordering::Relaxed))
                .collect(),
            rtts: self
                .shared
                .iter()
                .map(|s| s.echo_rtt_us.lock().map(|v| v.len()).unwrap_or(0))
                .collect(),
            at_ns: now_ns,
        }
    }

    /// What the loaded clients saw from `mark` to `now_ns` (the run's
    /// clock).
    pub fn report_since(
        &self,
        mark: &Mark,
        now_ns: u64,
        clusters: usize,
        heartbeat_ms: u32,
    ) -> LoadedReport {
        let mut rtts = Vec::new();
        let mut dropped = 0;
        let mut unanswered = 0;
        let late_ns = u64::from(heartbeat_ms) * 1_000_000;
        for (i, sh) in self.shared.iter().enumerate() {
            if let Ok(v) = sh.echo_rtt_us.lock() {
                rtts.extend(
                    v[mark.rtts[i].min(v.len())..]
                        .iter()
                        .map(|u| *u as f64 / 1e3),
                );
            }
            let lost = sh.generation.load(Ordering::Relaxed) != mark.generations[i]
                || sh.errors.load(Ordering::Relaxed) != mark.errors[i]
                || sh.vote.load(Ordering::Acquire) != held::ACK;
            if lost {
                dropped += 1;
            }
            let sent = sh.pending_echo_ns.load(Ordering::Relaxed);
            if sent != 0 && sent >= mark.at_ns && now_ns.saturating_sub(sent) > late_ns {
                unanswered += 1;
                rtts.push(now_ns.saturating_sub(sent) as f64 / 1e6);
            }
        }
        LoadedReport {
            clusters,
            clients: self.specs.len(),
            heartbeat_ms,
            echo: Latency::from_ms(rtts),
            echo_unanswered: unanswered,
            dropped,
            nice: self.nice.load(Ordering::Relaxed),
        }
    }

    /// Stops every loaded node and its thread (bounded).
    pub fn stop(mut self) {
        let _ = self.ctl.send(Phase::Stop);
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Asks for [`LOADED_NICE`] for the calling thread; returns the nice value
/// it runs at.
fn raise_priority() -> i32 {
    // SAFETY: gettid and setpriority only read their arguments.
    let rc = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            LOADED_NICE,
        )
    };
    if rc == 0 {
        LOADED_NICE
    } else {
        0
    }
}

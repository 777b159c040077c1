//! The nodes of a run and its progress line: waiting (bounded) until every
//! node meets a condition, and turning the nodes' timelines into a
//! [`PhaseReport`].

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Config;
use crate::bench::node::{self, NodeShared, NodeSpec};
use crate::bench::report::{Latency, PhaseReport, ProcSample};

pub(super) struct Progress {
    on: bool,
    tty: bool,
    last: Instant,
}

impl Progress {
    pub(super) fn new(on: bool) -> Progress {
        Progress {
            on,
            tty: std::io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    pub(super) fn show(
        &mut self,
        label: &str,
        done: usize,
        total: usize,
        errors: u64,
        since: Instant,
    ) {
        if !self.on {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let line = format!(
            "{label}: {done}/{total} ({:.0}%), {errors} errors, {:.1} s",
            100.0 * done as f64 / total.max(1) as f64,
            since.elapsed().as_secs_f64()
        );
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }

    pub(super) fn end(&mut self) {
        if self.on && self.tty {
            let _ = writeln!(std::io::stderr());
        }
        self.last = Instant::now() - Duration::from_secs(60);
    }
}

/// A run in progress.
pub(super) struct Run {
    pub(super) cfg: Config,
    pub(super) specs: Vec<NodeSpec>,
    pub(super) shared: Vec<Arc<NodeShared>>,
    pub(super) progress: Progress,
}

impl Run {
    pub(super) fn errors(&self) -> u64 {
        self.shared
            .iter()
            .map(|s| u64::from(s.errors.load(Ordering::Relaxed)))
            .sum()
    }

    /// Waits until `pred` holds for every node, or the timeout.
    pub(super) async fn wait_all(
        &mut self,
        label: &str,
        pred: impl Fn(usize, &NodeShared) -> bool,
    ) -> usize {
        let start = Instant::now();
        let deadline = start + self.cfg.timeout;
        let total = self.specs.len();
        loop {
            let done = self
                .shared
                .iter()
                .enumerate()
                .filter(|(i, sh)| pred(*i, sh))
                .count();
            let errors = self.errors();
            self.progress.show(label, done, total, errors, start);
            if done == total || Instant::now() >= deadline {
                self.progress.end();
                return done;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Per-node latency from `from_ns` to the event `pick` selects.
    pub(super) fn phase_report(
        &self,
        name: &str,
        from_ns: u64,
        pick: impl Fn(&NodeSpec, &[node::Event]) -> Option<u64>,
        cpu: Option<f64>,
    ) -> PhaseReport {
        let mut lat = Vec::with_capacity(self.specs.len());
        for (sp, sh) in self.specs.iter().zip(&self.shared) {
            let t = sh.timeline.lock().map(|t| pick(sp, &t)).unwrap_or(None);
            if let Some(t) = t {
                lat.push(t.saturating_sub(from_ns) as f64 / 1e6);
            }
        }
        let done = lat.len();
        let expected = self.specs.len();
        let wall_s = if done == expected {
            lat.iter().copied().fold(0.0, f64::max) / 1e3
        } else {
            self.cfg.timeout.as_secs_f64()
        };
        PhaseReport {
            name: name.into(),
            done,
            expected,
            wall_s,
            latency: Latency::from_ms(lat),
            throughput_per_s: if wall_s > 0.0 {
                done as f64 / wall_s
            } else {
                0.0
            },
            server_cpu_s: cpu,
        }
    }
}

pub(super) fn cpu_delta(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<f64> {
    Some(b?.cpu_s - a?.cpu_s)
}

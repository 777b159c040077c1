//! Figures of a bench run: latency percentiles, the server's RSS and CPU
//! time from /proc, the report (a text table and JSON), and the ratio table
//! of two reports (ours / reference).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Latency percentiles of a sample, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles by nearest rank; all zero for an empty sample.
    pub fn from_ms(mut v: Vec<f64>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| {
            let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[i.clamp(1, v.len()) - 1]
        };
        Latency {
            count: v.len(),
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            max_ms: v[v.len() - 1],
        }
    }
}

/// One sample of a process's resource use.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcSample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub hwm_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
}

/// Reads /proc/<pid>/stat and /proc/<pid>/status; `None` if the process is
/// gone or the files cannot be parsed.
pub fn sample_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: split after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let tck = if tck > 0 { tck as f64 } else { 100.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        cpu_s: (utime + stime) as f64 / tck,
    })
}

/// Our server's own decision latency (event in → votes queued), from the
/// `qnetd_decision_latency_seconds` histogram of its /metrics: percentiles
/// are bucket upper bounds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerDecision {
    pub count: u64,
    pub p50_le_ms: f64,
    pub p99_le_ms: f64,
    /// Upper bound of the highest non-empty bucket; `None` if some took
    /// longer than the last finite bucket.
    pub max_le_ms: Option<f64>,
}

/// The decision-latency histogram's cumulative buckets: (upper bound in
/// seconds, `None` for +Inf; count), summed over label sets.
pub type Buckets = Vec<(Option<f64>, u64)>;

/// Parses the histogram out of a Prometheus text page.
pub fn parse_decision_buckets(text: &str) -> Buckets {
    let mut out: Buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("qnetd_decision_latency_seconds_bucket{") else {
            continue;
        };
        let Some(le_at) = rest.find("le=\"") else {
            continue;
        };
        let le_text = &rest[le_at + 4..];
        let Some(end) = le_text.find('"') else {
            continue;
        };
        let le = match &le_text[..end] {
            "+Inf" => None,
            v => match v.parse::<f64>() {
                Ok(v) => Some(v),
                Err(_) => continue,
            },
        };
        let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else {
            continue;
        };
        match out.iter_mut().find(|(b, _)| *b == le) {
            Some(e) => e.1 += count as u64,
            None => out.push((le, count as u64)),
        }
    }
    out.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    out
}

/// Percentiles of the decisions between two scrapes.
pub fn decision_between(before: &Buckets, after: &Buckets) -> Option<ServerDecision> {
    let delta: Vec<(Option<f64>, u64)> = after
        .iter()
        .map(|(le, n)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|x| x.1)
                .unwrap_or(0);
            (*le, n.saturating_sub(b))
        })
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let at = |q: f64| {
        let want = (q * total as f64).ceil() as u64;
        delta
            .iter()
            .find(|(_, n)| *n >= want.max(1))
            .and_then(|(le, _)| *le)
            .map(|s| s * 1e3)
            .unwrap_or(f64::INFINITY)
    };
    let max = at(1.0);
    Some(ServerDecision {
        count: total,
        p50_le_ms: at(0.5).min(1e9),
        p99_le_ms: at(0.99).min(1e9),
        max_le_ms: max.is_finite().then_some(max),
    })
}

/// GET http://ADDR/metrics, bounded by a short timeout.
pub async fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: qnetd\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.ok()?;
        String::from_utf8(body).ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// Figures of one phase (connect, or the workload's own).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseReport {
    pub name: String,
    /// Nodes that reached the expected vote within the timeout.
    pub done: usize,
    pub expected: usize,
    /// From the phase's start until the last node reached its vote (or the
    /// timeout), seconds.
    pub wall_s: f64,
    /// Per node: from the phase's start to its vote.
    pub latency: Latency,
    /// Nodes per second (done / wall).
    pub throughput_per_s: f64,
    /// Server CPU seconds spent in the phase.
    pub server_cpu_s: Option<f64>,
}

/// The whole report of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub workload: String,
    pub server: String,
    /// Free text naming the server (e.g. "qnetd 0.1.0 (abc123)").
    pub server_label: String,
    pub tls: bool,
    pub clusters: usize,
    pub nodes_per_cluster: u32,
    pub clients: usize,
    pub algorithm: String,
    pub heartbeat_ms: u32,
    /// Issuing the client certificates and TLS configurations, seconds.
    pub setup_s: f64,
    pub connect: PhaseReport,
    /// The workload's own phase (steady, split or reconnect).
    pub phase: Option<PhaseReport>,
    /// Echo round trips during the run.
    pub echo_rtt: Latency,
    /// Mass-split: per cluster, from the last membership sent to the first
    /// VOTE_INFO that followed (client-side view of event in → votes out).
    pub decision: Option<Latency>,
    /// Our server's decision latency during the workload's phase (from its
    /// /metrics, `--metrics ADDR`).
    pub server_decision: Option<ServerDecision>,
    /// Mass-split: instants with ACK holders of two different memberships.
    pub double_acks: usize,
    /// Nodes whose vote at the end was not the expected one.
    pub wrong_votes: usize,
    /// Failed connection attempts and lost connections (a reconnect's
    /// planned disconnections not counted).
    pub errors: usize,
    pub error_samples: Vec<String>,
    /// Server process before any client, after the connect phase, at the end.
    pub server_idle: Option<ProcSample>,
    pub server_loaded: Option<ProcSample>,
    pub server_end: Option<ProcSample>,
    /// (RSS loaded − RSS idle) / clients, KiB.
    pub rss_per_client_kib: Option<f64>,
    /// Reconnect: seconds from the stop of the server until it accepted
    /// connections again.
    pub restart_s: Option<f64>,
    /// storm-while-loaded: what the clients connected before the storm saw.
    #[serde(default)]
    pub loaded: Option<LoadedReport>,
    /// The machine's load average (1, 5, 15 min) when the run ended.
    #[serde(default)]
    pub load_average: Option<String>,
    /// CPUs the bench and the server may run on (their affinity).
    #[serde(default)]
    pub bench_cpus: Option<String>,
    #[serde(default)]
    pub server_cpus: Option<String>,
    /// Every node got its expected vote, no double ACK (and, in
    /// storm-while-loaded, no loaded client dropped).
    pub ok: bool,
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.3}{unit}"))
        .unwrap_or_else(|| "-".into())
}

fn lat(l: &Latency) -> String {
    if l.count == 0 {
        "-".into()
    } else {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
            l.p50_ms, l.p99_ms, l.max_ms, l.count
        )
    }
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<28} {v}");
        };
        row("workload", self.workload.clone());
        row(
            "server",
            format!("{} {}", self.server, self.server_label)
                .trim()
                .to_string(),
        );
        row(
            "load",
            format!(
                "{} clusters x {} nodes = {} clients, {}, {}, heartbeat {} ms",
                self.clusters,
                self.nodes_per_cluster,
                self.clients,
                if self.tls { "TLS" } else { "plain TCP" },
                self.algorithm,
                self.heartbeat_ms
            ),
        );
        if self.setup_s > 0.0 {
            row("setup (certificates)", format!("{:.2} s", self.setup_s));
        }
        for p in std::iter::once(&self.connect).chain(self.phase.iter()) {
            row(
                &format!("{}: voting", p.name),
                format!("{}/{} in {:.3} s", p.done, p.expected, p.wall_s),
            );
            row(&format!("{}: latency", p.name), lat(&p.latency));
            row(
                &format!("{}: throughput", p.name),
                format!("{:.0} nodes/s", p.throughput_per_s),
            );
            row(
                &format!("{}: server CPU", p.name),
                opt(p.server_cpu_s, " s"),
            );
        }
        if let Some(d) = &self.decision {
            row("decision (client view)", lat(d));
        }
        if let Some(d) = &self.server_decision {
            row(
                "decision (server, queued)",
                format!(
                    "p50 <= {} ms, p99 <= {} ms, max <= {} (n={})",
                    d.p50_le_ms,
                    d.p99_le_ms,
                    d.max_le_ms
                        .map(|m| format!("{m} ms"))
                        .unwrap_or_else(|| "above 100 ms".into()),
                    d.count
                ),
            );
        }
        if let Some(r) = self.restart_s {
            row("server restart", format!("{r:.3} s"));
        }
        row("echo round trip", lat(&self.echo_rtt));
        if let Some(l) = &self.loaded {
            row(
                "loaded set",
                format!(
                    "{} clusters = {} clients, heartbeat {} ms, nice {}",
                    l.clusters, l.clients, l.heartbeat_ms, l.nice
                ),
            );
            row("loaded: echo during storm", lat(&l.echo));
            row("loaded: unanswered echoes", l.echo_unanswered.to_string());
            row("loaded: dropped", l.dropped.to_string());
        }
        if let Some(p) = &self.server_loaded {
            row(
                "server RSS loaded",
                format!("{} KiB (peak {} KiB)", p.rss_kib, p.hwm_kib),
            );
        }
        row(
            "server RSS per client",
            opt(self.rss_per_client_kib, " KiB"),
        );
        if let (Some(a), Some(b)) = (&self.server_idle, &self.server_end) {
            row("server CPU total", format!("{:.2} s", b.cpu_s - a.cpu_s));
        }
        if let Some(c) = &self.bench_cpus {
            row(
                "CPUs (bench / server)",
                format!("{c} / {}", self.server_cpus.as_deref().unwrap_or("?")),
            );
        }
        if let Some(l) = &self.load_average {
            row("load average at the end", l.clone());
        }
        row("double ACKs", self.double_acks.to_string());
        row("wrong final votes", self.wrong_votes.to_string());
        row("errors", self.errors.to_string());
        for e in &self.error_samples {
            row("  e.g.", e.clone());
        }
        row("result", if self.ok { "OK" } else { "FAILED" }.into());
        s
    }
}

/// One figure of the ratio table: name, and whether lower is better.
type Figure = (&'static str, fn(&Report) -> Option<f64>, bool);

fn figures() -> Vec<Figure> {
    vec![
        ("connect: all voting (s)", |r| Some(r.connect.wall_s), true),
        (
            "connect: p50 (ms)",
            |r| Some(r.connect.latency.p50_ms),
            true,
        ),
        (
            "connect: p99 (ms)",
            |r| Some(r.connect.latency.p99_ms),
            true,
        ),
        (
            "connect: max (ms)",
            |r| Some(r.connect.latency.max_ms),
            true,
        ),
        (
            "connect: throughput (nodes/s)",
            |r| Some(r.connect.throughput_per_s),
            false,
        ),
        ("connect: server CPU (s)", |r| r.connect.server_cpu_s, true),
        (
            "phase: all voting (s)",
            |r| r.phase.as_ref().map(|p| p.wall_s),
            true,
        ),
        (
            "phase: p50 (ms)",
            |r| r.phase.as_ref().map(|p| p.latency.p50_ms),
            true,
        ),
        (
            "phase: p99 (ms)",
            |r| r.phase.as_ref().map(|p| p.latency.p99_ms),
            true,
        ),
        (
            "phase: max (ms)",
            |r| r.phase.as_ref().map(|p| p.latency.max_ms),
            true,
        ),
        (
            "phase: server CPU (s)",
            |r| r.phase.as_ref().and_then(|p| p.server_cpu_s),
            true,
        ),
        (
            "decision p99 (ms)",
            |r| r.decision.as_ref().map(|d| d.p99_ms),
            true,
        ),
        (
            "echo RTT p99 (ms)",
            |r| (r.echo_rtt.count > 0).then_some(r.echo_rtt.p99_ms),
            true,
        ),
        (
            "loaded: echo p50 (ms)",
            |r| r.loaded.as_ref().map(|l| l.echo.p50_ms),
            true,
        ),
        (
            "loaded: echo p99 (ms)",
            |r| r.loaded.as_ref().map(|l| l.echo.p99_ms),
            true,
        ),
        (
            "loaded: echo max (ms)",
            |r| r.loaded.as_ref().map(|l| l.echo.max_ms),
            true,
        ),
        (
            "loaded: dropped",
            |r| r.loaded.as_ref().map(|l| l.dropped as f64),
            true,
        ),
        (
            "server RSS loaded (MiB)",
            |r| r.server_loaded.map(|p| p.rss_kib as f64 / 1024.0),
            true,
        ),
        (
            "server RSS per client (KiB)",
            |r| r.rss_per_client_kib,
            true,
        ),
        ("server restart (s)", |r| r.restart_s, true),
        ("double ACKs", |r| Some(r.double_acks as f64), true),
        ("errors", |r| Some(r.errors as f64), true),
    ]
}

/// Markdown table comparing reports of the same workloads: ours / reference
/// for each figure. `pairs` are (ours, reference).
pub fn ratio_table(pairs: &[(Report, Report)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | clients | figure | qnetd | corosync-qnetd | qnetd / reference |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|");
    for (ours, theirs) in pairs {
        let _ = writeln!(
            s,
            "| {} | {} | all voting | {} | {} | |",
            ours.workload,
            ours.clients,
            if ours.ok { "yes" } else { "**no**" },
            if theirs.ok { "yes" } else { "**no**" },
        );
        let phase_name = ours
            .phase
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        for (name, f, _lower_better) in figures() {
            let (a, b) = (f(ours), f(theirs));
            if a.is_none() && b.is_none() {
                continue;
            }
            let fmt = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "-".into());
            let ratio = match (a, b) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                (Some(a), Some(b)) if a == b => "=".into(),
                _ => "-".into(),
            };
            let name = name.replace("phase", &phase_name);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                ours.workload,
                ours.clients,
                name,
                fmt(a),
                fmt(b),
                ratio
            );
        }
    }
    s
}

fn fmt_num(v: f64) -> String {
    if (v == v.trunc() && v.abs() < 1e9) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Reads a JSON report written by `--json`.
pub fn read_report(path: &Path) -> Result<Report, super::error::BenchError> {
    use super::error::BenchError;
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::ReadReport {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| BenchError::NotAReport {
        path: path.to_path_buf(),
        source,
    })
}

/// The machine's load average (the first three fields of /proc/loadavg).
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The CPUs a process may run on (`Cpus_allowed_list` of
/// /proc/PID/status; `self` for the bench).
pub fn cpus_allowed(pid: Option<u32>) -> Option<String> {
    let who = pid.map_or_else(|| "self".to_string(), |p| p.to_string());
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// What the loaded clients of `storm-while-loaded` saw during the storm
/// (`super::loaded`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadedReport {
    pub clusters: usize,
    pub clients: usize,
    pub heartbeat_ms: u32,
    /// Echo round trips sent during the storm.
    pub echo: Latency,
    /// Echo requests sent during the storm still unanswered at its end
    /// after more than a heartbeat (counted in `echo` with their age).
    pub echo_unanswered: usize,
    /// Clients that lost their connection or their ACK during the storm.
    pub dropped: usize,
    /// The nice value the loaded set's thread ran at.
    pub nice: i32,
}

#[cfg(test)]
mod tests;

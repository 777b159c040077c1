//! `qnetd-flood`: command-line front end of the hardening suite
//! ([`qnetd_tools::flood`]): parses the options, runs the phases against a server
//! on loopback and prints the per-phase table (and JSON on request).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qnetd_tools::flood::{self, FloodOptions, Phase};

/// Hardening suite: attack a server (loopback only) while legitimate
/// clusters hold their votes, and report per phase.
#[derive(Parser)]
#[command(name = "qnetd-flood", version)]
struct FloodArgs {
    /// The server to attack; must be a loopback address.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5403")]
    server: SocketAddr,
    /// The server's process id, for RSS figures and the liveness check.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Legitimate 2-node clusters that must keep their votes.
    #[arg(long, default_value_t = 20)]
    legit_clusters: usize,
    /// Attack sockets (idle, slow, oversize; a twentieth for the others).
    #[arg(long, default_value_t = 2000)]
    sockets: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    phase_secs: u64,
    /// Seconds of quiet after each phase (RSS "after", admission check);
    /// qnetd returns freed memory to the system every 5 s.
    #[arg(long, default_value_t = 6)]
    cooldown_secs: u64,
    /// Heartbeat interval of the legitimate clients, in ms.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u32,
    /// Phases to run, comma-separated, in order.
    #[arg(long, value_delimiter = ',', value_parser = Phase::parse,
          default_value = "idle,slow,garbage,churn,no-read,oversize")]
    phases: Vec<Phase>,
    /// Name of the server in the report.
    #[arg(long, default_value = "qnetd")]
    label: String,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let a = FloodArgs::parse();
    if !a.server.ip().is_loopback() {
        eprintln!(
            "qnetd-flood: {} is not a loopback address; the flood suite only attacks servers on this host (127.0.0.0/8 or ::1)",
            a.server
        );
        return ExitCode::from(2);
    }
    if a.heartbeat_ms < 100 || a.phase_secs == 0 || a.sockets == 0 || a.sockets > 50_000 {
        eprintln!("qnetd-flood: need --heartbeat-ms >= 100, --phase-secs >= 1 and 1 <= --sockets <= 50000");
        return ExitCode::from(2);
    }
    let opts = FloodOptions {
        server: a.server,
        server_pid: a.server_pid,
        legit_clusters: a.legit_clusters,
        sockets: a.sockets,
        phase_duration: Duration::from_secs(a.phase_secs),
        cooldown: Duration::from_secs(a.cooldown_secs),
        heartbeat_ms: a.heartbeat_ms,
        phases: a.phases,
        label: a.label,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qnetd-flood: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match runtime.block_on(flood::run(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "qnetd-flood: setting up the legitimate clusters failed: {e} (is a server with TLS off listening on {}?)",
                opts.server
            );
            return ExitCode::from(1);
        }
    };
    print!("{}", flood::markdown(&report));
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("qnetd-flood: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

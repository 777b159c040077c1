//! `qnetd status`: asks the running server over its admin socket for the
//! status model (the `json` request) and prints it as tables or JSON.
//! Exit codes: 0 ok, 1 bad usage or reply, 3 the server is not running
//! (as `corosync-qnetd-tool` and pcs expect).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use qnetd_core::config::Settings;
use qnetd_core::status::{ClusterStatus, ServerStatus};

#[derive(Args)]
pub struct StatusArgs {
    /// Admin socket of the server [default: local_socket_file of --config, else
    /// /var/run/corosync-qnetd/corosync-qnetd.sock].
    #[arg(long, short = 'p', value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Configuration file to take the socket path from.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only this cluster, with a table of its nodes.
    #[arg(long, short = 'c', value_name = "NAME")]
    cluster: Option<String>,
    /// Every cluster with a table of its nodes.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// The status model as JSON (field names: docs/status.md).
    #[arg(long)]
    json: bool,
}

/// Why the status could not be shown.
#[derive(Debug)]
enum StatusError {
    /// The `--config` file cannot be read.
    ReadConfig {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The `--config` file is invalid.
    Config(qnetd_core::config::SettingError),
    /// Nothing answers on the admin socket.
    Connect {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The request could not be sent or the reply read.
    Exchange {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The server answered with an error.
    Refused(String),
    /// The reply is not what a qnetd sends.
    Unexpected(String),
}

impl StatusError {
    /// 3 when the server is not running (as corosync-qnetd-tool), else 1.
    fn exit_code(&self) -> u8 {
        match self {
            StatusError::Connect { .. } | StatusError::Exchange { .. } => 3,
            _ => 1,
        }
    }
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusError::ReadConfig { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            StatusError::Config(e) => write!(f, "{e}"),
            StatusError::Connect { path, error } => write!(
                f,
                "qnetd is not running, or not with this admin socket: cannot connect to {}: {error}",
                path.display()
            ),
            StatusError::Exchange { path, error } => {
                write!(f, "cannot talk to {}: {error}", path.display())
            }
            StatusError::Refused(msg) => write!(f, "the server answered: {msg}"),
            StatusError::Unexpected(what) => write!(f, "unexpected reply from the server: {what}"),
        }
    }
}

fn socket_path(args: &StatusArgs) -> Result<PathBuf, StatusError> {
    if let Some(p) = &args.socket {
        return Ok(p.clone());
    }
    let mut s = Settings::default();
    if let Some(cfg) = &args.config {
        let text = std::fs::read_to_string(cfg).map_err(|error| StatusError::ReadConfig {
            path: cfg.clone(),
            error,
        })?;
        s.apply_toml(&text, cfg).map_err(StatusError::Config)?;
    }
    Ok(s.local_socket_file)
}

/// Sends one request line; returns the body of an `OK` reply.
fn request(path: &PathBuf, line: &str) -> Result<String, StatusError> {
    let exchange = |error| StatusError::Exchange {
        path: path.clone(),
        error,
    };
    let mut sock = UnixStream::connect(path).map_err(|error| StatusError::Connect {
        path: path.clone(),
        error,
    })?;
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    sock.write_all(format!("{line}\n").as_bytes())
        .map_err(exchange)?;
    let mut reply = String::new();
    sock.read_to_string(&mut reply).map_err(exchange)?;
    match reply.split_once('\n') {
        Some(("OK", body)) => Ok(body.to_string()),
        Some(("Error", msg)) => Err(StatusError::Refused(msg.trim().to_string())),
        _ => Err(StatusError::Unexpected("no OK or Error line".into())),
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn vote_holder(c: &ClusterStatus) -> String {
    let holders: Vec<String> = c
        .partitions
        .iter()
        .filter(|p| p.holds_vote)
        .map(|p| {
            let nodes: Vec<String> = p.nodes.iter().map(|n| n.to_string()).collect();
            format!("ring {} (nodes {})", p.ring_id, nodes.join(","))
        })
        .collect();
    if holders.is_empty() {
        // Nobody connected holds it: say who held it last, if known (e.g.
        // during the restart hold).
        match &c.remembered_holder {
            Some(h) => {
                let nodes: Vec<String> = h.members.iter().map(|n| n.to_string()).collect();
                format!("- (last: ring {}, nodes {})", h.ring_id, nodes.join(","))
            }
            None => "-".into(),
        }
    } else {
        holders.join("; ")
    }
}

fn print_nodes(c: &ClusterStatus) {
    let mut rows = vec![vec![
        "NODE".into(),
        "ADDRESS".into(),
        "RING".into(),
        "MEMBERS".into(),
        "HEURISTICS".into(),
        "TLS".into(),
        "VOTE".into(),
        "SINCE".into(),
        "SEEN".into(),
        "HB".into(),
    ]];
    for n in &c.nodes {
        let members: Vec<String> = n.membership.iter().map(|m| m.to_string()).collect();
        let tls = match (n.tls_active, n.client_certificate_verified) {
            (true, true) => "yes (cert)",
            (true, false) => "yes",
            _ => "no",
        };
        rows.push(vec![
            n.node_id.to_string(),
            n.address.clone(),
            n.ring_id.clone(),
            members.join(","),
            n.heuristics.clone(),
            tls.into(),
            n.last_ack_nack
                .clone()
                .or(n.last_vote.clone())
                .unwrap_or("-".into()),
            n.last_vote_age_seconds
                .map(|s| format!("{} ago", duration(s)))
                .unwrap_or("-".into()),
            format!("{} ago", duration(n.last_seen_seconds)),
            format!("{}ms", n.heartbeat_interval_ms),
        ]);
    }
    print_table(&rows);
}

/// The high-availability lines: role, leader, lease.
fn print_ha(ha: &qnetd_core::status::HaStatus) {
    let role = match ha.role.as_str() {
        "leader" if ha.serving => format!(
            "LEADER (term {}), serving; lease {:.1} s left unless renewed",
            ha.term,
            ha.lease_remaining_ms as f64 / 1000.0
        ),
        "leader" => format!("leader (term {}), not serving yet", ha.term),
        "taking_over" => format!(
            "taking over (term {}): serves in {:.1} s, once the previous leader's lease must have expired",
            ha.term,
            ha.takeover_remaining_ms as f64 / 1000.0
        ),
        "standby" if ha.leader.is_empty() => "standby (no leader right now)".to_string(),
        "standby" => format!("standby; leader: {}", ha.leader),
        "no_quorum" => format!(
            "NO QUORUM: etcd has not answered for {} s; no instance serves (clusters keep their own quorum)",
            ha.no_quorum_seconds
        ),
        other => other.to_string(),
    };
    println!("HA group {} as {}: {role}", ha.group, ha.name);
    if !ha.floating_addresses.is_empty() {
        println!(
            "  floating addresses held: {}",
            ha.floating_addresses.join(", ")
        );
    }
    println!(
        "  etcd {}: {} failed requests; became leader {} times",
        ha.endpoints.join(","),
        ha.etcd_errors,
        ha.leader_changes
    );
}

fn print_human(st: &ServerStatus, args: &StatusArgs) {
    let tls = match st.tls.as_str() {
        "off" => "off".to_string(),
        t if st.client_cert_required => format!("{t}, client certificate required"),
        t => t.to_string(),
    };
    println!(
        "qnetd {} up {}, listening on {}:{}, TLS {}",
        st.version,
        duration(st.uptime_seconds),
        st.listen_address,
        st.port,
        tls
    );
    println!(
        "{} clients connected ({} initialised), {} clusters",
        st.connected_clients,
        st.initialised_clients,
        st.clusters.len()
    );
    let clusters: Vec<&ClusterStatus> = st
        .clusters
        .iter()
        .filter(|c| args.cluster.as_ref().is_none_or(|n| *n == c.name))
        .collect();
    for c in &st.certificates {
        let warn = if c.days_left < 0 {
            "  EXPIRED"
        } else if c.days_left < 30 {
            "  EXPIRES SOON"
        } else {
            ""
        };
        println!(
            "TLS {} certificate {}: {} days left{warn}",
            c.role, c.subject, c.days_left
        );
    }
    if let Some(ha) = &st.ha {
        print_ha(ha);
    }
    if !st.state_file.is_empty() {
        let hold = if st.restart_hold_remaining_ms > 0 {
            format!(
                "; restart hold: {} s left",
                st.restart_hold_remaining_ms.div_ceil(1000)
            )
        } else {
            String::new()
        };
        println!(
            "vote holders of {} clusters remembered in {}{hold}",
            st.remembered_clusters, st.state_file
        );
    }
    if !st.state_problem.is_empty() {
        println!("state file problem: {}", st.state_problem);
    }
    if st.refused_max_clients + st.refused_per_address > 0 {
        println!(
            "connections refused: {} by max_clients, {} by max_clients_per_address",
            st.refused_max_clients, st.refused_per_address
        );
    }
    if clusters.is_empty() {
        if let Some(n) = &args.cluster {
            println!("\nno cluster named \"{n}\" is connected");
        }
        print_disconnects(st, args);
        return;
    }
    println!();
    let mut rows = vec![vec![
        "CLUSTER".into(),
        "ALGORITHM".into(),
        "TIE-BREAKER".into(),
        "NODES".into(),
        "PARTITIONS".into(),
        "VOTE HELD BY".into(),
    ]];
    for c in &clusters {
        let alg = if c.kap {
            format!("{} (kap)", c.algorithm)
        } else {
            c.algorithm.clone()
        };
        rows.push(vec![
            c.name.clone(),
            alg,
            c.tie_breaker.clone(),
            c.nodes.len().to_string(),
            c.partitions.len().to_string(),
            vote_holder(c),
        ]);
    }
    print_table(&rows);
    if args.verbose || args.cluster.is_some() {
        for c in clusters {
            println!("\ncluster {}:", c.name);
            if let Some(d) = &c.last_decision {
                let winner = if d.winner.is_empty() {
                    "none"
                } else {
                    &d.winner
                };
                println!(
                    "  last decision: vote to {winner} ({}), after the {} of node {}",
                    d.reason, d.event, d.trigger_node
                );
            }
            print_nodes(c);
        }
    }
    print_disconnects(st, args);
}

/// The last connections that ended (verbose, or those of the cluster asked
/// for), newest first: the answer to "why did node 2 drop?".
fn print_disconnects(st: &ServerStatus, args: &StatusArgs) {
    if !args.verbose && args.cluster.is_none() {
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rows: Vec<Vec<String>> = st
        .recent_disconnects
        .iter()
        .rev()
        .filter(|d| args.cluster.as_ref().is_none_or(|n| *n == d.cluster))
        .take(20)
        .map(|d| {
            vec![
                format!(
                    "{} ago",
                    duration(now_ms.saturating_sub(d.at_unix_ms) / 1000)
                ),
                if d.cluster.is_empty() {
                    "-".into()
                } else {
                    d.cluster.clone()
                },
                d.node_id.map_or("-".into(), |n| n.to_string()),
                d.address.clone(),
                d.detail.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    println!("\nrecent disconnects:");
    let mut table = vec![vec![
        "WHEN".into(),
        "CLUSTER".into(),
        "NODE".into(),
        "ADDRESS".into(),
        "WHY".into(),
    ]];
    table.extend(rows);
    print_table(&table);
}

pub fn run(args: StatusArgs) -> ExitCode {
    let body = match socket_path(&args).and_then(|path| request(&path, "json")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("qnetd status: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let st: ServerStatus = match serde_json::from_str(&body) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("qnetd status: the server's reply is not the expected status: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        let out = match &args.cluster {
            Some(name) => {
                let c: Vec<&ClusterStatus> =
                    st.clusters.iter().filter(|c| c.name == *name).collect();
                serde_json::to_string_pretty(&c)
            }
            None => serde_json::to_string_pretty(&st),
        };
        match out {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("qnetd status: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print_human(&st, &args);
    }
    ExitCode::SUCCESS
}

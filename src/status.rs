//! The status model: one snapshot of the server, its clusters, their nodes
//! and partitions, built from the cluster table. Every admin output is made
//! from it: the `corosync-qnetd-tool` text replies (byte-compatible with the
//! reference's `status` and `list`), the JSON of `qnetd status --json`, and
//! the human-readable tables of `qnetd status`.
//!
//! The model is the protobuf schema `proto/qnetd/status.proto` (crate
//! `qnetd-proto`); JSON uses the same field names (docs/status.md). Add
//! fields, never rename them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qnetd_algorithms::{AlgorithmKind, Heuristics, TieBreaker, Vote};

use crate::config::{Settings, TlsMode};
use crate::server::ServerCtx;
use crate::session::display_name;
use crate::table::lock;

pub use qnetd_proto::status::{
    CertificateStatus, ClusterStatus, ConfigNode, NodeStatus, PartitionStatus, RememberedHolder,
    ServerStatus,
};

fn heuristics_label(h: Heuristics) -> String {
    match h {
        Heuristics::Undefined => "undefined",
        Heuristics::Pass => "pass",
        Heuristics::Fail => "fail",
    }
    .to_string()
}

fn tie_breaker_label(tb: TieBreaker) -> String {
    match tb {
        TieBreaker::Lowest => "lowest".into(),
        TieBreaker::Highest => "highest".into(),
        TieBreaker::NodeId(n) => format!("node {n}"),
    }
}

fn tls_label(t: TlsMode) -> String {
    t.label().to_string()
}

/// Takes a snapshot of the server. Each cluster is locked briefly, one at a
/// time.
pub fn snapshot(ctx: &ServerCtx) -> ServerStatus {
    let s: &Settings = &ctx.settings;
    let now = ctx.now_ms();
    let mut clusters: Vec<(u64, ClusterStatus)> = Vec::new();
    for (name, shared) in ctx.table.snapshot() {
        let e = lock(&shared);
        if e.cluster.is_empty() {
            continue;
        }
        let c = &e.cluster;
        let mut nodes = Vec::new();
        for (id, info) in c.clients() {
            let meta = e.meta.get(id);
            nodes.push(NodeStatus {
                node_id: *id,
                address: meta.map(|m| m.addr.clone()).unwrap_or_default(),
                ring_id: info.ring.to_string(),
                heartbeat_interval_ms: info.heartbeat_ms,
                config_version: info.config_version,
                config_nodes: info
                    .config_nodes()
                    .iter()
                    .map(|n| ConfigNode {
                        node_id: n.node_id,
                        data_center_id: n.data_center_id,
                    })
                    .collect(),
                membership: info.membership_nodes().iter().map(|n| n.node_id).collect(),
                heuristics: heuristics_label(info.heuristics),
                membership_heuristics: heuristics_label(info.membership_heuristics),
                regular_heuristics: heuristics_label(info.regular_heuristics),
                tls_active: meta.is_some_and(|m| m.tls_active),
                client_certificate_verified: meta.is_some_and(|m| m.cert_verified),
                kap: info.kap,
                last_vote: info.last_vote.map(|v| v.label().to_string()),
                last_ack_nack: info.last_ack_nack.map(|v| v.label().to_string()),
                last_vote_age_seconds: info.last_vote_ms.map(|t| now.saturating_sub(t) / 1000),
                connected_seconds: meta
                    .map(|m| now.saturating_sub(m.joined_ms) / 1000)
                    .unwrap_or(0),
                last_seen_seconds: meta
                    .map(|m| {
                        let seen = m.last_seen_ms.load(std::sync::atomic::Ordering::Relaxed);
                        now.saturating_sub(seen) / 1000
                    })
                    .unwrap_or(0),
            });
        }
        // Partitions: connected clients grouped by the ring they report.
        let mut by_ring: BTreeMap<qnetd_algorithms::RingId, PartitionStatus> = BTreeMap::new();
        for (id, info) in c.clients() {
            let p = by_ring.entry(info.ring).or_insert_with(|| PartitionStatus {
                ring_id: info.ring.to_string(),
                nodes: Vec::new(),
                membership: info.membership_nodes().iter().map(|n| n.node_id).collect(),
                score: 0,
                holds_vote: true,
            });
            p.nodes.push(*id);
            p.score += qnetd_algorithms::heuristics_score(info.heuristics);
            p.holds_vote &= info.last_ack_nack == Some(Vote::Ack);
        }
        let kap = c.algorithm() == AlgorithmKind::Ffsplit && c.clients().values().all(|i| i.kap);
        clusters.push((
            e.created,
            ClusterStatus {
                name: display_name(&name),
                algorithm: c.algorithm().label().to_string(),
                tie_breaker: tie_breaker_label(c.tie_breaker()),
                kap,
                nodes,
                partitions: by_ring.into_values().collect(),
                remembered_holder: ctx.table.memory().holder(&name).map(|h| RememberedHolder {
                    ring_id: h.ring.to_string(),
                    members: h.members,
                    since_unix: h.since_unix_ms / 1000,
                }),
            },
        ));
    }
    clusters.sort_by_key(|(created, _)| *created);
    ServerStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: now / 1000,
        listen_address: s.listen_address.clone().unwrap_or_else(|| "*".into()),
        port: u32::from(ctx.port),
        tls: tls_label(s.tls),
        client_cert_required: s.client_cert_required,
        connected_clients: ctx.connections.load(std::sync::atomic::Ordering::Relaxed) as u64,
        initialised_clients: ctx.table.client_count() as u64,
        max_clients: s.max_clients as u64,
        max_send_size: s.max_client_send_size as u64,
        max_receive_size: s.max_client_receive_size as u64,
        clusters: clusters.into_iter().map(|(_, c)| c).collect(),
        state_file: ctx
            .table
            .memory()
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        remembered_clusters: ctx.table.memory().len() as u64,
        restart_hold_remaining_ms: ctx.table.memory().hold_until_ms().saturating_sub(now),
        certificates: ctx
            .tls
            .as_ref()
            .map(|t| t.certificates())
            .unwrap_or_default(),
    }
}

fn vote_text(label: &str) -> &'static str {
    match label {
        "ack" => Vote::Ack.display_name(),
        "nack" => Vote::Nack.display_name(),
        "ask_later" => Vote::AskLater.display_name(),
        "wait_for_reply" => Vote::WaitForReply.display_name(),
        _ => Vote::NoChange.display_name(),
    }
}

fn heuristics_text(label: &str) -> &'static str {
    match label {
        "pass" => Heuristics::Pass.display_name(),
        "fail" => Heuristics::Fail.display_name(),
        _ => Heuristics::Undefined.display_name(),
    }
}

/// The body of `corosync-qnetd-tool -s [-v]`, as the reference writes it.
pub fn tool_status(st: &ServerStatus, verbose: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "QNetd address:\t\t\t{}:{}", st.listen_address, st.port);
    let tls = match st.tls.as_str() {
        "off" => "Unsupported",
        "required" => "Required",
        _ => "Supported",
    };
    let cert = if st.tls != "off" && st.client_cert_required {
        " (client certificate required)"
    } else {
        ""
    };
    let _ = writeln!(o, "TLS:\t\t\t\t{tls}{cert}");
    let _ = writeln!(o, "Connected clients:\t\t{}", st.connected_clients);
    let _ = writeln!(o, "Connected clusters:\t\t{}", st.clusters.len());
    if verbose {
        if st.max_clients != 0 {
            let _ = writeln!(o, "Maximum allowed clients:\t{}", st.max_clients);
        }
        let _ = writeln!(
            o,
            "Maximum send/receive size:\t{}/{} bytes",
            st.max_send_size, st.max_receive_size
        );
    }
    o
}

fn tie_breaker_text(label: &str) -> String {
    match label {
        "lowest" => TieBreaker::Lowest.to_string(),
        "highest" => TieBreaker::Highest.to_string(),
        other => {
            let id = other
                .strip_prefix("node ")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            TieBreaker::NodeId(id).to_string()
        }
    }
}

fn algorithm_text(label: &str) -> &'static str {
    AlgorithmKind::ALL
        .iter()
        .find(|a| a.label() == label)
        .map(|a| a.display_name())
        .unwrap_or("Unknown")
}

/// The body of `corosync-qnetd-tool -l [-v] [-c NAME]`, as the reference
/// writes it. An empty filter lists every cluster.
pub fn tool_list(st: &ServerStatus, verbose: bool, cluster: Option<&str>) -> String {
    let mut o = String::new();
    for c in &st.clusters {
        if let Some(f) = cluster {
            if !f.is_empty() && f != c.name {
                continue;
            }
        }
        let _ = writeln!(o, "Cluster \"{}\":", c.name);
        if !c.nodes.is_empty() {
            let kap = if c.kap { " (KAP Tie-breaker)" } else { "" };
            let _ = writeln!(o, "    Algorithm:\t\t{}{kap}", algorithm_text(&c.algorithm));
            let _ = writeln!(o, "    Tie-breaker:\t{}", tie_breaker_text(&c.tie_breaker));
        }
        for n in &c.nodes {
            let _ = writeln!(o, "    Node ID {}:", n.node_id);
            let _ = writeln!(o, "        Client address:\t\t{}", n.address);
            if verbose {
                let _ = writeln!(o, "        HB interval:\t\t{}ms", n.heartbeat_interval_ms);
            }
            if let Some(v) = n.config_version {
                let _ = writeln!(o, "        Configuration version:\t{v}");
            }
            if !n.config_nodes.is_empty() {
                let list: Vec<String> = n
                    .config_nodes
                    .iter()
                    .map(|c| {
                        if c.data_center_id != 0 {
                            format!("{} ({})", c.node_id, c.data_center_id)
                        } else {
                            c.node_id.to_string()
                        }
                    })
                    .collect();
                let _ = writeln!(o, "        Configured node list:\t{}", list.join(", "));
            }
            if verbose {
                let _ = writeln!(o, "        Ring ID:\t\t{}", n.ring_id);
            }
            if !n.membership.is_empty() {
                let list: Vec<String> = n.membership.iter().map(|m| m.to_string()).collect();
                let _ = writeln!(o, "        Membership node list:\t{}", list.join(", "));
            }
            if n.heuristics != "undefined" || verbose {
                let _ = write!(
                    o,
                    "        Heuristics:\t\t{}",
                    heuristics_text(&n.heuristics)
                );
                if verbose {
                    let _ = write!(
                        o,
                        " (membership: {}, regular: {})",
                        heuristics_text(&n.membership_heuristics),
                        heuristics_text(&n.regular_heuristics)
                    );
                }
                o.push('\n');
            }
            if verbose {
                let _ = write!(
                    o,
                    "        TLS active:\t\t{}",
                    if n.tls_active { "Yes" } else { "No" }
                );
                if n.tls_active && n.client_certificate_verified {
                    o.push_str(" (client certificate verified)");
                }
                o.push('\n');
            }
            if let Some(v) = &n.last_vote {
                let _ = write!(o, "        Vote:\t\t\t{}", vote_text(v));
                if let Some(an) = &n.last_ack_nack {
                    let _ = write!(o, " ({})", vote_text(an));
                }
                o.push('\n');
            }
        }
    }
    o
}

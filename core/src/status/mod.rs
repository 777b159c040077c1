//! The status model: one snapshot of the server, its clusters, their nodes
//! and partitions, built from the [`Arbiter`] (and the few facts only the
//! server knows, [`ServerFacts`]). Every admin output is made from it: the
//! `corosync-qnetd-tool` text replies ([`text`], byte-compatible with the
//! reference's `status` and `list`), the JSON of `qnetd status --json`, the
//! human-readable tables of `qnetd status` and the state gauges of /metrics.
//!
//! The model is the protobuf schema `proto/qnetd/status.proto` (crate
//! `qnetd-proto`); JSON uses the same field names (docs/status.md). Add
//! fields, never rename them.

use std::collections::BTreeMap;
use std::time::Instant;

use qnetd_algorithms::{AlgorithmKind, Heuristics, TieBreaker, Vote};

use crate::arbiter::Arbiter;
use crate::config::{Settings, TlsMode};
use crate::session::display_name;
use crate::table::lock;

mod text;
pub use text::{tool_list, tool_status};

pub use qnetd_proto::status::{
    CertificateStatus, ClusterStatus, ConfigNode, Disconnect, HaStatus, LastDecision, NodeStatus,
    PartitionStatus, RememberedHolder, ServerStatus,
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

/// What only the server knows: the port it listens on and the TLS
/// material it serves with.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    /// The port the server listens on (the configured one, or the one the
    /// system chose for port 0).
    pub port: u16,
    /// The CA and server certificates, with their expiry.
    pub certificates: Vec<CertificateStatus>,
    /// Connections refused by `max_clients` and by
    /// `max_clients_per_address` since the start.
    pub refused_max_clients: u64,
    pub refused_per_address: u64,
    /// Why the decision snapshot could not be used at start, if it could not.
    pub state_problem: Option<String>,
    /// This instance's place in a high-availability group, if in one.
    pub ha: Option<HaStatus>,
}

/// Takes a snapshot of the server at `now`. Each cluster is locked briefly,
/// one at a time.
pub fn snapshot(arbiter: &Arbiter, facts: &ServerFacts, now: Instant) -> ServerStatus {
    let s: &Settings = &arbiter.settings;
    let now = arbiter.ms_since_origin(now);
    let mut clusters: Vec<(u64, ClusterStatus)> = Vec::new();
    for (name, shared) in arbiter.table.snapshot() {
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
                remembered_holder: arbiter.memory().holder(&name).map(|h| RememberedHolder {
                    ring_id: h.ring.to_string(),
                    members: h.members,
                    since_unix: h.since_unix_ms / 1000,
                }),
                last_decision: e.last_decision.as_ref().map(|d| LastDecision {
                    reason: d.reason.to_string(),
                    winner: d.winner.map(|w| w.to_string()).unwrap_or_default(),
                    trigger_node: d.trigger,
                    event: d.event.to_string(),
                    at_unix_ms: d.at_unix_ms,
                }),
            },
        ));
    }
    clusters.sort_by_key(|(created, _)| *created);
    ServerStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: now / 1000,
        listen_address: s.listen_address.clone().unwrap_or_else(|| "*".into()),
        port: u32::from(facts.port),
        tls: tls_label(s.tls),
        client_cert_required: s.client_cert_required,
        connected_clients: arbiter.connections() as u64,
        initialised_clients: arbiter.table.client_count() as u64,
        max_clients: s.max_clients as u64,
        max_send_size: s.max_client_send_size as u64,
        max_receive_size: s.max_client_receive_size as u64,
        clusters: clusters.into_iter().map(|(_, c)| c).collect(),
        state_file: arbiter.memory().location().unwrap_or_default().to_string(),
        remembered_clusters: arbiter.memory().len() as u64,
        restart_hold_remaining_ms: arbiter.memory().hold_until_ms().saturating_sub(now),
        certificates: facts.certificates.clone(),
        recent_disconnects: arbiter
            .recent_disconnects()
            .into_iter()
            .map(|d| Disconnect {
                address: d.address,
                cluster: d.cluster,
                node_id: d.node,
                reason: d.reason.label().to_string(),
                detail: d.reason.to_string(),
                at_unix_ms: d.at_unix_ms,
            })
            .collect(),
        disconnects_by_reason: arbiter
            .disconnects_by_reason()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        refused_max_clients: facts.refused_max_clients,
        refused_per_address: facts.refused_per_address,
        state_problem: facts.state_problem.clone().unwrap_or_default(),
        ha: facts.ha.clone(),
    }
}

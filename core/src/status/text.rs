//! The text replies of the admin socket that `corosync-qnetd-tool` and pcs
//! read: `status` and `list`, byte for byte as the reference writes them.

use std::fmt::Write as _;

use qnetd_algorithms::{AlgorithmKind, Heuristics, TieBreaker, Vote};

use super::ServerStatus;

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

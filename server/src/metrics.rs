//! Prometheus metrics: the exporter and `/metrics`.
//!
//! Event counters and the decision-latency histogram are recorded through
//! the `metrics` facade (names in `qnetd_core::telemetry`). State gauges (clients, clusters,
//! nodes, partitions, who holds the vote) are rendered at scrape time from
//! the status snapshot, so a cluster that left leaves no stale series.
//! `/metrics` is served by a small HTTP/1.0 responder on
//! `--metrics-listen` (default 127.0.0.1:9403).
//!
//! Label cardinality stays bounded: cluster names, vote values, error codes
//! and fixed reason sets; no node ids or ring ids on counters.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use qnetd_core::status::ServerStatus;
use qnetd_core::telemetry::{self, DECISION_LATENCY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::ctx::ServerCtx;
use crate::error::StartError;
use crate::shutdown::Shutdown;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once). Returns false if another
/// recorder was installed first (then only the state gauges are exported).
pub fn install() -> bool {
    if HANDLE.get().is_some() {
        return true;
    }
    let buckets = telemetry::DECISION_LATENCY_BUCKETS;
    let recorder = match PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DECISION_LATENCY.to_string()), &buckets)
    {
        Ok(b) => b.build_recorder(),
        Err(e) => {
            warn!("metrics: cannot set histogram buckets: {e}");
            return false;
        }
    };
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return false;
    }
    let _ = HANDLE.set(handle);
    telemetry::describe();
    true
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The state gauges, in Prometheus text format.
pub fn render_state(st: &ServerStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# HELP qnetd_build_info qnetd version");
    let _ = writeln!(o, "# TYPE qnetd_build_info gauge");
    let _ = writeln!(
        o,
        "qnetd_build_info{{version=\"{}\"}} 1",
        escape(&st.version)
    );
    let _ = writeln!(
        o,
        "# HELP qnetd_uptime_seconds Seconds since the server started"
    );
    let _ = writeln!(o, "# TYPE qnetd_uptime_seconds gauge");
    let _ = writeln!(o, "qnetd_uptime_seconds {}", st.uptime_seconds);
    let (mut tls, mut plain) = (0, 0);
    for n in st.clusters.iter().flat_map(|c| &c.nodes) {
        if n.tls_active {
            tls += 1;
        } else {
            plain += 1;
        }
    }
    let _ = writeln!(o, "# HELP qnetd_clients Initialised clients, by TLS state");
    let _ = writeln!(o, "# TYPE qnetd_clients gauge");
    let _ = writeln!(o, "qnetd_clients{{tls=\"yes\"}} {tls}");
    let _ = writeln!(o, "qnetd_clients{{tls=\"no\"}} {plain}");
    let _ = writeln!(
        o,
        "# HELP qnetd_connections Open client connections, initialised or not"
    );
    let _ = writeln!(o, "# TYPE qnetd_connections gauge");
    let _ = writeln!(o, "qnetd_connections {}", st.connected_clients);
    let _ = writeln!(
        o,
        "# HELP qnetd_clusters Clusters with at least one connected node"
    );
    let _ = writeln!(o, "# TYPE qnetd_clusters gauge");
    let _ = writeln!(o, "qnetd_clusters {}", st.clusters.len());
    let _ = writeln!(
        o,
        "# HELP qnetd_cluster_nodes_connected Connected nodes of a cluster"
    );
    let _ = writeln!(o, "# TYPE qnetd_cluster_nodes_connected gauge");
    for c in &st.clusters {
        let _ = writeln!(
            o,
            "qnetd_cluster_nodes_connected{{cluster=\"{}\",algorithm=\"{}\"}} {}",
            escape(&c.name),
            c.algorithm,
            c.nodes.len()
        );
    }
    let _ = writeln!(
        o,
        "# HELP qnetd_cluster_partitions Distinct ring ids reported by a cluster's connected nodes"
    );
    let _ = writeln!(o, "# TYPE qnetd_cluster_partitions gauge");
    for c in &st.clusters {
        let _ = writeln!(
            o,
            "qnetd_cluster_partitions{{cluster=\"{}\"}} {}",
            escape(&c.name),
            c.partitions.len()
        );
    }
    let _ = writeln!(o, "# HELP qnetd_cluster_vote_held Whether a partition of the cluster holds the vote (1) or none does (0)");
    let _ = writeln!(o, "# TYPE qnetd_cluster_vote_held gauge");
    for c in &st.clusters {
        let held = c.partitions.iter().any(|p| p.holds_vote);
        let _ = writeln!(
            o,
            "qnetd_cluster_vote_held{{cluster=\"{}\"}} {}",
            escape(&c.name),
            u8::from(held)
        );
    }
    let _ = writeln!(
        o,
        "# HELP qnetd_cluster_vote_holder_nodes Nodes of the partition holding the vote (0: none)"
    );
    let _ = writeln!(o, "# TYPE qnetd_cluster_vote_holder_nodes gauge");
    for c in &st.clusters {
        let n: usize = c
            .partitions
            .iter()
            .filter(|p| p.holds_vote)
            .map(|p| p.nodes.len())
            .sum();
        let _ = writeln!(
            o,
            "qnetd_cluster_vote_holder_nodes{{cluster=\"{}\"}} {n}",
            escape(&c.name)
        );
    }
    let _ = writeln!(
        o,
        "# HELP qnetd_cluster_vote_holder_info The ring id holding the vote (value 1)"
    );
    let _ = writeln!(o, "# TYPE qnetd_cluster_vote_holder_info gauge");
    for c in &st.clusters {
        for p in c.partitions.iter().filter(|p| p.holds_vote) {
            let _ = writeln!(
                o,
                "qnetd_cluster_vote_holder_info{{cluster=\"{}\",ring=\"{}\"}} 1",
                escape(&c.name),
                p.ring_id
            );
        }
    }
    if let Some(ha) = &st.ha {
        render_ha(&mut o, ha);
    }
    if !st.certificates.is_empty() {
        let _ = writeln!(o, "# HELP qnetd_tls_certificate_expiry_timestamp_seconds When a certificate of the TLS directory expires (Unix time)");
        let _ = writeln!(
            o,
            "# TYPE qnetd_tls_certificate_expiry_timestamp_seconds gauge"
        );
        for c in &st.certificates {
            let _ = writeln!(
                o,
                "qnetd_tls_certificate_expiry_timestamp_seconds{{role=\"{}\",subject=\"{}\"}} {}",
                c.role,
                escape(&c.subject),
                c.not_after_unix
            );
        }
    }
    o
}

/// The series of a high-availability group member (docs/ha.md).
fn render_ha(o: &mut String, ha: &qnetd_core::status::HaStatus) {
    let group = escape(&ha.group);
    let _ = writeln!(
        o,
        "# HELP qnetd_ha_role This instance's role in its HA group (1 for the current role)"
    );
    let _ = writeln!(o, "# TYPE qnetd_ha_role gauge");
    for role in ["starting", "standby", "taking_over", "leader", "no_quorum"] {
        let _ = writeln!(
            o,
            "qnetd_ha_role{{group=\"{group}\",role=\"{role}\"}} {}",
            u8::from(ha.role == role)
        );
    }
    let _ = writeln!(
        o,
        "# HELP qnetd_ha_serving Whether this instance serves clients now (listens and votes)"
    );
    let _ = writeln!(o, "# TYPE qnetd_ha_serving gauge");
    let _ = writeln!(
        o,
        "qnetd_ha_serving{{group=\"{group}\"}} {}",
        u8::from(ha.serving)
    );
    let _ = writeln!(
        o,
        "# HELP qnetd_ha_leader_changes_total Times this instance became the serving leader"
    );
    let _ = writeln!(o, "# TYPE qnetd_ha_leader_changes_total counter");
    let _ = writeln!(
        o,
        "qnetd_ha_leader_changes_total{{group=\"{group}\"}} {}",
        ha.leader_changes
    );
    let _ = writeln!(
        o,
        "# HELP qnetd_ha_etcd_errors_total etcd requests that failed"
    );
    let _ = writeln!(o, "# TYPE qnetd_ha_etcd_errors_total counter");
    let _ = writeln!(
        o,
        "qnetd_ha_etcd_errors_total{{group=\"{group}\"}} {}",
        ha.etcd_errors
    );
    let _ = writeln!(
        o,
        "# HELP qnetd_ha_lease_remaining_seconds Leader: time until it stops serving unless its lease is renewed"
    );
    let _ = writeln!(o, "# TYPE qnetd_ha_lease_remaining_seconds gauge");
    let _ = writeln!(
        o,
        "qnetd_ha_lease_remaining_seconds{{group=\"{group}\"}} {:.3}",
        ha.lease_remaining_ms as f64 / 1000.0
    );
}

/// The whole /metrics body.
pub fn render(ctx: &ServerCtx) -> String {
    let mut body = render_state(&ctx.status());
    if let Some(h) = HANDLE.get() {
        body.push_str(&h.render());
    }
    body
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Metrics { addr, error })
}

/// Serves GET /metrics until `shutdown` fires.
pub async fn run(listener: TcpListener, ctx: Arc<ServerCtx>, shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.triggered() => return,
            a = listener.accept() => a,
        };
        let (mut stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                warn!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&req);
            let first = line.lines().next().unwrap_or("");
            let mut parts = first.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            debug!(%peer, %first, "metrics request");
            let response = if method == "GET"
                && (path == "/metrics" || path.starts_with("/metrics?"))
            {
                let body = render(&ctx);
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = "not found: metrics are at /metrics\n";
                format!(
                    "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

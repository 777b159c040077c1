//! Names of the Prometheus series qnetd records through the `metrics`
//! facade, and their descriptions. Recording is a no-op until the server
//! installs an exporter (qnetd-server's `metrics` module), so the core and
//! its tests need none.
//!
//! Label cardinality stays bounded: cluster names, vote values, error
//! names and fixed reason sets; no node ids or ring ids on counters.

pub const VOTES_SENT: &str = "qnetd_votes_sent_total";
pub const ERRORS_SENT: &str = "qnetd_errors_sent_total";
pub const DISCONNECTS: &str = "qnetd_client_disconnects_total";
pub const TLS_HANDSHAKES: &str = "qnetd_tls_handshakes_total";
pub const HEARTBEATS: &str = "qnetd_heartbeats_total";
pub const DECISIONS: &str = "qnetd_decisions_total";
pub const DECISION_LATENCY: &str = "qnetd_decision_latency_seconds";
pub const CONNECTIONS: &str = "qnetd_connections_accepted_total";
pub const CONNECTIONS_REFUSED: &str = "qnetd_connections_refused_total";
pub const SNAPSHOT_SAVES: &str = "qnetd_state_snapshot_saves_total";

/// Buckets of the decision-latency histogram (seconds).
pub const DECISION_LATENCY_BUCKETS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

/// Registers the descriptions of every series with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        VOTES_SENT,
        "Votes sent to clients (replies and VOTE_INFO), by cluster and vote"
    );
    metrics::describe_counter!(
        ERRORS_SENT,
        "Protocol errors sent to clients, by error name"
    );
    metrics::describe_counter!(DISCONNECTS, "Client connections closed, by reason");
    metrics::describe_counter!(
        TLS_HANDSHAKES,
        "TLS handshakes after STARTTLS, by result and reason"
    );
    metrics::describe_counter!(HEARTBEATS, "Echo requests (heartbeats) answered");
    metrics::describe_counter!(
        DECISIONS,
        "Decisions that changed a vote, by algorithm and reason"
    );
    metrics::describe_histogram!(
        DECISION_LATENCY,
        metrics::Unit::Seconds,
        "Time from a client event to its votes being queued"
    );
    metrics::describe_counter!(CONNECTIONS, "TCP connections accepted");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "TCP connections refused by max_clients or max_clients_per_address"
    );
    metrics::describe_counter!(
        SNAPSHOT_SAVES,
        "Writes of the decision snapshot (state_dir), by result"
    );
}

//! The flood suite's per-phase table (markdown).

use super::types::FloodReport;

fn mib(k: Option<u64>) -> String {
    k.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// The report as a Markdown table.
pub fn markdown(r: &FloodReport) -> String {
    let mut s = format!(
        "**{}** ({}; {} legitimate clusters, {} attack sockets, {} s per phase): {}\n\n",
        r.label,
        r.server,
        r.legit_clusters,
        r.sockets,
        r.phase_seconds,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    s.push_str("| phase | attack conns | closed by server | legit echo p50 / p99 / max (ms) | echo timeouts | dropped | vote changes | RSS before / peak / after (MiB) | server CPU (s) | admits new | result |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in &r.phases {
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} / {:.2} / {:.2} | {} | {} | {} | {} / {} / {} | {} | {} | {} |\n",
            p.phase.label(),
            p.attack_connections,
            p.attack_closed_by_server,
            p.legit_rtt_p50_ms,
            p.legit_rtt_p99_ms,
            p.legit_rtt_max_ms,
            p.legit_echo_timeouts,
            p.legit_dropped,
            p.legit_vote_changes,
            mib(p.rss_before_kib),
            mib(p.rss_peak_kib),
            mib(p.rss_after_kib),
            p.server_cpu_seconds.map_or("-".into(), |c| format!("{c:.2}")),
            if p.admits_new_clients { "yes" } else { "no" },
            if p.passed {
                "pass".to_string()
            } else {
                format!("FAIL: {}", p.failures.join("; "))
            }
        ));
    }
    s
}

//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`,
//! off by default): the randomized safety schedules of the tests, with
//! every random choice taken from the fuzz input instead of a seeded PRNG,
//! and the server model ([`Server`]) for raw event sequences. A violation
//! of the safety invariant ("never two partitions with ACK"), of the
//! liveness checks or of the server model's rules (no VOTE_INFO before a
//! client's lists, no error for a well-formed event, ...) panics, which is
//! what the fuzzer reports. Nothing here changes the algorithms.
//!
//! `tracing` records the full message trace into the panic message (slower;
//! use it to replay a finding).

pub use crate::sim::server::Server;
use crate::sim::Rng;
use crate::AlgorithmKind;

/// Steps of an lms/2nodelms schedule for a script of `len` bytes: the
/// tests' 60, more for long inputs (a step draws two to four bytes).
fn steps(len: usize) -> usize {
    (len / 3).clamp(60, 1000)
}

/// One ffsplit schedule (2-8 nodes) whose choices are the bytes of `script`.
pub fn ffsplit_schedule(script: &[u8], tracing: bool) {
    crate::sim::ffsplit::run_schedule(Rng::scripted(script), "fuzz input", tracing);
}

/// One lms schedule (2-8 nodes; a disconnected client drops its vote).
pub fn lms_schedule(script: &[u8], tracing: bool) {
    lms_like(AlgorithmKind::Lms, script, tracing, false);
}

/// One 2nodelms schedule (2 nodes; a disconnected client keeps its vote).
pub fn two_node_lms_schedule(script: &[u8], tracing: bool) {
    lms_like(AlgorithmKind::TwoNodeLms, script, tracing, false);
}

/// One ffsplit schedule with server restarts (the server model's vote
/// memory seeds the cluster with [`crate::Cluster::restore`]).
pub fn ffsplit_schedule_with_restarts(script: &[u8], tracing: bool) {
    crate::sim::ffsplit::run_schedule_with_restarts(Rng::scripted(script), "fuzz input", tracing);
}

/// One lms schedule with server restarts (clients keep their vote over a
/// restart, as with `wait_for_all`).
pub fn lms_schedule_with_restarts(script: &[u8], tracing: bool) {
    lms_like(AlgorithmKind::Lms, script, tracing, true);
}

/// One 2nodelms schedule with server restarts.
pub fn two_node_lms_schedule_with_restarts(script: &[u8], tracing: bool) {
    lms_like(AlgorithmKind::TwoNodeLms, script, tracing, true);
}

fn lms_like(kind: AlgorithmKind, script: &[u8], tracing: bool, restarts: bool) {
    let two = kind == AlgorithmKind::TwoNodeLms;
    let plan = crate::sim::lms::Plan {
        steps: steps(script.len()),
        node_counts: if two { &[2] } else { &[2, 3, 4, 5, 6, 7, 8] },
        keeps_vote: two,
        restarts,
    };
    crate::sim::lms::run_with(kind, Rng::scripted(script), "fuzz input", tracing, &plan);
}

//! The fuzz harnesses of qnetd, as a plain library: each `fuzz_targets/*.rs`
//! is a one-line libFuzzer entry point calling one of the `run` functions
//! here, and `tests/corpus.rs` replays the committed corpus through the same
//! functions with the ordinary test harness (no libFuzzer, stable Rust).
//!
//! - [`codec`]: framing and decoding of arbitrary bytes, encode/decode round
//!   trips;
//! - [`session`]: several protocol sessions sharing one cluster table, fed an
//!   arbitrary sequence of messages, closes, timers and TLS hand-overs;
//! - [`algorithms`]: the randomized safety simulators of the decision
//!   algorithms driven by the fuzz input, and raw event sequences on a
//!   `Cluster` of every algorithm;
//! - [`seeds`]: the seed corpus (written by `tests/corpus.rs`).

pub mod algorithms;
pub mod codec;
pub mod input;
pub mod seeds;
pub mod session;

//! qnetd: a wire-compatible replacement for corosync-qnetd, the quorum
//! arbitrator of corosync/Pacemaker clusters.
//!
//! Layers, each readable and testable alone:
//! - [`wire`]: the pure protocol codec (bytes in, typed messages out);
//! - [`framing`]: splits a byte stream into whole messages (pure);
//! - `qnetd_algorithms` (crate `algorithms/`): pure decision algorithms;
//! - [`table`]: clusters by name, their algorithm state and client handles;
//! - [`state`]: the vote holders remembered across restarts (snapshot);
//! - [`session`]: one client's protocol state machine, no I/O;
//! - [`server`]: the tokio shell that does all the I/O;
//! - [`tls`]: the server's TLS (OpenSSL) and the STARTTLS hand-over;
//! - [`client`]: a protocol client for tests and the load generator;
//! - [`config`]: settings from the command line and the TOML file;
//! - [`status`]: the status model and its text forms;
//! - [`ipc`]: the local admin socket (corosync-qnetd-tool compatible);
//! - [`metrics`]: Prometheus counters, gauges and the /metrics endpoint;
//! - [`flood`]: the hardening suite's attack tool (`qnetd flood`);
//! - [`bench`]: the load generator of `qnetd bench`.

pub use qnetd_core::{config, framing, wire};
pub mod ipc;
pub mod metrics;
pub mod server;
pub mod session;
pub mod state;
pub mod status;
pub mod table;
pub mod tls;

//! qnetd-tools: tools around the arbitrator that are not part of the
//! product (never installed on an arbitrator host by the package):
//!
//! - [`client`]: a corosync-qdevice-like protocol client (plain and TLS
//!   with rustls), used by the integration tests and the tools below;
//! - [`bench`]: the load generator behind the `qnetd-bench` binary;
//! - [`flood`]: the hardening suite's attack tool behind `qnetd-flood`.

pub mod bench;
pub mod client;
pub mod flood;

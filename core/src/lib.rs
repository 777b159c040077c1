//! qnetd-core: everything of the arbitrator that needs no async runtime.
//! Drivers (qnetd-server's tokio tasks, tests, the fuzzer) feed it bytes and
//! time; it never reads a clock, a socket or a file. See
//! docs/architecture.md for the crates and the path of one message.
//!
//! - [`wire`]: the protocol codec (bytes in, typed messages out);
//! - [`framing`]: splits a byte stream into whole messages;
//! - [`session`]: one connection's protocol state machine and deadlines;
//! - [`mailbox`]: typed deliveries between the sessions of one cluster;
//! - [`table`]: clusters by name, their algorithm state and mailboxes;
//! - [`memory`]: the vote holders remembered across restarts;
//! - [`arbiter`]: the state shared by every session and every reader;
//! - [`status`]: the status model and the admin socket's text replies;
//! - [`close`]: why a connection ends (typed);
//! - [`telemetry`]: names of the Prometheus series;
//! - [`config`]: settings from the command line and the TOML file;
//! - [`ha_settings`]: the `[ha]` settings of an active/standby group;
//! - [`sys`]: raising the open-files limit.
//!
//! The decision algorithms themselves are the crate `qnetd-algorithms`.

pub mod arbiter;
pub mod close;
pub mod config;
pub mod framing;
pub mod ha_settings;
pub mod mailbox;
pub mod memory;
pub mod session;
pub mod status;
pub mod sys;
pub mod table;
pub mod telemetry;
pub mod wire;

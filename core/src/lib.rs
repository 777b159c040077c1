//! qnetd-core: everything of the arbitrator that needs no async runtime.
//!
//! - [`wire`]: the protocol codec (bytes in, typed messages out);
//! - [`framing`]: splits a byte stream into whole messages;
//! - [`config`]: settings from the command line and the TOML file;
//! - [`sys`]: raising the open-files limit.

pub mod config;
pub mod framing;
pub mod sys;
pub mod wire;

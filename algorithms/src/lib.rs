//! Pure decision algorithms of the qnetd quorum arbitrator.
//!
//! This crate does no I/O and reads no clock: the server shell feeds it events
//! (a node list arrived, a vote was acknowledged, a client left, a timer fired
//! at a given time) and carries out the actions it returns (send a VOTE_INFO to
//! a node, arm or cancel a node's timer). The same code therefore runs under
//! the real server, under unit tests and under property tests with a virtual
//! clock.
//!
//! [`Cluster`] holds what the server knows about one cluster: its connected
//! clients with the lists each one reported, and the algorithm chosen by the
//! cluster's nodes behind the [`Algorithm`] trait.

mod algorithm;
mod cluster;
mod engine;
pub mod ffsplit;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod lms;
mod nodeset;
#[cfg(any(test, feature = "fuzzing"))]
mod sim;
pub mod test_algo;
#[cfg(test)]
mod tests;
pub mod two_node_lms;
mod types;
pub mod vecmap;

pub use algorithm::*;
pub use cluster::{new_algorithm, Cluster, JoinError, Outcome};
pub use vecmap::VecMap;

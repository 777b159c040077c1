//! Deterministic simulations of a cluster, its network, its qdevice clients
//! and the server, for the randomized safety tests (`tests::safety`) and,
//! with the `fuzzing` feature, the cargo-fuzz target (`crate::fuzzing`).
//! docs/safety-testing.md describes what they model.
//!
//! * [`server`]: the one server model every simulation uses: a [`Cluster`]
//!   driven as the server's cluster table drives it, checking every action
//!   the algorithm returns.
//! * [`world`]: the nodes, their network partitions, their qdevice clients
//!   and the two message queues of each connection, on top of the server
//!   model.
//! * [`ffsplit`], [`lms`]: the random schedules of each algorithm (which
//!   step when) and their liveness checks.
//! * [`rng`]: the generator (seeded, or scripted by the fuzz input);
//!   [`schedules`]: the seed runner of the tests.
//!
//! The randomized tests read three environment variables:
//!
//! * `QNETD_SAFETY_SCHEDULES=N` runs schedules with seeds `1..=N` (default:
//!   the small count each test passes, so `cargo test` stays fast).
//! * `QNETD_SAFETY_SEED=S` runs only the schedule with seed `S`, with the full
//!   message trace recorded, to replay a failure.
//! * `QNETD_SAFETY_KEEP_GOING=1` keeps running after a failing schedule and
//!   lists the failing seeds at the end.
//!
//! A failing schedule panics with its seed and the command that replays it.
//!
//! [`Cluster`]: crate::Cluster

pub(crate) mod ffsplit;
pub(crate) mod lms;
pub(crate) mod oracle;
pub(crate) mod rng;
#[cfg(test)]
pub(crate) mod schedules;
pub(crate) mod server;
pub(crate) mod world;

pub(crate) use rng::Rng;

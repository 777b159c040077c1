//! qnetd-ha: an active/standby group of qnetd instances on etcd (issue 14,
//! design in docs/ha.md). Everything here is independent of the server's
//! internals; the server wires it in.
//!
//! # What the server calls
//!
//! ```text
//! let cfg = HaConfig::new(etcd_config, "group", "this-host", &ca_fingerprint(&ca_der));
//! let (ha, mut role) = Ha::start(cfg).await?;      // CA check, then the controller task
//! loop {
//!     role.changed().await?;
//!     match role.borrow().clone() {
//!         // load the vote memory, then listen; stop by our own timer at
//!         // serve_until unless an update extends it
//!         Role::Leader { term, serve_until } => {
//!             let held = ha.store().load_all().await?;   // before listening
//!             // ... serve; before every ACK: ha.may_serve(Instant::now())
//!             // ... on each decision: ha.store().save(term, &held_vote).await
//!         }
//!         // not (or no longer) allowed: stop voting, close every client,
//!         // stop listening
//!         Role::TakingOver { .. } | Role::Standby { .. } | Role::NoQuorum { .. } | Role::Starting => {}
//!     }
//! }
//! // shutdown: stop serving first, then
//! ha.resign().await?;
//! ```
//!
//! * [`Ha::start`] → ([`HaHandle`], `watch::Receiver<`[`Role`]`>`).
//! * [`Role`]: `Leader { term, serve_until }`, `TakingOver { term,
//!   serve_from }`, `Standby { leader }`, `NoQuorum { since }`,
//!   `Starting`. Only `Leader` before `serve_until` may serve
//!   ([`Role::may_serve`], [`HaHandle::may_serve`]).
//! * [`VoteStore`] ([`HaHandle::store`]): `save(term, &HeldVote)`,
//!   `save_many`, `remove(term, cluster)`, `load_all()`; writes are refused
//!   with [`HaError::NotLeader`] once `term` no longer leads.
//! * [`HaHandle::resign`]: on shutdown, after the server stopped serving.
//!
//! # Modules
//!
//! * [`lease`]: the pure lease/fencing model (`now` passed in).
//! * [`controller`]: election, keep-alive, standby observation, vote store.
//! * [`etcd`], [`http`]: a small etcd v3 client over etcd's JSON gateway
//!   (TLS with OpenSSL, user/password).
//! * [`float`]: the floating address the leader takes and announces.
//! * [`history`]: the checker over every instance's vote log.
//! * [`error`]: the error type, [`HaError`].

pub mod controller;
pub mod error;
pub mod etcd;
pub mod float;
pub mod history;
pub mod http;
pub mod lease;

pub use controller::{
    ca_fingerprint, Ha, HaConfig, HaHandle, Keys, LeaderTerm, LoadedVotes, Role, VoteStore,
};
pub use error::{HaError, Result};
pub use etcd::EtcdConfig;
pub use float::FloatingAddress;
pub use http::TlsFiles;
pub use lease::{LeaseClock, Previous, TakeoverPolicy};
pub use qnetd_proto::state::HeldVote;

//! qnetd-server: the tokio shell around qnetd-core. It owns every socket
//! and timer; the protocol itself is the core's sans-I/O `Session`.
//!
//! - [`serve`]: binds every listener and runs every task with one
//!   [`Shutdown`] token ([`Server`]);
//! - [`listener`]: the client port and its accept loop;
//! - [`conn`] (private): the per-connection driver loop;
//! - [`tls`]: STARTTLS with OpenSSL driven through memory, certificate
//!   reload;
//! - [`handshake`]: the TLS handshake workers and the accept loop's pacing;
//! - [`admin`]: the corosync-qnetd-tool compatible admin socket;
//! - [`metrics`]: the Prometheus exporter and `/metrics`;
//! - [`persist`]: the state file of the vote memory;
//! - [`ha`]: high availability: follows this instance's role in its group
//!   on etcd (listens, loads and stores the vote memory only as leader);
//! - [`ctx`]: what the tasks share (the core's `Arbiter`, TLS, limits);
//! - [`error`]: why the server could not start, with exit codes.

pub mod admin;
mod conn;
pub mod ctx;
pub mod error;
pub mod ha;
pub mod handshake;
pub mod listener;
pub mod metrics;
pub mod persist;
pub mod serve;
pub mod shutdown;
pub mod tls;

pub use ctx::ServerCtx;
pub use error::StartError;
pub use serve::Server;
pub use shutdown::Shutdown;

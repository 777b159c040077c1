//! Why a bench run could not be done: options that describe no possible
//! run, a server command that does not come up, certificates or reports
//! that cannot be read. Each message says what to change.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Options that describe a run the bench cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    NoClusters,
    NodesOutOfRange,
    TooManyClients,
    NoLoadedClusters,
    TooManyClustersToSpread,
    SplitNeedsTwoNodes,
    SplitNeedsFfsplit,
    ReconnectNeedsSpawn,
    NotLoopback(SocketAddr),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::NoClusters => f.write_str("--clusters must be at least 1"),
            OptionsError::NodesOutOfRange => f.write_str("--nodes must be between 1 and 255"),
            OptionsError::TooManyClients => {
                f.write_str("at most 1,000,000 clients (clusters x nodes) per run")
            }
            OptionsError::NoLoadedClusters => {
                f.write_str("storm-while-loaded needs --loaded-clusters 1 or more")
            }
            OptionsError::TooManyClustersToSpread => {
                f.write_str("too many clusters for one source address each; use --spread off")
            }
            OptionsError::SplitNeedsTwoNodes => {
                f.write_str("mass-split needs --nodes 2 or more (a cluster of one cannot split)")
            }
            OptionsError::SplitNeedsFfsplit => {
                f.write_str("mass-split checks the votes of ffsplit only; use --algorithm ffsplit")
            }
            OptionsError::ReconnectNeedsSpawn => f.write_str(
                "reconnect restarts the server: give its command line with --spawn 'CMD' \
                 (and its address with --server)",
            ),
            OptionsError::NotLoopback(addr) => write!(
                f,
                "--server {addr} is not a loopback address; the bench runs on loopback only"
            ),
        }
    }
}

/// Why a run failed before it could report.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    Options(OptionsError),
    /// The open-files limit is below what the clients need.
    TooFewFiles {
        clients: usize,
        need: usize,
        limit: u64,
    },
    /// Another process answers on the address the spawned server should use.
    PortInUse(SocketAddr),
    ServerLog {
        path: PathBuf,
        source: io::Error,
    },
    ServerStart {
        cmd: String,
        source: io::Error,
    },
    /// The spawned server ended before it accepted connections.
    ServerEnded {
        cmd: String,
        state: String,
        addr: SocketAddr,
        log: Option<PathBuf>,
    },
    ServerNotReady {
        cmd: String,
        addr: SocketAddr,
        within: Duration,
    },
    CaCertificate {
        path: PathBuf,
        source: io::Error,
    },
    ClientCertificate {
        cluster: String,
        source: qnetd_certs::CertError,
    },
    ClientTls {
        cluster: String,
        source: crate::client::ClientError,
    },
    /// The task that issues the client certificates failed.
    CertificateTask(tokio::task::JoinError),
    /// A thread that issues client certificates panicked.
    CertificateThreadPanicked,
    /// The thread of the clients connected before the storm did not start.
    LoadedThread(io::Error),
    /// The clients connected before the storm did not all vote in time.
    LoadedSetNotConnected {
        done: usize,
        total: usize,
        after: Duration,
    },
    ReadReport {
        path: PathBuf,
        source: io::Error,
    },
    NotAReport {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl From<OptionsError> for BenchError {
    fn from(e: OptionsError) -> BenchError {
        BenchError::Options(e)
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Options(e) => e.fmt(f),
            BenchError::TooFewFiles {
                clients,
                need,
                limit,
            } => write!(
                f,
                "{clients} clients need at least {need} open files but the limit is {limit} \
                 (the hard limit can be raised only with CAP_SYS_RESOURCE, e.g. as root \
                 outside a container); use fewer clients or raise it (ulimit -Hn)"
            ),
            BenchError::PortInUse(addr) => write!(
                f,
                "something already listens on {addr}; stop it or choose another port \
                 (in --server and in the --spawn command)"
            ),
            BenchError::ServerLog { path, source } => {
                write!(f, "cannot open the server log {}: {source}", path.display())
            }
            BenchError::ServerStart { cmd, source } => {
                write!(
                    f,
                    "cannot start the server with /bin/sh -c '{cmd}': {source}"
                )
            }
            BenchError::ServerEnded {
                cmd,
                state,
                addr,
                log,
            } => {
                write!(
                    f,
                    "the server command '{cmd}' {state} before accepting connections on {addr}"
                )?;
                match log {
                    Some(p) => write!(f, "; see {}", p.display()),
                    None => f.write_str("; rerun with --server-log FILE to see why"),
                }
            }
            BenchError::ServerNotReady { cmd, addr, within } => write!(
                f,
                "the server command '{cmd}' did not accept connections on {addr} within {:.0} s; \
                 check that --server matches the address and port in the command",
                within.as_secs_f64()
            ),
            BenchError::CaCertificate { path, source } => write!(
                f,
                "cannot read the CA certificate {}: {source}; --tls-dir must hold a CA made by \
                 `qnetd certs init --dir DIR`",
                path.display()
            ),
            BenchError::ClientCertificate { cluster, source } => {
                write!(
                    f,
                    "cannot issue the client certificate of {cluster}: {source}"
                )
            }
            BenchError::ClientTls { cluster, source } => {
                write!(f, "TLS configuration of {cluster}: {source}")
            }
            BenchError::CertificateTask(e) => write!(f, "certificate task failed: {e}"),
            BenchError::CertificateThreadPanicked => {
                f.write_str("a certificate thread panicked (see the message above)")
            }
            BenchError::LoadedThread(e) => {
                write!(f, "cannot start the loaded set's thread: {e}")
            }
            BenchError::LoadedSetNotConnected { done, total, after } => write!(
                f,
                "the loaded set did not connect: {done} of {total} clients voting after {} s",
                after.as_secs()
            ),
            BenchError::ReadReport { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            BenchError::NotAReport { path, source } => write!(
                f,
                "{} is not a bench report ({source}); pass files written by \
                 `qnetd-bench ... --json FILE`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for BenchError {}

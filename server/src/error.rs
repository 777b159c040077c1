//! Why the server could not start: one typed error per cause, each with its
//! own process exit code (so a supervisor and an operator reading
//! `systemctl status` can tell them apart) and a message that says what to do.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::tls::TlsSetupError;

/// A start-up failure.
#[non_exhaustive]
#[derive(Debug)]
pub enum StartError {
    /// The listen address (`-l`) cannot be resolved.
    Resolve { host: String, error: std::io::Error },
    /// No address of the requested family (`-4`/`-6`).
    NoAddress,
    /// The client port cannot be bound.
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// The TLS CA, certificate or key cannot be read or created.
    Tls(TlsSetupError),
    /// The admin socket cannot be created.
    Admin {
        path: PathBuf,
        what: AdminSocketProblem,
        error: Option<std::io::Error>,
    },
    /// The metrics listener cannot be bound.
    Metrics {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// High availability: the group cannot be set up or refuses this
    /// instance (`code`: 2 settings, 5 CA unreadable, 7 refused by the
    /// group: other CA, etcd credentials or TLS files).
    Ha { problem: String, code: u8 },
}

/// What went wrong with the admin socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminSocketProblem {
    /// Another server answers on it.
    InUse,
    CreateDir,
    RemoveStale,
    Bind,
    SetMode,
    SetGroup,
    Rename,
}

impl StartError {
    /// The process exit code: 4 client port, 5 TLS material, 6 admin socket
    /// or metrics port, 7 refused by the HA group (2 and 3, configuration
    /// and lock file, are the binary's own; an HA setting error is 2 too).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Resolve { .. } | StartError::NoAddress | StartError::Listen { .. } => 4,
            StartError::Tls(_) => 5,
            StartError::Admin { .. } | StartError::Metrics { .. } => 6,
            StartError::Ha { code, .. } => *code,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Resolve { host, error } => {
                write!(f, "cannot resolve listen address '{host}': {error}")
            }
            StartError::NoAddress => {
                f.write_str("no listen address of the requested family (-4/-6) was found")
            }
            StartError::Listen { addr, error } if error.kind() == std::io::ErrorKind::AddrInUse => write!(
                f,
                "cannot listen on {addr}: the port is already in use (is another qnetd or corosync-qnetd running? choose another port with -p)"
            ),
            StartError::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Tls(e) => write!(f, "{e}"),
            StartError::Admin { path, what, error } => {
                let p = path.display();
                let e = error.as_ref().map(|e| e.to_string()).unwrap_or_default();
                match what {
                    AdminSocketProblem::InUse => write!(
                        f,
                        "{p} is in use: another qnetd or corosync-qnetd is running (or choose another -S local_socket_file)"
                    ),
                    AdminSocketProblem::CreateDir => write!(f, "cannot create the directory of {p}: {e}"),
                    AdminSocketProblem::RemoveStale => write!(f, "cannot remove the stale socket {p}: {e}"),
                    AdminSocketProblem::Bind => write!(f, "cannot create the admin socket {p}: {e}"),
                    AdminSocketProblem::SetMode => write!(f, "cannot set the mode of {p}: {e}"),
                    AdminSocketProblem::SetGroup => write!(f, "cannot set the group of {p}: {e}"),
                    AdminSocketProblem::Rename => write!(f, "cannot move the admin socket to {p}: {e}"),
                }
            }
            StartError::Metrics { addr, error } => write!(
                f,
                "cannot listen for metrics on {addr}: {error} (choose another --metrics-listen, or 'off')"
            ),
            StartError::Ha { problem, .. } => write!(f, "high availability: {problem}"),
        }
    }
}

impl std::error::Error for StartError {}

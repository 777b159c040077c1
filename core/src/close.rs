//! Why a client connection ends: one typed reason for every way a
//! connection can close, whoever noticed it (the session state machine, the
//! connection driver, the TLS handshake, the server stopping). Each reason
//! has a text for the log (what happened and, where the operator can act,
//! what to do), a bounded label for the `qnetd_client_disconnects_total`
//! metric, and a severity. Nothing anywhere matches on the text.

use std::fmt;

/// Which direction of the socket failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
}

/// Why a TLS handshake failed, as far as an operator can act on it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailureKind {
    /// The client certificate was not issued by this server's CA.
    UnknownCa,
    /// The client certificate has expired.
    Expired,
    /// The client sent no certificate while one is required.
    NoCertificate,
    /// The bytes after STARTTLS were not a TLS handshake.
    NotTls,
    /// No TLS version or cipher suite in common.
    NoCommonVersion,
    /// The client closed the connection during the handshake.
    ClientClosed,
    /// The handshake did not complete within its deadline.
    Timeout,
    /// Anything else (the detail says what the TLS library reported).
    Other,
}

impl TlsFailureKind {
    /// Label of `qnetd_tls_handshakes_total{reason}`.
    pub fn label(self) -> &'static str {
        match self {
            TlsFailureKind::UnknownCa => "unknown_ca",
            TlsFailureKind::Expired => "expired",
            TlsFailureKind::NoCertificate => "no_certificate",
            TlsFailureKind::NotTls => "not_tls",
            TlsFailureKind::NoCommonVersion => "no_common_version",
            TlsFailureKind::ClientClosed => "client_closed",
            TlsFailureKind::Timeout => "timeout",
            TlsFailureKind::Other => "other",
        }
    }

    /// What the operator can do about it.
    fn hint(self) -> &'static str {
        match self {
            TlsFailureKind::UnknownCa => {
                " (the client certificate was not issued by this server's CA)"
            }
            TlsFailureKind::Expired => " (the client certificate has expired: issue a new one)",
            TlsFailureKind::NoCertificate => {
                " (the client sent no certificate; -c on requires one: import the cluster certificate on the node)"
            }
            TlsFailureKind::NotTls => " (not a TLS handshake)",
            TlsFailureKind::NoCommonVersion => " (no common TLS version or cipher)",
            TlsFailureKind::ClientClosed => {
                " (the client closed the connection during the handshake)"
            }
            TlsFailureKind::Timeout | TlsFailureKind::Other => "",
        }
    }
}

/// A failed TLS handshake: its kind and what the TLS library said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFailure {
    pub kind: TlsFailureKind,
    pub detail: String,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.detail, self.kind.hint())
    }
}

/// Why a client connection was closed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the connection.
    ClientClosed,
    /// Reading from or writing to the socket failed.
    Io {
        op: IoOp,
        kind: std::io::ErrorKind,
        detail: String,
    },
    /// No complete message within the dead-peer interval (or a write stayed
    /// blocked past it).
    DeadPeer { interval_ms: u64 },
    /// A VOTE_INFO(NACK) was not acknowledged in time: the connection is
    /// closed so that the vote can move (a 3.0.x client falls back to NACK
    /// when it loses the server).
    NackNotAcknowledged { seq: u32, within_ms: u64 },
    /// INIT was not completed within `init_timeout` of connecting.
    InitTimeout { timeout_ms: u64 },
    /// The TLS handshake failed (or did not finish within its deadline).
    TlsHandshake(TlsFailure),
    /// STARTTLS while TLS is off on this server.
    TlsOff,
    /// STARTTLS on a connection that already uses TLS.
    StartTlsInsideTls,
    /// TLS without a client certificate while `-c on` requires one.
    NoClientCertificate,
    /// The client certificate does not name the cluster the client announced.
    CertificateMismatch { names: Vec<String>, cluster: String },
    /// A message header claimed a length far above the receive limit.
    MessageTooLong { length: u32, limit: usize },
    /// The connection earned too many error replies.
    TooManyErrors { count: u32 },
    /// The client does not read its replies: its send queue overflowed.
    SendQueueFull,
    /// The server is stopping.
    ServerShutdown,
    /// High availability: this instance's leadership lease is no longer
    /// certainly valid, so it stops voting.
    LeaseExpired,
}

impl CloseReason {
    /// Bounded label of `qnetd_client_disconnects_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::Io { .. } => "io_error",
            CloseReason::DeadPeer { .. } => "dead_peer",
            CloseReason::NackNotAcknowledged { .. } => "nack_not_acknowledged",
            CloseReason::InitTimeout { .. } => "init_timeout",
            CloseReason::TlsHandshake(_) => "tls_failed",
            CloseReason::NoClientCertificate | CloseReason::CertificateMismatch { .. } => {
                "certificate_refused"
            }
            CloseReason::MessageTooLong { .. } => "message_too_long",
            CloseReason::SendQueueFull => "send_queue_full",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::LeaseExpired => "lease_expired",
            CloseReason::TlsOff
            | CloseReason::StartTlsInsideTls
            | CloseReason::TooManyErrors { .. } => "refused",
        }
    }

    /// The whole server is stopping: the algorithms do not re-decide for
    /// the clients that remain (as the reference on shutdown).
    pub fn server_going_down(&self) -> bool {
        matches!(
            self,
            CloseReason::ServerShutdown | CloseReason::LeaseExpired
        )
    }

    /// The server ended the connection because of something wrong (logged
    /// as a warning), as opposed to the client leaving or the server
    /// stopping.
    pub fn is_abnormal(&self) -> bool {
        !matches!(
            self,
            CloseReason::ClientClosed
                | CloseReason::ServerShutdown
                | CloseReason::Io { op: IoOp::Read, .. }
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientClosed => f.write_str("connection closed by client"),
            CloseReason::Io { op, detail, .. } => {
                let op = match op {
                    IoOp::Read => "read",
                    IoOp::Write => "write",
                };
                write!(f, "{op} failed: {detail}")
            }
            CloseReason::DeadPeer { interval_ms } => {
                write!(f, "dead peer: no message for {interval_ms} ms")
            }
            CloseReason::NackNotAcknowledged { seq, within_ms } => write!(
                f,
                "NACK not acknowledged: no VOTE_INFO_REPLY for seq {seq} within {within_ms} ms; disconnecting so the vote can move (a 3.0.x client falls back to NACK when it loses the server)"
            ),
            CloseReason::InitTimeout { timeout_ms } => write!(
                f,
                "handshake deadline: INIT not completed within {timeout_ms} ms of connecting (init_timeout)"
            ),
            CloseReason::TlsHandshake(failure) if failure.kind == TlsFailureKind::Timeout => {
                write!(f, "TLS handshake not completed: {}", failure.detail)
            }
            CloseReason::TlsHandshake(failure) => write!(f, "TLS handshake failed: {failure}"),
            CloseReason::TlsOff => f.write_str(
                "client asked for STARTTLS but TLS is off on this server (-s off)",
            ),
            CloseReason::StartTlsInsideTls => {
                f.write_str("STARTTLS on a connection that already uses TLS")
            }
            CloseReason::NoClientCertificate => f.write_str(
                "TLS client presented no certificate but one is required (-c on)",
            ),
            CloseReason::CertificateMismatch { names, cluster } => write!(
                f,
                "client certificate names {names:?}, which does not match cluster name '{cluster}' (issue the node certificate for this cluster: qnetd certs client --cluster {cluster})"
            ),
            CloseReason::MessageTooLong { length, limit } => write!(
                f,
                "message of {length} bytes claimed (limit {limit}): not read"
            ),
            CloseReason::TooManyErrors { count } => write!(
                f,
                "too many protocol errors ({count}): the client does not speak the qnetd protocol (or is a different version)"
            ),
            CloseReason::SendQueueFull => {
                f.write_str("send queue full (the client does not read its replies)")
            }
            CloseReason::ServerShutdown => f.write_str("server shutting down"),
            CloseReason::LeaseExpired => f.write_str(
                "this instance's leadership lease is no longer certainly valid: it stops serving so that another instance can take over",
            ),
        }
    }
}

impl std::error::Error for CloseReason {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_stable() {
        let reasons = [
            (CloseReason::ClientClosed, "client_closed"),
            (CloseReason::DeadPeer { interval_ms: 1 }, "dead_peer"),
            (
                CloseReason::NackNotAcknowledged {
                    seq: 1,
                    within_ms: 2,
                },
                "nack_not_acknowledged",
            ),
            (CloseReason::InitTimeout { timeout_ms: 5 }, "init_timeout"),
            (CloseReason::SendQueueFull, "send_queue_full"),
            (CloseReason::ServerShutdown, "server_shutdown"),
            (CloseReason::NoClientCertificate, "certificate_refused"),
            (CloseReason::TooManyErrors { count: 16 }, "refused"),
        ];
        for (reason, label) in reasons {
            assert_eq!(reason.label(), label, "{reason}");
        }
        assert!(CloseReason::ServerShutdown.server_going_down());
        assert!(!CloseReason::ClientClosed.is_abnormal());
        assert!(CloseReason::DeadPeer { interval_ms: 1 }.is_abnormal());
    }

    #[test]
    fn texts_say_what_to_do() {
        let r = CloseReason::CertificateMismatch {
            names: vec!["other".into()],
            cluster: "web".into(),
        };
        assert!(r.to_string().contains("qnetd certs client --cluster web"));
        let t = CloseReason::TlsHandshake(TlsFailure {
            kind: TlsFailureKind::Expired,
            detail: "certificate verify failed".into(),
        });
        assert!(t.to_string().contains("issue a new one"), "{t}");
    }
}

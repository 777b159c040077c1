//! Every error of the HA layer, typed. Each message says what went wrong
//! and what to do about it.

use std::path::PathBuf;
use std::time::Duration;

/// An error of the etcd client, the election or the vote store.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// An endpoint in the configuration is not `http://HOST:PORT` or
    /// `https://HOST:PORT`.
    #[error("etcd endpoint {endpoint:?} is invalid ({reason}); write it as https://HOST:PORT or http://HOST:PORT")]
    InvalidEndpoint { endpoint: String, reason: String },

    /// The configuration is unusable.
    #[error("HA configuration: {field} {problem}")]
    InvalidConfig {
        field: &'static str,
        problem: String,
    },

    /// A TLS file (CA, certificate, key) could not be read or parsed.
    #[error(
        "etcd TLS file {path}: {reason}; check the [ha] tls settings and the file's permissions"
    )]
    TlsFile { path: PathBuf, reason: String },

    /// The TLS handshake with an endpoint failed.
    #[error("etcd endpoint {endpoint}: TLS handshake failed ({reason}); check that the CA in [ha] tls_ca signed etcd's certificate and that the endpoint name matches it")]
    TlsHandshake { endpoint: String, reason: String },

    /// The TCP connection could not be made.
    #[error("etcd endpoint {endpoint}: cannot connect ({source}); check that etcd runs there and that [ha] endpoints is right")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },

    /// The connection broke during a request.
    #[error("etcd endpoint {endpoint}: connection failed during {op} ({source})")]
    Io {
        endpoint: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// No answer within the request timeout.
    #[error("etcd endpoint {endpoint}: no answer to {op} within {after:?}; etcd may have lost its quorum or be overloaded")]
    Timeout {
        endpoint: String,
        op: &'static str,
        after: Duration,
    },

    /// The answer was not valid HTTP or JSON of the expected shape.
    #[error("etcd endpoint {endpoint}: unexpected answer to {op} ({reason}); is this an etcd 3.4+ client URL (the gRPC gateway serves /v3/)?")]
    Protocol {
        endpoint: String,
        op: &'static str,
        reason: String,
    },

    /// The endpoint answered with an HTTP error that is not an etcd error.
    #[error("etcd endpoint {endpoint}: {op} answered HTTP {status}: {body}{}", gateway_hint(.body))]
    Gateway {
        endpoint: String,
        op: &'static str,
        status: u16,
        body: String,
    },

    /// etcd refused the request (gRPC status `code`).
    #[error("etcd refused {op}: {message} (gRPC code {code}){}", hint(*code))]
    Etcd {
        op: &'static str,
        code: i32,
        message: String,
    },

    /// Authentication with user and password failed.
    #[error("etcd authentication as {user:?} failed: {message}; check [ha] user and password, and that auth is enabled in etcd")]
    Auth { user: String, message: String },

    /// No endpoint answered.
    #[error("no etcd endpoint answered ({}): etcd is down or unreachable, or has lost its quorum", .errors.join("; "))]
    Unavailable { errors: Vec<String> },

    /// A write was refused because this instance no longer leads the
    /// term it wrote for.
    #[error("not the leader of term {revision} any more: a vote was not saved (another instance leads the group)")]
    NotLeader { revision: i64 },

    /// The group in etcd was created with another CA.
    #[error("group {group:?} in etcd uses the CA with SHA-256 {theirs}, this instance has {ours}: every instance of a group must use the same CA and server certificate (copy /etc/qnetd/tls from the leader) or use another group name")]
    CaMismatch {
        group: String,
        ours: String,
        theirs: String,
    },

    /// A stored vote could not be decoded.
    #[error("vote record {key:?} in etcd is not a valid HeldVote ({reason}); it was skipped")]
    BadRecord { key: String, reason: String },

    /// The floating address could not be added, removed or announced.
    #[error("floating address {addr} on {dev}: cannot {action} it ({reason}); qnetd needs CAP_NET_ADMIN and CAP_NET_RAW, and the interface must exist")]
    Address {
        addr: String,
        dev: String,
        action: &'static str,
        reason: String,
    },

    /// The controller task is gone (shut down).
    #[error("the HA controller has stopped")]
    Stopped,
}

fn gateway_hint(body: &str) -> &'static str {
    if body.contains("CommonName") {
        "; with etcd auth on, the client certificate in [ha] tls_cert must have no CommonName (etcd's JSON gateway cannot use it as the user name), or leave tls_cert unset and use user/password"
    } else {
        ""
    }
}

fn hint(code: i32) -> &'static str {
    match code {
        7 => "; the etcd user lacks permission: grant it readwrite on the group prefix",
        16 => "; the etcd token is invalid: check [ha] user and password",
        14 => "; etcd is unavailable: check its members' health",
        4 => "; etcd did not answer in time: check its members' health",
        _ => "",
    }
}

impl HaError {
    /// Whether the error means etcd could not be reached or did not answer
    /// (as opposed to an answer that refused the request).
    pub fn is_unavailable(&self) -> bool {
        match self {
            HaError::Connect { .. }
            | HaError::Io { .. }
            | HaError::Timeout { .. }
            | HaError::TlsHandshake { .. }
            | HaError::Unavailable { .. } => true,
            HaError::Etcd { code, .. } => matches!(code, 4 | 14),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, HaError>;

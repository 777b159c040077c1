//! Why a certificate operation failed; the message says what to do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong; [`fmt::Display`] says what happened and
/// what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum CertError {
    /// Reading, writing or creating a file or directory failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// `init` found files it would overwrite.
    AlreadyExists {
        /// The directory.
        dir: PathBuf,
        /// The files that exist.
        existing: Vec<PathBuf>,
    },
    /// An output file exists and would be overwritten.
    OutputExists {
        /// The file.
        path: PathBuf,
    },
    /// The CA (or server) files are missing: `init` has not been run.
    NotInitialized {
        /// The missing file.
        path: PathBuf,
    },
    /// Input could not be parsed.
    Parse {
        /// What was being parsed.
        what: String,
        /// The parser's complaint.
        detail: String,
    },
    /// The CSR's self-signature does not verify.
    BadCsrSignature {
        /// The verifier's complaint.
        detail: String,
    },
    /// The CSR's subject CN is not the cluster name.
    CnMismatch {
        /// The CN(s) in the CSR (empty if it has none).
        csr_cn: String,
        /// The cluster name asked for.
        cluster: String,
    },
    /// The cluster name cannot be used as a CN or file name.
    InvalidClusterName {
        /// The name.
        name: String,
        /// Why not.
        reason: &'static str,
    },
    /// The CSR's key type cannot be certified.
    UnsupportedKey {
        /// The key type found.
        key_type: String,
    },
    /// The CA key does not belong to the CA certificate.
    CaKeyMismatch {
        /// The CA key file.
        key: PathBuf,
        /// The CA certificate file.
        cert: PathBuf,
    },
    /// Key generation, certificate signing or random generation failed.
    Crypto {
        /// What failed.
        detail: String,
    },
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Io {
                path,
                action,
                source,
            } => write!(
                f,
                "cannot {action} {}: {source}; check that the path exists and is accessible \
                 (most commands need root)",
                path.display()
            ),
            CertError::AlreadyExists { dir, existing } => {
                let list: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "refusing to overwrite existing PKI files in {}: {}; nothing was written. \
                     To start over, move them away first (e.g. `mv {} {}.old`), then run init \
                     again; note that a new CA means every cluster node must import the new \
                     qnetd-cacert.crt and get a new cluster certificate",
                    dir.display(),
                    list.join(", "),
                    dir.display(),
                    dir.display()
                )
            }
            CertError::OutputExists { path } => write!(
                f,
                "refusing to overwrite {}; move it away or choose another output location",
                path.display()
            ),
            CertError::NotInitialized { path } => write!(
                f,
                "{} does not exist; create the CA and server certificate first with \
                 `qnetd certs init --dir {}`",
                path.display(),
                path.parent().unwrap_or(Path::new(".")).display()
            ),
            CertError::Parse { what, detail } => write!(
                f,
                "cannot parse {what}: {detail}; check that the file is the right one and not \
                 truncated"
            ),
            CertError::BadCsrSignature { detail } => write!(
                f,
                "the certificate request's signature does not verify ({detail}); the file is \
                 corrupted or was altered: make a new one on the node with \
                 `corosync-qdevice-net-certutil -r -n CLUSTER_NAME`"
            ),
            CertError::CnMismatch { csr_cn, cluster } => write!(
                f,
                "the certificate request is for CN={csr_cn:?} but the cluster name given is \
                 {cluster:?}; the CN must equal the cluster's totem.cluster_name: pass \
                 --cluster {csr_cn:?} if that is the cluster name, or make a new request with \
                 `corosync-qdevice-net-certutil -r -n {cluster}`"
            ),
            CertError::InvalidClusterName { name, reason } => write!(
                f,
                "invalid cluster name {name:?}: {reason}; use the value of totem.cluster_name \
                 from corosync.conf"
            ),
            CertError::UnsupportedKey { key_type } => write!(
                f,
                "the certificate request has a {key_type} key, which cannot be certified; \
                 supported are RSA, ECDSA P-256/P-384 and Ed25519 (certutil -R makes RSA 2048 \
                 by default)"
            ),
            CertError::CaKeyMismatch { key, cert } => write!(
                f,
                "the CA key {} does not belong to the CA certificate {}; restore the matching \
                 pair (or move the directory away and run init again)",
                key.display(),
                cert.display()
            ),
            CertError::Crypto { detail } => write!(
                f,
                "cryptographic operation failed: {detail}; this is unexpected, please report it"
            ),
        }
    }
}

impl std::error::Error for CertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CertError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

//! PKI tooling for `qnetd`: the certificate authority, the server
//! certificate and the cluster client certificates, made so that the stock
//! node side (`corosync-qdevice` with its NSS database, set up with
//! `corosync-qdevice-net-certutil`) accepts them unchanged.
//!
//! The conventions follow corosync-qnetd (see the protocol notes, §6.4):
//!
//! * the CA has subject `CN=QNet CA`; the nodes import it as "QNet CA" from
//!   [`Pki::CA_EXPORT`] (`qnetd-cacert.crt`);
//! * the server certificate has subject `CN=Qnetd Server` and no
//!   subjectAltName, because corosync-qdevice checks the server name
//!   `Qnetd Server` and NSS then matches the CN;
//! * a cluster certificate has subject `CN=<cluster name>`; the nodes present
//!   it under the nickname "Cluster Cert", and the server compares the
//!   cluster name of the connection with [`names`] of that certificate.
//!
//! Unlike the reference, which keeps everything in an NSS database, the
//! files here are plain PEM in one directory ([`DEFAULT_TLS_DIR`]). Keys
//! are ECDSA P-256; CSRs made by `certutil -R` (RSA 2048) are signed as is.

#![warn(missing_docs)]

mod info;
pub mod nss;
mod pkcs12;

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use ring::rand::{SecureRandom, SystemRandom};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

pub use info::{days_left, describe, names, rfc3339, unix_now, CertInfo};

/// Where `qnetd` keeps its CA and server certificate by default.
pub const DEFAULT_TLS_DIR: &str = "/etc/qnetd/tls";
/// Subject CN of the CA (the reference's "QNet CA").
pub const CA_COMMON_NAME: &str = "QNet CA";
/// Subject CN of the server certificate; corosync-qdevice expects exactly
/// this name (`net_nss_qnetd_cn`).
pub const SERVER_COMMON_NAME: &str = "Qnetd Server";
/// NSS nickname under which corosync-qdevice looks up its client
/// certificate; used as the PKCS#12 friendly name.
pub const CLIENT_NICKNAME: &str = "Cluster Cert";
/// Default validity: 100 years, like the reference's 1200 months.
pub const DEFAULT_VALIDITY_DAYS: u32 = 36_525;
/// Upper bound of a common name (X.520 `ub-common-name`).
pub const MAX_CLUSTER_NAME_LEN: usize = 64;

pub(crate) const OID_P256: &str = "1.2.840.10045.3.1.7";
pub(crate) const OID_P384: &str = "1.3.132.0.34";
pub(crate) const OID_P521: &str = "1.3.132.0.35";
pub(crate) const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// Clock skew allowance: certificates start this many seconds in the past.
const BACKDATE_SECS: i64 = 3600;

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
        /// The directory holding both.
        dir: PathBuf,
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
            CertError::CaKeyMismatch { dir } => write!(
                f,
                "the CA key {} does not belong to the CA certificate {}; restore the matching \
                 pair (or move the directory away and run init again)",
                dir.join(Pki::CA_KEY).display(),
                dir.join(Pki::CA_CERT).display()
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

fn crypto_err(detail: impl fmt::Display) -> CertError {
    CertError::Crypto {
        detail: detail.to_string(),
    }
}

/// Options of [`Pki::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitOptions {
    /// Validity of the CA, in days.
    pub ca_validity_days: u32,
    /// Validity of the server certificate, in days.
    pub server_validity_days: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            ca_validity_days: DEFAULT_VALIDITY_DAYS,
            server_validity_days: DEFAULT_VALIDITY_DAYS,
        }
    }
}

/// What [`Pki::init`] made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    /// The new CA.
    pub ca: CertInfo,
    /// The new server certificate.
    pub server: CertInfo,
}

/// A certificate issued from a CSR by [`Pki::sign_csr`].
#[derive(Debug, Clone)]
pub struct SignedCert {
    /// DER, the form `corosync-qdevice-net-certutil -M` imports
    /// (`cluster-NAME.crt`).
    pub der: Vec<u8>,
    /// The same certificate in PEM.
    pub pem: String,
}

/// A client key and certificate made by [`Pki::issue_client`].
#[derive(Debug, Clone)]
pub struct ClientBundle {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM. Secret.
    pub key_pem: String,
    /// PKCS#12 with key and certificate, empty password, friendly name
    /// "Cluster Cert": what `corosync-qdevice-net-certutil -m -c` imports.
    /// Secret.
    pub p12: Vec<u8>,
}

/// The qnetd PKI: a directory holding the CA and the server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// CA certificate, PEM.
    pub const CA_CERT: &'static str = "qnetd-ca.pem";
    /// CA private key, PKCS#8 PEM, mode 0600.
    pub const CA_KEY: &'static str = "qnetd-ca-key.pem";
    /// Server certificate, PEM.
    pub const SERVER_CERT: &'static str = "qnetd-server.pem";
    /// Server private key, PKCS#8 PEM, mode 0600.
    pub const SERVER_KEY: &'static str = "qnetd-server-key.pem";
    /// The CA certificate to copy to the nodes (same name as the
    /// reference's export), PEM.
    pub const CA_EXPORT: &'static str = "qnetd-cacert.crt";

    /// All files [`Pki::init`] writes.
    pub const FILES: [&'static str; 5] = [
        Self::CA_CERT,
        Self::CA_KEY,
        Self::SERVER_CERT,
        Self::SERVER_KEY,
        Self::CA_EXPORT,
    ];

    /// A PKI in `dir` (nothing is read or written yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Pki { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one of the files, e.g. `pki.path(Pki::SERVER_CERT)`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Create the CA and the server certificate.
    ///
    /// Creates the directory (mode 0700) if needed. Refuses, writing
    /// nothing, if any of the files already exists. Keys are created with
    /// mode 0600, certificates 0644.
    pub fn init(&self, opts: InitOptions) -> Result<InitReport, CertError> {
        let existing: Vec<PathBuf> = Self::FILES
            .iter()
            .map(|f| self.path(f))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        if !existing.is_empty() {
            return Err(CertError::AlreadyExists {
                dir: self.dir.clone(),
                existing,
            });
        }
        if !self.dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(|source| CertError::Io {
                    path: self.dir.clone(),
                    action: "create directory",
                    source,
                })?;
        }

        let now = unix_now();
        let ca_key = new_p256_key()?;
        let mut ca_params = base_params(CA_COMMON_NAME, now, opts.ca_validity_days)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(crypto_err)?;

        let server_key = new_p256_key()?;
        let mut server_params = base_params(SERVER_COMMON_NAME, now, opts.server_validity_days)?;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .map_err(crypto_err)?;

        let ca_pem = ca_cert.pem();
        let server_pem = server_cert.pem();
        let mut files = Vec::new();
        // Keys first: if anything fails later, no certificate points at a
        // key that was never written.
        for (name, contents, mode) in [
            (Self::CA_KEY, ca_key.serialize_pem(), 0o600),
            (Self::SERVER_KEY, server_key.serialize_pem(), 0o600),
            (Self::CA_CERT, ca_pem.clone(), 0o644),
            (Self::SERVER_CERT, server_pem.clone(), 0o644),
            (Self::CA_EXPORT, ca_pem.clone(), 0o644),
        ] {
            let path = self.path(name);
            write_new_file(&path, contents.as_bytes(), mode)?;
            files.push(path);
        }

        Ok(InitReport {
            files,
            ca: first_info(ca_pem.as_bytes())?,
            server: first_info(server_pem.as_bytes())?,
        })
    }

    /// Sign a cluster certificate request (DER as `certutil -R` writes it,
    /// or PEM).
    ///
    /// The request's signature must verify and its subject CN must equal
    /// `cluster` (ignoring ASCII case). The certificate keeps the request's
    /// public key and gets subject `CN=<cluster>` (spelled as given), EKU
    /// clientAuth, and key usage digitalSignature (+ keyEncipherment for RSA
    /// keys). Requested extensions are ignored.
    pub fn sign_csr(
        &self,
        csr: &[u8],
        cluster: &str,
        validity_days: u32,
    ) -> Result<SignedCert, CertError> {
        validate_cluster_name(cluster)?;
        let der = csr_der(csr)?;
        let (rest, req) =
            X509CertificationRequest::from_der(&der).map_err(|e| CertError::Parse {
                what: "certificate request (DER or PEM expected)".into(),
                detail: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(CertError::Parse {
                what: "certificate request".into(),
                detail: format!("{} trailing bytes after the request", rest.len()),
            });
        }
        req.verify_signature()
            .map_err(|e| CertError::BadCsrSignature {
                detail: e.to_string(),
            })?;

        let cns: Vec<String> = req
            .certification_request_info
            .subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect();
        if cns.len() != 1 || !names_equal(&cns[0], cluster) {
            return Err(CertError::CnMismatch {
                csr_cn: cns.join(","),
                cluster: cluster.to_owned(),
            });
        }

        let key = CsrPublicKey::from_spki(&req.certification_request_info.subject_pki)?;
        let is_rsa = key.alg == &rcgen::PKCS_RSA_SHA256;
        let cert = self.issue(cluster, &key, validity_days, is_rsa)?;
        Ok(SignedCert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
        })
    }

    /// Make a fresh ECDSA P-256 key and a client certificate for `cluster`
    /// (subject `CN=<cluster>`, EKU clientAuth), and bundle them as PKCS#12
    /// for the nodes.
    pub fn issue_client(
        &self,
        cluster: &str,
        validity_days: u32,
    ) -> Result<ClientBundle, CertError> {
        validate_cluster_name(cluster)?;
        let key = new_p256_key()?;
        let cert = self.issue(cluster, &key, validity_days, false)?;
        let p12 = pkcs12::write_pfx(cert.der(), &key.serialize_der(), CLIENT_NICKNAME)
            .map_err(|_| crypto_err("the system random generator failed"))?;
        Ok(ClientBundle {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            p12,
        })
    }

    /// Issue a client certificate for `public_key`, signed by the CA.
    fn issue(
        &self,
        cluster: &str,
        public_key: &impl PublicKeyData,
        validity_days: u32,
        key_encipherment: bool,
    ) -> Result<rcgen::Certificate, CertError> {
        let (ca_key, ca_der) = self.load_ca()?;
        let issuer = Issuer::from_ca_cert_der(&ca_der.as_slice().into(), ca_key).map_err(|e| {
            CertError::Parse {
                what: format!("CA certificate {}", self.path(Self::CA_CERT).display()),
                detail: e.to_string(),
            }
        })?;
        let mut params = base_params(cluster, unix_now(), validity_days)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key_encipherment {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.signed_by(public_key, &issuer).map_err(crypto_err)
    }

    /// Load the CA key and certificate (DER) and check they belong together.
    fn load_ca(&self) -> Result<(KeyPair, Vec<u8>), CertError> {
        let cert_path = self.path(Self::CA_CERT);
        let key_path = self.path(Self::CA_KEY);
        let cert_pem = read_existing(&cert_path)?;
        let key_pem = read_existing(&key_path)?;
        let key_text = String::from_utf8(key_pem).map_err(|_| CertError::Parse {
            what: format!("CA key {}", key_path.display()),
            detail: "not a PEM text file".into(),
        })?;
        let key = KeyPair::from_pem(&key_text).map_err(|e| CertError::Parse {
            what: format!("CA key {}", key_path.display()),
            detail: e.to_string(),
        })?;
        let der = info::cert_ders(&cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| CertError::Parse {
                what: format!("CA certificate {}", cert_path.display()),
                detail: "no certificate found".into(),
            })?;
        let cert = info::parse_der(&der).map_err(|e| match e {
            CertError::Parse { detail, .. } => CertError::Parse {
                what: format!("CA certificate {}", cert_path.display()),
                detail,
            },
            other => other,
        })?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CertError::CaKeyMismatch {
                dir: self.dir.clone(),
            });
        }
        Ok((key, der))
    }
}

/// Check that `name` can be a certificate CN and part of a file name.
pub fn validate_cluster_name(name: &str) -> Result<(), CertError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_CLUSTER_NAME_LEN {
        Some("it is longer than 64 bytes")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CertError::InvalidClusterName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Case-insensitive comparison of a certificate name with a cluster name
/// (ASCII case folding, as hostname matching does).
pub fn names_equal(cert_name: &str, cluster: &str) -> bool {
    cert_name.eq_ignore_ascii_case(cluster)
}

/// A public key taken from a CSR, in the form rcgen certifies.
struct CsrPublicKey {
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl CsrPublicKey {
    fn from_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<Self, CertError> {
        let unsupported = || CertError::UnsupportedKey {
            key_type: info::key_type_of_spki(spki),
        };
        let alg_oid = spki.algorithm.algorithm.to_id_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let alg: &'static SignatureAlgorithm = match alg_oid.as_str() {
            OID_RSA => match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => &rcgen::PKCS_RSA_SHA256,
                _ => return Err(unsupported()),
            },
            OID_EC_PUBLIC_KEY => match curve.as_deref() {
                Some(OID_P256) => &rcgen::PKCS_ECDSA_P256_SHA256,
                Some(OID_P384) => &rcgen::PKCS_ECDSA_P384_SHA384,
                _ => return Err(unsupported()),
            },
            OID_ED25519 => &rcgen::PKCS_ED25519,
            _ => return Err(unsupported()),
        };
        Ok(CsrPublicKey {
            raw: spki.subject_public_key.data.to_vec(),
            alg,
        })
    }
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// DER of a CSR given as DER or PEM (`CERTIFICATE REQUEST` or certutil's
/// `NEW CERTIFICATE REQUEST`; text around the block is ignored).
fn csr_der(input: &[u8]) -> Result<Vec<u8>, CertError> {
    if !info::looks_like_pem(input) {
        return Ok(input.to_vec());
    }
    for pem in Pem::iter_from_buffer(input) {
        let pem = pem.map_err(|e| CertError::Parse {
            what: "PEM certificate request".into(),
            detail: e.to_string(),
        })?;
        if pem.label.ends_with("CERTIFICATE REQUEST") {
            return Ok(pem.contents);
        }
    }
    Err(CertError::Parse {
        what: "PEM certificate request".into(),
        detail: "no CERTIFICATE REQUEST block found".into(),
    })
}

fn new_p256_key() -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto_err)
}

/// Parameters shared by all certificates: subject CN, random serial,
/// validity from an hour ago for `days` days.
fn base_params(cn: &str, now: i64, days: u32) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let start = now - BACKDATE_SECS;
    let end = now.saturating_add(i64::from(days).saturating_mul(86_400));
    params.not_before = rcgen_time(start)?;
    params.not_after = rcgen_time(end)?;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn rcgen_time(unix: i64) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| crypto_err(format!("validity out of range: {e}")))
}

/// A positive 128-bit serial whose first byte is non-zero, so its DER
/// encoding is always 16 bytes.
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| crypto_err("the system random generator failed"))?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn first_info(pem: &[u8]) -> Result<CertInfo, CertError> {
    describe(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| crypto_err("generated certificate cannot be read back"))
}

fn read_existing(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            CertError::NotInitialized {
                path: path.to_path_buf(),
            }
        } else {
            CertError::Io {
                path: path.to_path_buf(),
                action: "read",
                source,
            }
        }
    })
}

/// Write `contents` to a new file created with `mode` (never overwrites).
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                CertError::OutputExists {
                    path: path.to_path_buf(),
                }
            } else {
                CertError::Io {
                    path: path.to_path_buf(),
                    action: "create",
                    source,
                }
            }
        })?;
    // The mode given to open() is reduced by the umask; make certificates
    // world-readable as intended (keys were created 0600 and stay so).
    file.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .map_err(|source| CertError::Io {
            path: path.to_path_buf(),
            action: "write",
            source,
        })
}

#[cfg(test)]
mod tests;

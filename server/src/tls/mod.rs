//! TLS for STARTTLS: the server's TLS configuration built from the PEM files
//! of the TLS directory, its reload on SIGHUP, and [`TlsConn`], one
//! connection's TLS driven through memory: the connection driver moves
//! ciphertext between the socket and it, runs its handshake steps on the
//! handshake workers (`crate::handshake`) and encrypts and decrypts the
//! established connection's records itself. No socket is touched here, so
//! a handshake step can run on any thread, the server's flight of
//! handshake records leaves in one write, and an idle connection holds no
//! buffer (`SSL_MODE_RELEASE_BUFFERS`, and the memory transport frees what
//! it consumed).
//!
//! The server side uses OpenSSL. rustls 0.23 refuses a ClientHello whose SNI
//! is not a valid DNS name, and corosync-qdevice always sends the SNI
//! "Qnetd Server" (`SSL_SetURL` with `net_nss_qnetd_cn`), so no real client
//! could connect; the rustls option that accepts it exists only in a
//! pre-release. Client certificates are verified against our CA only; the
//! session then matches their names with the cluster name (qnetd-core's
//! `session`), as the reference does with NSS.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{
    ErrorCode, Ssl, SslAcceptor, SslMethod, SslMode, SslSessionCacheMode, SslStream, SslVerifyMode,
    SslVersion,
};
use openssl::x509::X509;

use qnetd_certs::Pki;
use qnetd_core::close::{TlsFailure, TlsFailureKind};

/// Why TLS could not be set up; the message says what to do.
#[non_exhaustive]
#[derive(Debug)]
pub enum TlsSetupError {
    /// A file of the TLS directory cannot be read.
    Read { path: PathBuf, error: io::Error },
    /// A certificate file holds no (valid) PEM certificate.
    NotCertificate { path: PathBuf, detail: String },
    /// The key file is not a PEM private key.
    NotKey { path: PathBuf, detail: String },
    /// The server certificate and key do not belong together.
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: ErrorStack,
    },
    /// The CA certificate cannot be used to verify clients.
    BadCa { path: PathBuf, detail: ErrorStack },
    /// OpenSSL refused the configuration.
    Setup(ErrorStack),
    /// Creating a new CA and server certificate failed.
    Init(qnetd_certs::CertError),
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetupError::Read { path, error } => write!(
                f,
                "cannot read {}: {error} (create the TLS files with `qnetd certs init --dir {}`, or start with -s off)",
                path.display(),
                path.parent().map(|p| p.display().to_string()).unwrap_or_default()
            ),
            TlsSetupError::NotCertificate { path, detail } => {
                write!(f, "{}: not a PEM certificate file: {detail}", path.display())
            }
            TlsSetupError::NotKey { path, detail } => {
                write!(f, "{}: not a PEM private key: {detail}", path.display())
            }
            TlsSetupError::KeyMismatch { cert, key, detail } => write!(
                f,
                "{} and {} do not belong together: {detail}",
                cert.display(),
                key.display()
            ),
            TlsSetupError::BadCa { path, detail } => {
                write!(f, "{}: unusable CA certificate: {detail}", path.display())
            }
            TlsSetupError::Setup(e) => write!(f, "TLS setup: {e}"),
            TlsSetupError::Init(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsSetupError {}

/// The server's TLS state: the current configuration, replaced on reload.
pub struct TlsContext {
    dir: PathBuf,
    client_cert_required: bool,
    acceptor: RwLock<Arc<SslAcceptor>>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|error| TlsSetupError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn certs_from(path: &Path) -> Result<Vec<X509>, TlsSetupError> {
    let certs = X509::stack_from_pem(&read(path)?).map_err(|e| TlsSetupError::NotCertificate {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NotCertificate {
            path: path.to_path_buf(),
            detail: "no certificate found (expected PEM)".into(),
        });
    }
    Ok(certs)
}

/// Builds the TLS configuration from the TLS directory.
fn build_acceptor(dir: &Path, client_cert_required: bool) -> Result<SslAcceptor, TlsSetupError> {
    let setup = TlsSetupError::Setup;
    let cert_path = dir.join(Pki::SERVER_CERT);
    let key_path = dir.join(Pki::SERVER_KEY);
    let chain = certs_from(&cert_path)?;
    let key = PKey::private_key_from_pem(&read(&key_path)?).map_err(|e| TlsSetupError::NotKey {
        path: key_path.clone(),
        detail: e.to_string(),
    })?;
    // TLS 1.2 and 1.3 with forward-secret AEAD suites only.
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(setup)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup)?;
    b.set_certificate(&chain[0]).map_err(setup)?;
    for extra in &chain[1..] {
        b.add_extra_chain_cert(extra.clone()).map_err(setup)?;
    }
    // The chain sent is the server certificate file's (normally just the
    // server certificate; a self-signed CA root is not sent, as NSS does
    // not send it either). Without NO_AUTO_CHAIN OpenSSL would rebuild and
    // verify the server's own chain from the CA store on every handshake:
    // one ECDSA verification per client for nothing (BENCHMARKS.md).
    // RELEASE_BUFFERS: the record buffers (about 34 KiB) are freed while a
    // connection is idle.
    b.set_mode(SslMode::NO_AUTO_CHAIN | SslMode::RELEASE_BUFFERS);
    // No session tickets and no server-side session cache: a qdevice keeps
    // one long-lived connection, so the two tickets OpenSSL sends after
    // every TLS 1.3 handshake (each a serialised session, encrypted and
    // MACed) and the cached sessions were pure cost: about a third of the
    // server's instructions per TLS client (BENCHMARKS.md). A reconnecting
    // client does a full handshake.
    b.set_num_tickets(0).map_err(setup)?;
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    b.set_private_key(&key).map_err(setup)?;
    b.check_private_key()
        .map_err(|detail| TlsSetupError::KeyMismatch {
            cert: cert_path.clone(),
            key: key_path.clone(),
            detail,
        })?;
    if client_cert_required {
        let ca_path = dir.join(Pki::CA_CERT);
        for ca in certs_from(&ca_path)? {
            b.add_client_ca(&ca).map_err(setup)?;
            b.cert_store_mut()
                .add_cert(ca)
                .map_err(|detail| TlsSetupError::BadCa {
                    path: ca_path.clone(),
                    detail,
                })?;
        }
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    } else {
        b.set_verify(SslVerifyMode::NONE);
    }
    Ok(b.build())
}

impl TlsContext {
    /// Loads the TLS files of `dir`. When the directory holds none of them
    /// yet, creates a new CA and server certificate first (like the
    /// reference's package does at install) and says so in the log.
    pub fn load_or_init(
        dir: &Path,
        client_cert_required: bool,
    ) -> Result<TlsContext, TlsSetupError> {
        let pki = Pki::new(dir);
        let files = [Pki::CA_CERT, Pki::CA_KEY, Pki::SERVER_CERT, Pki::SERVER_KEY];
        if files.iter().all(|f| !dir.join(f).exists()) {
            pki.init(Default::default()).map_err(TlsSetupError::Init)?;
            tracing::warn!(
                dir = %dir.display(),
                "no TLS certificates found: created a new CA and server certificate; give {} to the cluster nodes (corosync-qdevice-net-certutil -i -c FILE) and issue node certificates with `qnetd certs client` or `qnetd certs sign`",
                dir.join(Pki::CA_EXPORT).display()
            );
        }
        let acceptor = build_acceptor(dir, client_cert_required)?;
        Ok(TlsContext {
            dir: dir.to_path_buf(),
            client_cert_required,
            acceptor: RwLock::new(Arc::new(acceptor)),
        })
    }

    /// Rereads the TLS files. On failure the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        let acceptor = build_acceptor(&self.dir, self.client_cert_required)?;
        let mut a = self.acceptor.write().unwrap_or_else(|e| e.into_inner());
        *a = Arc::new(acceptor);
        Ok(())
    }

    fn current(&self) -> Arc<SslAcceptor> {
        Arc::clone(&self.acceptor.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// What a new connection's handshake starts from: the configuration in
    /// force now (a reload does not change a handshake under way).
    pub fn starter(&self) -> TlsStarter {
        TlsStarter(self.current())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA and server certificates of the TLS directory, with expiry.
    pub fn certificates(&self) -> Vec<qnetd_proto::status::CertificateStatus> {
        let mut out = Vec::new();
        for (role, f) in [("ca", Pki::CA_CERT), ("server", Pki::SERVER_CERT)] {
            let path = self.dir.join(f);
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            if let Ok(infos) = qnetd_certs::describe(&data) {
                if let Some(info) = infos.first() {
                    out.push(qnetd_proto::status::CertificateStatus {
                        role: role.into(),
                        path: path.display().to_string(),
                        subject: info.subject.clone(),
                        not_after_unix: info.not_after,
                        days_left: info.days_left(),
                    });
                }
            }
        }
        out
    }

    /// Warnings for certificates of the TLS directory that expired or expire
    /// within 30 days.
    pub fn expiry_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in [Pki::CA_CERT, Pki::SERVER_CERT] {
            let path = self.dir.join(f);
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            match qnetd_certs::describe(&data) {
                Ok(infos) => {
                    for info in infos {
                        let days = info.days_left();
                        if days < 0 {
                            out.push(format!(
                                "certificate {} ({}) expired {} days ago: clients will refuse it; renew it",
                                path.display(),
                                info.subject,
                                -days
                            ));
                        } else if days < 30 {
                            out.push(format!(
                                "certificate {} ({}) expires in {days} days: renew it soon",
                                path.display(),
                                info.subject
                            ));
                        }
                    }
                }
                Err(e) => out.push(format!("cannot read {}: {e}", path.display())),
            }
        }
        out
    }
}

/// Classifies a failed handshake so that an operator can act on it.
fn describe_handshake_error(e: &openssl::ssl::Error, ssl: &openssl::ssl::SslRef) -> TlsFailure {
    let verify = ssl.verify_result();
    if verify != openssl::x509::X509VerifyResult::OK {
        let kind = match verify.as_raw() {
            // X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, _UNABLE_TO_GET_ISSUER_CERT,
            // _DEPTH_ZERO_SELF_SIGNED_CERT, _SELF_SIGNED_CERT_IN_CHAIN
            20 | 2 | 18 | 19 => TlsFailureKind::UnknownCa,
            // X509_V_ERR_CERT_HAS_EXPIRED
            10 => TlsFailureKind::Expired,
            _ => TlsFailureKind::Other,
        };
        return TlsFailure {
            kind,
            detail: format!("client certificate refused: {}", verify.error_string()),
        };
    }
    // OpenSSL's reason codes (openssl/sslerr.h), not its message texts
    const PEER_DID_NOT_RETURN_A_CERTIFICATE: i32 = 199;
    const WRONG_VERSION_NUMBER: i32 = 267;
    const HTTP_REQUEST: i32 = 156;
    const HTTPS_PROXY_REQUEST: i32 = 155;
    const UNKNOWN_PROTOCOL: i32 = 252;
    const NO_SHARED_CIPHER: i32 = 193;
    const UNSUPPORTED_PROTOCOL: i32 = 258;
    const NO_PROTOCOLS_AVAILABLE: i32 = 191;
    const VERSION_TOO_LOW: i32 = 396;
    const UNEXPECTED_EOF_WHILE_READING: i32 = 294;
    let reasons: Vec<i32> = e
        .ssl_error()
        .map(|stack| stack.errors().iter().map(|r| r.reason_code()).collect())
        .unwrap_or_default();
    let has = |codes: &[i32]| reasons.iter().any(|r| codes.contains(r));
    let kind = if has(&[PEER_DID_NOT_RETURN_A_CERTIFICATE]) {
        TlsFailureKind::NoCertificate
    } else if has(&[
        WRONG_VERSION_NUMBER,
        HTTP_REQUEST,
        HTTPS_PROXY_REQUEST,
        UNKNOWN_PROTOCOL,
    ]) {
        TlsFailureKind::NotTls
    } else if has(&[
        NO_SHARED_CIPHER,
        UNSUPPORTED_PROTOCOL,
        NO_PROTOCOLS_AVAILABLE,
        VERSION_TOO_LOW,
    ]) {
        TlsFailureKind::NoCommonVersion
    } else if e.io_error().is_some()
        || has(&[UNEXPECTED_EOF_WHILE_READING])
        || reasons.is_empty() && e.code() == openssl::ssl::ErrorCode::SYSCALL
    {
        TlsFailureKind::ClientClosed
    } else {
        TlsFailureKind::Other
    };
    let text = e.to_string();
    let detail = e.ssl_error().map(|s| s.to_string()).unwrap_or_default();
    TlsFailure {
        kind,
        detail: if detail.is_empty() {
            text
        } else {
            format!("{text}: {detail}")
        },
    }
}

/// The configuration a connection's handshake starts with; cheap to move
/// to a handshake worker.
pub struct TlsStarter(Arc<SslAcceptor>);

impl TlsStarter {
    /// A server-side TLS connection whose first ciphertext is `prefix`
    /// (what was read after STARTTLS), before its first handshake step.
    pub fn start(self, prefix: Vec<u8>) -> Result<TlsConn, TlsFailure> {
        let setup = |e: ErrorStack| TlsFailure {
            kind: TlsFailureKind::Other,
            detail: format!("TLS setup: {e}"),
        };
        let ssl = Ssl::new(self.0.context()).map_err(setup)?;
        let io = MemIo {
            rx: prefix,
            ..MemIo::default()
        };
        Ok(TlsConn {
            ssl: SslStream::new(ssl, io).map_err(setup)?,
        })
    }
}

/// How a handshake step ended.
#[derive(Debug)]
pub enum HandshakeStep {
    /// The handshake is complete; the names of the client certificate, if
    /// the client sent one.
    Done(Option<Vec<String>>),
    /// OpenSSL needs more bytes from the client.
    NeedInput,
    /// The handshake failed (an alert for the client may be in the output).
    Failed(TlsFailure),
}

/// Why reading an established TLS connection ended.
#[derive(Debug)]
pub enum TlsReadEnd {
    /// The client sent close_notify.
    Closed,
    /// A record could not be read (corrupt, or a protocol error): OpenSSL's
    /// error.
    Failed(openssl::ssl::Error),
}

/// The memory transport under OpenSSL: ciphertext read from the socket
/// waiting to be consumed, and ciphertext OpenSSL wrote for the socket.
/// Both are freed as soon as they are empty.
#[derive(Debug, Default)]
struct MemIo {
    rx: Vec<u8>,
    rx_pos: usize,
    tx: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.rx[self.rx_pos..];
        if left.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.rx_pos += n;
        if self.rx_pos == self.rx.len() {
            self.rx = Vec::new();
            self.rx_pos = 0;
        }
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection's TLS, driven through memory (see the module
/// documentation). Moves between threads: a handshake step may run on a
/// handshake worker.
pub struct TlsConn {
    ssl: SslStream<MemIo>,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").finish_non_exhaustive()
    }
}

impl TlsConn {
    /// Adds ciphertext read from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        let io = self.ssl.get_mut();
        if io.rx_pos > 0 {
            io.rx.drain(..io.rx_pos);
            io.rx_pos = 0;
        }
        io.rx.extend_from_slice(data);
    }

    /// Runs the handshake as far as the bytes fed so far allow (the CPU-heavy
    /// part of TLS: run it on a handshake worker).
    pub fn handshake(&mut self) -> HandshakeStep {
        match self.ssl.accept() {
            Ok(()) => HandshakeStep::Done(
                self.ssl
                    .ssl()
                    .peer_certificate()
                    .and_then(|c| c.to_der().ok())
                    .map(|der| qnetd_certs::names(&der)),
            ),
            Err(e) if e.code() == ErrorCode::WANT_READ => HandshakeStep::NeedInput,
            Err(e) => HandshakeStep::Failed(describe_handshake_error(&e, self.ssl.ssl())),
        }
    }

    /// Whether ciphertext waits to be sent.
    pub fn has_output(&self) -> bool {
        !self.ssl.get_ref().tx.is_empty()
    }

    /// Appends the ciphertext to send to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        let tx = &mut self.ssl.get_mut().tx;
        if out.is_empty() {
            std::mem::swap(out, tx);
        } else {
            out.append(tx);
            *tx = Vec::new();
        }
    }

    /// Decrypts every complete record fed so far, handing the plaintext to
    /// `sink` (`buf` is scratch space for one record). Records the client
    /// sends after the handshake that need an answer (a key update) leave
    /// it in the output.
    pub fn read_plain(
        &mut self,
        buf: &mut [u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), TlsReadEnd> {
        loop {
            match self.ssl.ssl_read(buf) {
                Ok(0) => return Err(TlsReadEnd::Closed),
                Ok(n) => sink(&buf[..n]),
                Err(e) => {
                    return match e.code() {
                        ErrorCode::WANT_READ => Ok(()),
                        ErrorCode::ZERO_RETURN => Err(TlsReadEnd::Closed),
                        _ => Err(TlsReadEnd::Failed(e)),
                    }
                }
            }
        }
    }

    /// Encrypts `data` into the output.
    pub fn write_plain(&mut self, mut data: &[u8]) -> Result<(), openssl::ssl::Error> {
        while !data.is_empty() {
            let n = self.ssl.ssl_write(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Puts a close_notify alert into the output (best effort).
    pub fn close_notify(&mut self) {
        let _ = self.ssl.shutdown();
    }
}

#[cfg(test)]
mod tests;

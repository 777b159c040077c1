//! TLS for STARTTLS: the server's TLS configuration built from the PEM files
//! of the TLS directory, its reload on SIGHUP, the handshake with the names
//! of the client certificate, and the stream wrapper that hands the bytes
//! read ahead of the handshake to the TLS layer.
//!
//! The server side uses OpenSSL. rustls 0.23 refuses a ClientHello whose SNI
//! is not a valid DNS name, and corosync-qdevice always sends the SNI
//! "Qnetd Server" (`SSL_SetURL` with `net_nss_qnetd_cn`), so no real client
//! could connect; the rustls option that accepts it exists only in a
//! pre-release. Client certificates are verified against our CA only; the
//! session then matches their names with the cluster name (qnetd-core's
//! `session`), as the reference does with NSS.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslSessionCacheMode, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;

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

/// A TLS stream after a completed handshake.
pub type TlsStream<S> = SslStream<Rewind<S>>;

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

    /// Runs the server handshake on `stream`, whose first bytes are
    /// `prefix` (read before STARTTLS was handled). Returns the TLS stream
    /// and the names of the client certificate, or why it failed.
    pub async fn accept<S>(
        &self,
        prefix: Vec<u8>,
        stream: S,
    ) -> Result<(TlsStream<S>, Option<Vec<String>>), TlsFailure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let setup = |e: ErrorStack| TlsFailure {
            kind: TlsFailureKind::Other,
            detail: format!("TLS setup: {e}"),
        };
        let acceptor = self.current();
        let ssl = Ssl::new(acceptor.context()).map_err(setup)?;
        let mut tls = SslStream::new(ssl, Rewind::new(prefix, stream)).map_err(setup)?;
        if let Err(e) = Pin::new(&mut tls).accept().await {
            return Err(describe_handshake_error(&e, tls.ssl()));
        }
        let names = tls
            .ssl()
            .peer_certificate()
            .and_then(|c| c.to_der().ok())
            .map(|der| qnetd_certs::names(&der));
        Ok((tls, names))
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
    let text = e.to_string();
    let detail = e.ssl_error().map(|s| s.to_string()).unwrap_or_default();
    let all = format!("{text} {detail}");
    let kind = if all.contains("peer did not return a certificate") {
        TlsFailureKind::NoCertificate
    } else if all.contains("wrong version number")
        || all.contains("http request")
        || all.contains("unknown protocol")
    {
        TlsFailureKind::NotTls
    } else if all.contains("no shared cipher") || all.contains("unsupported protocol") {
        TlsFailureKind::NoCommonVersion
    } else if e.io_error().is_some() || detail.is_empty() && text.contains("syscall") {
        TlsFailureKind::ClientClosed
    } else {
        TlsFailureKind::Other
    };
    TlsFailure {
        kind,
        detail: if detail.is_empty() {
            text
        } else {
            format!("{text}: {detail}")
        },
    }
}

/// A stream that first yields bytes read ahead of the TLS handshake, then
/// reads from the socket; writes go straight to the socket.
pub struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn rewind_yields_the_prefix_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"world")
            .await
            .unwrap();
        drop(a);
        let mut r = Rewind::new(b"hello ".to_vec(), b);
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }
}

//! TLS for STARTTLS: the rustls server configuration built from the PEM files
//! of the TLS directory, its reload on SIGHUP, the names of a client
//! certificate, and the stream wrapper that hands the bytes read ahead of the
//! handshake to rustls.
//!
//! Client certificates are verified against our CA only (webpki); the
//! session then matches their names with the cluster name (see
//! `session.rs`), as the reference does with NSS.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;

use qnetd_certs::Pki;

/// Why TLS could not be set up, with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError(pub String);

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// The server's TLS state: the current acceptor, replaced on reload.
pub struct TlsContext {
    dir: PathBuf,
    client_cert_required: bool,
    acceptor: RwLock<TlsAcceptor>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| {
        TlsSetupError(format!(
            "cannot read {}: {e} (create the TLS files with `qnetd certs init --dir {}`, or start with -s off)",
            path.display(),
            path.parent().map(|p| p.display().to_string()).unwrap_or_default()
        ))
    })
}

fn certs_from(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let data = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsSetupError(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError(format!(
            "{}: no certificate found (expected PEM)",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds the rustls configuration from the TLS directory.
fn build_config(dir: &Path, client_cert_required: bool) -> Result<ServerConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs_from(&dir.join(Pki::SERVER_CERT))?;
    let key_path = dir.join(Pki::SERVER_KEY);
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?).map_err(|e| {
        TlsSetupError(format!(
            "{}: not a PEM private key: {e}",
            key_path.display()
        ))
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(format!("TLS setup: {e}")))?;
    let builder = if client_cert_required {
        let mut roots = RootCertStore::empty();
        let ca_path = dir.join(Pki::CA_CERT);
        for ca in certs_from(&ca_path)? {
            roots.add(ca).map_err(|e| {
                TlsSetupError(format!(
                    "{}: unusable CA certificate: {e}",
                    ca_path.display()
                ))
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsSetupError(format!("client certificate verifier: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        TlsSetupError(format!(
            "{} and {} do not form a usable certificate and key: {e}",
            dir.join(Pki::SERVER_CERT).display(),
            key_path.display()
        ))
    })
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
            pki.init(Default::default())
                .map_err(|e| TlsSetupError(e.to_string()))?;
            tracing::warn!(
                dir = %dir.display(),
                "no TLS certificates found: created a new CA and server certificate; give {} to the cluster nodes (corosync-qdevice-net-certutil -i -c FILE) and issue node certificates with `qnetd certs client` or `qnetd certs sign`",
                dir.join(Pki::CA_EXPORT).display()
            );
        }
        let config = build_config(dir, client_cert_required)?;
        Ok(TlsContext {
            dir: dir.to_path_buf(),
            client_cert_required,
            acceptor: RwLock::new(TlsAcceptor::from(Arc::new(config))),
        })
    }

    /// Rereads the TLS files. On failure the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        let config = build_config(&self.dir, self.client_cert_required)?;
        let mut a = self.acceptor.write().unwrap_or_else(|e| e.into_inner());
        *a = TlsAcceptor::from(Arc::new(config));
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

/// The names a client certificate speaks for (DNS SANs, else the CNs).
pub fn peer_names(cert: &CertificateDer<'_>) -> Vec<String> {
    qnetd_certs::names(cert.as_ref())
}

/// A reason for a failed handshake that an operator can act on.
pub fn describe_handshake_error(e: &io::Error) -> String {
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
        " (the client certificate was not issued by this server's CA)"
    } else if text.contains("NoCertificatesPresented") || text.contains("no certificates presented")
    {
        " (the client sent no certificate; -c on requires one: import the cluster certificate on the node)"
    } else if text.contains("Expired") || text.contains("expired") {
        " (the client certificate has expired)"
    } else if e.kind() == io::ErrorKind::InvalidData {
        " (not a TLS handshake, or a TLS version or cipher mismatch)"
    } else {
        ""
    };
    format!("{text}{hint}")
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

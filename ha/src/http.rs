//! A minimal HTTP/1.1 client for etcd's gRPC gateway: POST of a JSON body
//! over TCP or TLS (OpenSSL, the TLS stack the server already links),
//! response by Content-Length or chunked, one idle connection kept per
//! endpoint. Every call is bounded by the caller's timeout.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::error::{HaError, Result};

/// Largest response body accepted (the vote store pages its reads).
pub const MAX_BODY: usize = 64 << 20;
const MAX_HEAD: usize = 64 << 10;

/// TLS settings for the etcd endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) that signed etcd's server certificates (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM), when etcd requires them.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// One parsed endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// As configured, for messages.
    pub text: String,
}

impl Endpoint {
    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (IPv6 in brackets).
    pub fn parse(s: &str) -> Result<Endpoint> {
        let bad = |reason: &str| HaError::InvalidEndpoint {
            endpoint: s.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("no http:// or https:// scheme"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("a path is not allowed"));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, p) = r.split_once("]:").ok_or_else(|| bad("missing port"))?;
            (h.to_string(), p)
        } else {
            let (h, p) = rest.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
            (h.to_string(), p)
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = port.parse::<u16>().map_err(|_| bad("bad port"))?;
        Ok(Endpoint {
            tls,
            host,
            port,
            text: s.to_string(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Conn = BufReader<Box<dyn Stream>>;

/// A connection factory and pool for one endpoint.
pub struct Transport {
    pub endpoint: Endpoint,
    tls: Option<Arc<SslConnector>>,
    idle: Mutex<Option<Conn>>,
}

fn tls_file_err(path: &Path, e: impl std::fmt::Display) -> HaError {
    HaError::TlsFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Builds the OpenSSL connector for the configured files.
pub fn connector(files: &TlsFiles) -> Result<Arc<SslConnector>> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| HaError::TlsFile {
        path: PathBuf::new(),
        reason: format!("OpenSSL initialisation failed: {e}"),
    })?;
    if let Some(ca) = &files.ca {
        std::fs::metadata(ca).map_err(|e| tls_file_err(ca, e))?;
        b.set_ca_file(ca).map_err(|e| tls_file_err(ca, e))?;
    }
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            std::fs::metadata(cert).map_err(|e| tls_file_err(cert, e))?;
            std::fs::metadata(key).map_err(|e| tls_file_err(key, e))?;
            b.set_certificate_chain_file(cert)
                .map_err(|e| tls_file_err(cert, e))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| tls_file_err(key, e))?;
            b.check_private_key().map_err(|e| {
                tls_file_err(key, format!("key does not match the certificate: {e}"))
            })?;
        }
        (None, None) => {}
        (Some(p), None) | (None, Some(p)) => {
            return Err(tls_file_err(
                p,
                "a client certificate needs both tls_cert and tls_key",
            ))
        }
    }
    b.set_verify(SslVerifyMode::PEER);
    Ok(Arc::new(b.build()))
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Transport {
    pub fn new(endpoint: Endpoint, tls: Option<Arc<SslConnector>>) -> Transport {
        Transport {
            endpoint,
            tls,
            idle: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Conn> {
        let ep = &self.endpoint;
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|source| HaError::Connect {
                endpoint: ep.text.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        if !ep.tls {
            return Ok(BufReader::new(Box::new(tcp)));
        }
        let hs = |reason: String| HaError::TlsHandshake {
            endpoint: ep.text.clone(),
            reason,
        };
        let connector = self
            .tls
            .as_ref()
            .ok_or_else(|| hs("no TLS configuration".into()))?;
        let ssl = connector
            .configure()
            .and_then(|c| c.into_ssl(&ep.host))
            .map_err(|e| hs(e.to_string()))?;
        let mut s = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| hs(e.to_string()))?;
        Pin::new(&mut s)
            .connect()
            .await
            .map_err(|e| hs(e.to_string()))?;
        Ok(BufReader::new(Box::new(s)))
    }

    /// POSTs `body` to `path` and returns the whole response, within
    /// `timeout` (connection included).
    pub async fn post(
        &self,
        op: &'static str,
        path: &str,
        body: &[u8],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Response> {
        match tokio::time::timeout(timeout, self.post_inner(op, path, body, token)).await {
            Ok(r) => r,
            Err(_) => Err(HaError::Timeout {
                endpoint: self.endpoint.text.clone(),
                op,
                after: timeout,
            }),
        }
    }

    async fn post_inner(
        &self,
        op: &'static str,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<Response> {
        // an idle connection may have been closed by etcd: one retry on a
        // fresh connection when the reused one fails before any answer
        let reused = self.idle.lock().await.take();
        if let Some(mut conn) = reused {
            if let Ok((resp, keep)) = self.exchange(&mut conn, op, path, body, token).await {
                if keep {
                    *self.idle.lock().await = Some(conn);
                }
                return Ok(resp);
            }
        }
        let mut conn = self.connect().await?;
        let (resp, keep) = self.exchange(&mut conn, op, path, body, token).await?;
        if keep {
            *self.idle.lock().await = Some(conn);
        }
        Ok(resp)
    }

    async fn exchange(
        &self,
        conn: &mut Conn,
        op: &'static str,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<(Response, bool)> {
        let io = |source| HaError::Io {
            endpoint: self.endpoint.text.clone(),
            op,
            source,
        };
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.endpoint.host_header(),
            body.len()
        );
        if let Some(t) = token {
            head.push_str("Authorization: ");
            head.push_str(t);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let w = conn.get_mut();
        w.write_all(head.as_bytes()).await.map_err(io)?;
        w.write_all(body).await.map_err(io)?;
        w.flush().await.map_err(io)?;
        read_response(conn, &self.endpoint.text, op).await
    }
}

fn proto_err(endpoint: &str, op: &'static str, reason: impl Into<String>) -> HaError {
    HaError::Protocol {
        endpoint: endpoint.to_string(),
        op,
        reason: reason.into(),
    }
}

async fn read_line<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    endpoint: &str,
    op: &'static str,
    budget: &mut usize,
) -> Result<String> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(*budget as u64)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|source| HaError::Io {
            endpoint: endpoint.to_string(),
            op,
            source,
        })?;
    if n == 0 {
        return Err(HaError::Io {
            endpoint: endpoint.to_string(),
            op,
            source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"),
        });
    }
    if !buf.ends_with(b"\n") {
        return Err(proto_err(endpoint, op, "header line too long"));
    }
    *budget -= n;
    while buf.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| proto_err(endpoint, op, "header is not UTF-8"))
}

/// Reads one HTTP/1.1 response; returns it and whether the connection may
/// be reused.
async fn read_response<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    endpoint: &str,
    op: &'static str,
) -> Result<(Response, bool)> {
    let mut budget = MAX_HEAD;
    let status_line = read_line(r, endpoint, op, &mut budget).await?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| proto_err(endpoint, op, format!("bad status line {status_line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut keep = version == "HTTP/1.1";
    loop {
        let line = read_line(r, endpoint, op, &mut budget).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(proto_err(endpoint, op, format!("bad header {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse()
                        .map_err(|_| proto_err(endpoint, op, "bad Content-Length"))?,
                )
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let io = |source| HaError::Io {
        endpoint: endpoint.to_string(),
        op,
        source,
    };
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut b = 1024;
            let size_line = read_line(r, endpoint, op, &mut b).await?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| proto_err(endpoint, op, "bad chunk size"))?;
            if size == 0 {
                // trailers until the empty line
                loop {
                    let mut b = MAX_HEAD;
                    if read_line(r, endpoint, op, &mut b).await?.is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(proto_err(endpoint, op, "response too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await.map_err(io)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).await.map_err(io)?;
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(proto_err(endpoint, op, "response too large"));
        }
        body.resize(n, 0);
        r.read_exact(&mut body).await.map_err(io)?;
    } else {
        (&mut *r)
            .take(MAX_BODY as u64)
            .read_to_end(&mut body)
            .await
            .map_err(io)?;
        keep = false;
    }
    Ok((Response { status, body }, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("https://10.0.0.1:2379").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("10.0.0.1", 2379));
        let e = Endpoint::parse("http://[::1]:2379/").unwrap();
        assert!(!e.tls);
        assert_eq!(e.host, "::1");
        assert_eq!(e.host_header(), "[::1]:2379");
        for bad in [
            "10.0.0.1:2379",
            "http://host",
            "http://:1",
            "http://h:x",
            "http://h:1/v3",
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(matches!(err, HaError::InvalidEndpoint { .. }), "{bad}");
            assert!(err.to_string().contains("https://HOST:PORT"));
        }
    }

    async fn parse(raw: &[u8]) -> Result<(Response, bool)> {
        let mut r = BufReader::new(raw);
        read_response(&mut r, "http://e:1", "test").await
    }

    #[tokio::test]
    async fn responses_parse() {
        let (r, keep) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice(), keep), (200, &b"{}"[..], true));
        let (r, _) = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(r.body, b"{\"a\":1}");
        let (r, keep) = parse(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nnope")
            .await
            .unwrap();
        assert_eq!((r.status, keep), (404, false));
        assert_eq!(r.body, b"nope");
    }

    #[tokio::test]
    async fn bad_responses_are_protocol_errors() {
        for raw in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            let e = parse(raw).await.unwrap_err();
            assert!(matches!(e, HaError::Protocol { .. }), "{e:?}");
        }
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap_err();
        assert!(matches!(e, HaError::Io { .. }));
    }
}

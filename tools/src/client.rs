//! A qdevice-net protocol client: what corosync-qdevice 3.0.x sends, driven
//! step by step. Used by the integration tests, the differential tests and
//! the load generator; not by the server.
//!
//! Every wait is bounded by the client's timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use qnetd_core::framing::{Frame, FrameReader};
use qnetd_core::wire::{
    self, AlgorithmKind, Heuristics, Init, InitReply, Message, MsgType, NodeInfo, NodeList,
    NodeListReply, NodeListType, Preinit, RingId, SeqOnly, SetOption, TieBreaker, VoteInfo,
};

/// A client-side failure.
#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    /// Nothing arrived in time.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// The server sent something undecodable.
    Decode(wire::DecodeError),
    /// The server sent something other than what was expected.
    Unexpected(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Timeout => f.write_str("timed out waiting for the server"),
            ClientError::Closed => f.write_str("connection closed by the server"),
            ClientError::Decode(e) => write!(f, "undecodable message from the server: {e}"),
            ClientError::Unexpected(s) => write!(f, "unexpected message: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// What a node reports in INIT.
#[derive(Clone, Debug)]
pub struct NodeParams {
    pub cluster: String,
    pub node_id: u32,
    pub algorithm: AlgorithmKind,
    pub tie_breaker: TieBreaker,
    pub heartbeat_ms: u32,
    pub ring: RingId,
}

/// The byte stream under a client: TCP, or TLS after STARTTLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One protocol connection.
pub struct Client {
    stream: Box<dyn Io>,
    frames: FrameReader,
    /// The client's message counter (`last_msg_seq_num` of qdevice).
    pub seq: u32,
    pub timeout: Duration,
    /// The ring id last sent (INIT or membership).
    pub ring: RingId,
    /// This end's address as the server sees it (`ip:port`).
    local: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)??;
        Self::from_tcp(stream)
    }

    /// Connects from a chosen local address (e.g. one of 127.0.0.0/8, to
    /// look like another host to the server's per-address limit).
    pub async fn connect_from(addr: SocketAddr, source: IpAddr) -> Result<Client, ClientError> {
        let stream = tcp_connect(addr, Some(source), Duration::from_secs(5)).await?;
        Self::from_tcp(stream)
    }

    /// A client on an already connected socket (e.g. one bound to a chosen
    /// source address, as the load generator does).
    pub fn from_tcp(stream: TcpStream) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        let local = stream
            .local_addr()
            .map(|a| format!("{}:{}", a.ip(), a.port()))
            .unwrap_or_default();
        Ok(Client {
            local,
            stream: Box::new(stream),
            frames: FrameReader::new(1 << 24),
            seq: 1,
            timeout: Duration::from_secs(5),
            ring: RingId::default(),
        })
    }

    /// The byte stream (TCP or TLS) and the frame reader with any bytes
    /// already buffered, for a caller that drives the connection itself
    /// after the handshake (the load generator).
    pub fn into_parts(self) -> (Box<dyn Io>, FrameReader) {
        (self.stream, self.frames)
    }

    /// This end's address (`ip:port`), as the server prints it.
    pub fn local_addr(&self) -> String {
        self.local.clone()
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    pub async fn send(&mut self, msg: &Message) -> Result<(), ClientError> {
        self.send_raw(&msg.to_bytes()).await
    }

    /// The next whole message, raw (header and body).
    pub async fn recv_raw(&mut self) -> Result<Vec<u8>, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(frame) = self.frames.next_frame() {
                return match frame {
                    Frame::Message(raw) => Ok(raw),
                    Frame::Skipped { msg_type, .. } => Err(ClientError::Unexpected(format!(
                        "server sent a message of unknown type {msg_type}"
                    ))),
                };
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.frames.push(&buf[..n]);
        }
    }

    /// The next message, decoded.
    pub async fn recv(&mut self) -> Result<Message, ClientError> {
        let raw = self.recv_raw().await?;
        let t = u16::from_be_bytes([raw[0], raw[1]]);
        let t = MsgType::from_u16(t)
            .ok_or_else(|| ClientError::Unexpected(format!("unknown type {t}")))?;
        wire::decode(t, &raw[wire::HEADER_LEN..]).map_err(ClientError::Decode)
    }

    /// Waits until the server closes the connection, discarding whatever
    /// arrives before (messages, or a TLS alert).
    pub async fn expect_closed(&mut self) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Asserts that nothing arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) -> Result<(), ClientError> {
        let saved = self.timeout;
        self.timeout = d;
        let r = self.recv().await;
        self.timeout = saved;
        match r {
            Err(ClientError::Timeout) => Ok(()),
            Ok(m) => Err(ClientError::Unexpected(format!(
                "expected silence, got {m:?}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// The next sequence number (pre-incremented, as qdevice does after
    /// PREINIT).
    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// PREINIT then INIT, as qdevice does without TLS. Returns the INIT_REPLY.
    pub async fn handshake(&mut self, p: &NodeParams) -> Result<InitReply, ClientError> {
        let seq = self.seq;
        self.send(&Message::Preinit(Preinit {
            seq: Some(seq),
            cluster_name: Some(p.cluster.as_bytes().to_vec()),
        }))
        .await?;
        match self.recv().await? {
            Message::PreinitReply(_) => {}
            m => {
                return Err(ClientError::Unexpected(format!(
                    "{m:?} instead of PREINIT_REPLY"
                )))
            }
        }
        let seq = self.next_seq();
        self.ring = p.ring;
        self.send(&Message::Init(init_message(seq, p))).await?;
        match self.recv().await? {
            Message::InitReply(r) => Ok(r),
            m => Err(ClientError::Unexpected(format!(
                "{m:?} instead of INIT_REPLY"
            ))),
        }
    }

    /// Sends STARTTLS and runs the TLS client handshake on the same socket,
    /// as qdevice does after a PREINIT_REPLY that offers TLS.
    pub async fn start_tls(&mut self, config: Arc<ClientConfig>) -> Result<(), ClientError> {
        let seq = self.next_seq();
        self.send(&Message::StartTls(wire::StartTls { seq: Some(seq) }))
            .await?;
        self.stream.flush().await?;
        let plain = std::mem::replace(&mut self.stream, Box::new(empty::empty_duplex()));
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = ServerName::try_from("qnetd-server.invalid")
            .map_err(|e| ClientError::Unexpected(e.to_string()))?;
        let tls = timeout(self.timeout, connector.connect(name, plain))
            .await
            .map_err(|_| ClientError::Timeout)??;
        self.stream = Box::new(tls);
        Ok(())
    }

    /// PREINIT, STARTTLS and INIT, as qdevice does with TLS. Returns the
    /// INIT_REPLY.
    pub async fn handshake_tls(
        &mut self,
        p: &NodeParams,
        config: Arc<ClientConfig>,
    ) -> Result<InitReply, ClientError> {
        let seq = self.seq;
        self.send(&Message::Preinit(Preinit {
            seq: Some(seq),
            cluster_name: Some(p.cluster.as_bytes().to_vec()),
        }))
        .await?;
        match self.recv().await? {
            Message::PreinitReply(r)
                if r.tls_supported != Some(wire::TlsSupported::Unsupported) => {}
            m => {
                return Err(ClientError::Unexpected(format!(
                    "{m:?} instead of a PREINIT_REPLY offering TLS"
                )))
            }
        }
        self.start_tls(config).await?;
        let seq = self.next_seq();
        self.ring = p.ring;
        self.send(&Message::Init(init_message(seq, p))).await?;
        match self.recv().await? {
            Message::InitReply(r) => Ok(r),
            m => Err(ClientError::Unexpected(format!(
                "{m:?} instead of INIT_REPLY"
            ))),
        }
    }

    /// SET_OPTION with the keep-active-partition tie-breaker.
    pub async fn send_kap(&mut self, kap: bool) -> Result<u32, ClientError> {
        let seq = self.next_seq();
        self.send(&Message::SetOption(SetOption {
            seq: Some(seq),
            heartbeat_interval: None,
            kap: Some(kap),
        }))
        .await?;
        Ok(seq)
    }

    /// A config node list (initial or changed).
    pub async fn send_config(&mut self, nodes: &[u32], initial: bool) -> Result<u32, ClientError> {
        let seq = self.next_seq();
        self.send(&Message::NodeList(NodeList {
            seq: Some(seq),
            list_type: Some(if initial {
                NodeListType::InitialConfig
            } else {
                NodeListType::ChangedConfig
            }),
            nodes: nodes.iter().map(|n| NodeInfo::new(*n)).collect(),
            ..Default::default()
        }))
        .await?;
        Ok(seq)
    }

    /// A membership list with its ring id and heuristics.
    pub async fn send_membership(
        &mut self,
        ring: RingId,
        nodes: &[u32],
        heuristics: Heuristics,
    ) -> Result<u32, ClientError> {
        let seq = self.next_seq();
        self.ring = ring;
        self.send(&Message::NodeList(NodeList {
            seq: Some(seq),
            list_type: Some(NodeListType::Membership),
            ring_id: Some(ring),
            nodes: nodes.iter().map(|n| NodeInfo::new(*n)).collect(),
            heuristics: (heuristics != Heuristics::Undefined).then_some(heuristics),
            ..Default::default()
        }))
        .await?;
        Ok(seq)
    }

    /// A quorum list.
    pub async fn send_quorum(&mut self, quorate: bool, nodes: &[u32]) -> Result<u32, ClientError> {
        let seq = self.next_seq();
        self.send(&Message::NodeList(NodeList {
            seq: Some(seq),
            list_type: Some(NodeListType::Quorum),
            quorate: Some(quorate),
            nodes: nodes
                .iter()
                .map(|n| NodeInfo {
                    state: Some(wire::NodeState::Member),
                    ..NodeInfo::new(*n)
                })
                .collect(),
            ..Default::default()
        }))
        .await?;
        Ok(seq)
    }

    /// Acknowledges a VOTE_INFO.
    pub async fn reply_vote_info(&mut self, seq: u32) -> Result<(), ClientError> {
        self.send(&Message::VoteInfoReply(SeqOnly { seq: Some(seq) }))
            .await
    }

    /// Receives the next message, which must be a NODE_LIST_REPLY; VOTE_INFOs
    /// before it are acknowledged and returned too.
    pub async fn recv_node_list_reply(
        &mut self,
    ) -> Result<(Vec<VoteInfo>, NodeListReply), ClientError> {
        let mut infos = Vec::new();
        loop {
            match self.recv().await? {
                Message::VoteInfo(v) => {
                    if let Some(seq) = v.seq {
                        self.reply_vote_info(seq).await?;
                    }
                    infos.push(v);
                }
                Message::NodeListReply(r) => return Ok((infos, r)),
                m => {
                    return Err(ClientError::Unexpected(format!(
                        "{m:?} instead of NODE_LIST_REPLY"
                    )))
                }
            }
        }
    }

    /// Waits for a VOTE_INFO and acknowledges it.
    pub async fn recv_vote_info(&mut self) -> Result<VoteInfo, ClientError> {
        match self.recv().await? {
            Message::VoteInfo(v) => {
                if let Some(seq) = v.seq {
                    self.reply_vote_info(seq).await?;
                }
                Ok(v)
            }
            m => Err(ClientError::Unexpected(format!(
                "{m:?} instead of VOTE_INFO"
            ))),
        }
    }
}

/// A TCP connection to `addr`, from `source` (port chosen by the system)
/// if given, bounded by `limit`.
pub async fn tcp_connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    limit: Duration,
) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(src) = source {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    timeout(limit, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// The INIT a 3.0.x client sends.
pub fn init_message(seq: u32, p: &NodeParams) -> Init {
    Init {
        seq: Some(seq),
        supported_messages: Some(MsgType::ALL.iter().map(|t| *t as u16).collect()),
        supported_options: Some((0..wire::opt::COUNT).collect()),
        node_id: Some(p.node_id),
        decision_algorithm: Some(p.algorithm as u16),
        heartbeat_interval: Some(p.heartbeat_ms),
        tie_breaker: Some(p.tie_breaker),
        ring_id: Some(p.ring),
    }
}

/// A placeholder stream, used while the real one is being wrapped in TLS.
mod empty {
    pub fn empty_duplex() -> tokio::io::DuplexStream {
        tokio::io::duplex(1).0
    }
}

/// The name corosync-qdevice expects in the server certificate's CN
/// (`net_nss_qnetd_cn`).
pub const QNETD_SERVER_CN: &str = "Qnetd Server";

/// Verifies the server certificate as corosync-qdevice's NSS client does:
/// it must chain to our CA and name "Qnetd Server" (CN; this is not a DNS
/// name, so webpki's host-name check cannot be used).
#[derive(Debug)]
struct QnetdServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for QnetdServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let names = qnetd_certs::names(end_entity.as_ref());
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(QNETD_SERVER_CN))
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate names {names:?}, expected {QNETD_SERVER_CN:?}"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS client configuration that trusts the CA in `ca_pem` and, if given,
/// presents `client` (certificate PEM, key PEM) when the server asks.
pub fn tls_client_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, ClientError> {
    let bad = |what: &str, e: String| ClientError::Unexpected(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|e| bad("CA PEM", e.to_string()))?;
        roots.add(ca).map_err(|e| bad("CA", e.to_string()))?;
    }
    let verifier = Arc::new(QnetdServerVerifier {
        roots: Arc::new(roots),
        provider: Arc::clone(&provider),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("client certificate PEM", e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| bad("client key PEM", e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

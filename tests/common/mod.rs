//! Shared helpers of the integration tests: start the real server on
//! 127.0.0.1:0, capture its log, and build typical clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use qnetd_core::config::Settings;
use qnetd_core::wire::{AlgorithmKind, ErrorCode, Heuristics, RingId, TieBreaker, Vote};
use qnetd_server::{Server, ServerCtx, Shutdown};
use qnetd_tools::client::{Client, NodeParams};
use tokio::task::JoinHandle;

/// Log lines of every server started by this test binary.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_buffer() -> &'static LogBuffer {
    static LOG: OnceLock<LogBuffer> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = LogBuffer::default();
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
}

/// Whether a log line contains every one of `parts`.
pub fn log_has(parts: &[&str]) -> bool {
    let text = String::from_utf8_lossy(&log_buffer().0.lock().unwrap()).into_owned();
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// Waits (bounded) for a log line containing every one of `parts`.
pub async fn wait_log(parts: &[&str]) {
    for _ in 0..100 {
        if log_has(parts) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = String::from_utf8_lossy(&log_buffer().0.lock().unwrap()).into_owned();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    panic!(
        "no log line contains all of {parts:?}; last lines:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// A fresh admin socket path for one test server.
pub fn admin_socket_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "qnetd-test-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ctx: Arc<ServerCtx>,
    pub shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A plain-TCP server (`-s off`).
    pub async fn start() -> TestServer {
        Self::start_with(Settings {
            tls: qnetd_core::config::TlsMode::Off,
            ..Settings::default()
        })
        .await
    }

    pub async fn start_with(mut settings: Settings) -> TestServer {
        log_buffer();
        settings.listen_address = Some("127.0.0.1".into());
        settings.port = 0;
        settings.local_socket_file = admin_socket_path();
        settings.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        // Never the system's state directory: a test that wants a snapshot
        // names its own directory.
        if settings.state_dir.as_deref()
            == Some(std::path::Path::new(qnetd_core::config::DEFAULT_STATE_DIR))
        {
            settings.state_dir = None;
        }
        let server = Server::bind(settings).await.expect("bind");
        let addr = server.local_addr().unwrap();
        let ctx = server.ctx();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TestServer {
            addr,
            ctx,
            shutdown,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("server stops within 10 s")
                .unwrap();
        }
    }
}

pub fn params(cluster: &str, node_id: u32, tb: TieBreaker) -> NodeParams {
    NodeParams {
        cluster: cluster.into(),
        node_id,
        algorithm: AlgorithmKind::Ffsplit,
        tie_breaker: tb,
        heartbeat_ms: 8000,
        ring: RingId::new(1, 4),
    }
}

/// Connects a client and completes PREINIT + INIT successfully.
pub async fn connect(addr: SocketAddr, p: &NodeParams) -> Client {
    let mut c = Client::connect(addr).await.unwrap();
    let r = c.handshake(p).await.unwrap();
    assert_eq!(
        r.error_code,
        Some(ErrorCode::NO_ERROR),
        "INIT of node {}",
        p.node_id
    );
    c
}

/// What a node currently holds, from the votes it received and applied.
pub struct Node {
    pub c: Client,
    pub id: u32,
    pub vote: Option<Vote>,
}

impl Node {
    /// Applies a vote the way qdevice does: only if its ring is current.
    pub fn apply(&mut self, vote: Option<Vote>, ring: Option<RingId>) {
        if ring == Some(self.c.ring) {
            match vote {
                Some(Vote::NoChange) | None => {}
                Some(v) => self.vote = Some(v),
            }
        }
    }

    /// Sends a membership list and applies the VOTE_INFOs and reply.
    pub async fn membership(&mut self, ring: RingId, members: &[u32], h: Heuristics) {
        self.c.send_membership(ring, members, h).await.unwrap();
        let (infos, reply) = self.c.recv_node_list_reply().await.unwrap();
        for i in infos {
            self.apply(i.vote, i.ring_id);
        }
        self.apply(reply.vote, reply.ring_id);
    }

    /// Receives and applies one VOTE_INFO.
    pub async fn vote_info(&mut self) -> Vote {
        let v = self.c.recv_vote_info().await.unwrap();
        self.apply(v.vote, v.ring_id);
        v.vote.unwrap()
    }
}

/// Starts an ffsplit node the way qdevice does: INIT, KAP option, config,
/// membership and quorum lists.
pub async fn ffsplit_node(
    addr: SocketAddr,
    cluster: &str,
    id: u32,
    config: &[u32],
    ring: RingId,
    members: &[u32],
    tb: TieBreaker,
) -> Node {
    let mut p = params(cluster, id, tb);
    p.ring = ring;
    let mut c = connect(addr, &p).await;
    c.send_kap(true).await.unwrap();
    match c.recv().await.unwrap() {
        qnetd_core::wire::Message::SetOptionReply(r) => assert_eq!(r.kap, Some(true)),
        m => panic!("expected SET_OPTION_REPLY, got {m:?}"),
    }
    c.send_config(config, true).await.unwrap();
    let (infos, r) = c.recv_node_list_reply().await.unwrap();
    assert!(infos.is_empty(), "no VOTE_INFO before the membership list");
    assert_eq!(r.vote, Some(Vote::AskLater));
    let mut n = Node { c, id, vote: None };
    n.membership(ring, members, Heuristics::Undefined).await;
    n.c.send_quorum(true, members).await.unwrap();
    let (infos, r) = n.c.recv_node_list_reply().await.unwrap();
    for i in infos {
        n.apply(i.vote, i.ring_id);
    }
    assert_eq!(r.vote, Some(Vote::NoChange));
    n
}

/// Receives the next message, which must be a SERVER_ERROR with `code`;
/// returns its sequence number.
pub async fn expect_error(c: &mut Client, code: ErrorCode) -> Option<u32> {
    match c.recv().await.unwrap() {
        qnetd_core::wire::Message::ServerError(e) => {
            assert_eq!(e.error_code, Some(code), "error code");
            e.seq
        }
        m => panic!("expected SERVER_ERROR {code}, got {m:?}"),
    }
}

/// A healthy 2-node ffsplit cluster holding ACK on both nodes.
pub async fn healthy_pair(addr: std::net::SocketAddr, name: &str) -> (Node, Node) {
    let ring = RingId::new(1, 8);
    let mut n1 = ffsplit_node(addr, name, 1, &[1, 2], ring, &[1, 2], TieBreaker::Lowest).await;
    assert_eq!(
        n1.vote,
        Some(Vote::Ack),
        "a lone node of a full membership gets ACK"
    );
    let n2 = ffsplit_node(addr, name, 2, &[1, 2], ring, &[1, 2], TieBreaker::Lowest).await;
    // Node 1 is re-voted when node 2's membership arrives.
    assert_eq!(n1.vote_info().await, Vote::Ack);
    assert_eq!(n2.vote, Some(Vote::Ack));
    (n1, n2)
}

/// The pair still holds its votes: no unsolicited message, echo answered.
pub async fn assert_unharmed(n: &mut Node) {
    n.c.expect_silence(Duration::from_millis(100))
        .await
        .unwrap();
    let seq = 77;
    n.c.send(&qnetd_core::wire::Message::EchoRequest(
        qnetd_core::wire::Echo { seq: Some(seq) },
    ))
    .await
    .unwrap();
    match n.c.recv().await.unwrap() {
        qnetd_core::wire::Message::EchoReply(e) => assert_eq!(e.seq, Some(seq)),
        m => panic!("expected ECHO_REPLY, got {m:?}"),
    }
    assert_eq!(n.vote, Some(Vote::Ack));
}

/// GET /metrics from the server's metrics listener.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
    out
}

/// Sends one request line to the admin socket and returns the whole reply.
pub async fn ask(path: &std::path::Path, line: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, line.as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out),
    )
    .await
    .unwrap()
    .unwrap();
    out
}

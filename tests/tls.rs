//! TLS integration tests: STARTTLS on the real server (127.0.0.1:0) with
//! certificates made by our own PKI, and each way a client can be refused.
//! A healthy TLS cluster runs next to every offender and must keep its votes.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use qnetd_certs::Pki;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_core::wire::{ErrorCode, Message, RingId, TieBreaker, TlsSupported, Vote};
use qnetd_tools::client::{tls_client_config, Client};

struct Tls {
    _dir: TempDir,
    dir: std::path::PathBuf,
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!(
        "qnetd-tls-test-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

fn pki(tag: &str) -> Tls {
    let t = temp_dir(tag);
    let dir = t.0.join("tls");
    Pki::new(&dir).init(Default::default()).unwrap();
    Tls { _dir: t, dir }
}

fn ca(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(Pki::CA_CERT)).unwrap()
}

/// A client configuration with a node certificate for `cluster`.
fn node_config(dir: &Path, cluster: &str) -> Arc<rustls::ClientConfig> {
    let b = Pki::new(dir).issue_client(cluster, 365).unwrap();
    tls_client_config(
        &ca(dir),
        Some((b.cert_pem.as_bytes(), b.key_pem.as_bytes())),
    )
    .unwrap()
}

async fn server(tls: &Tls, mode: TlsMode, client_cert: bool) -> TestServer {
    TestServer::start_with(Settings {
        tls: mode,
        client_cert_required: client_cert,
        tls_dir: tls.dir.clone(),
        ..Settings::default()
    })
    .await
}

/// A TLS node that completed INIT, config and membership.
async fn tls_node(
    srv: &TestServer,
    config: Arc<rustls::ClientConfig>,
    cluster: &str,
    id: u32,
) -> Node {
    let mut c = Client::connect(srv.addr).await.unwrap();
    let mut p = params(cluster, id, TieBreaker::Lowest);
    p.ring = RingId::new(1, 8);
    let r = c.handshake_tls(&p, config).await.unwrap();
    assert_eq!(r.error_code, Some(ErrorCode::NO_ERROR));
    c.send_config(&[1, 2], true).await.unwrap();
    let (_, r) = c.recv_node_list_reply().await.unwrap();
    assert_eq!(r.vote, Some(Vote::AskLater));
    let mut n = Node { c, id, vote: None };
    n.membership(
        RingId::new(1, 8),
        &[1, 2],
        qnetd_core::wire::Heuristics::Undefined,
    )
    .await;
    n
}

async fn healthy_tls_pair(srv: &TestServer, tls: &Tls, cluster: &str) -> (Node, Node) {
    let mut n1 = tls_node(srv, node_config(&tls.dir, cluster), cluster, 1).await;
    let n2 = tls_node(srv, node_config(&tls.dir, cluster), cluster, 2).await;
    assert_eq!(n1.vote_info().await, Vote::Ack);
    assert_eq!(n2.vote, Some(Vote::Ack));
    (n1, n2)
}

async fn assert_unharmed(n: &mut Node) {
    n.c.expect_silence(Duration::from_millis(100))
        .await
        .unwrap();
    n.c.send(&Message::EchoRequest(qnetd_core::wire::Echo {
        seq: Some(5),
    }))
    .await
    .unwrap();
    assert!(matches!(n.c.recv().await.unwrap(), Message::EchoReply(_)));
    assert_eq!(n.vote, Some(Vote::Ack));
}

#[tokio::test]
async fn tls_cluster_votes_and_splits() {
    let tls = pki("votes");
    let srv = server(&tls, TlsMode::On, true).await;
    let (mut n1, mut n2) = healthy_tls_pair(&srv, &tls, "tlsc").await;
    n1.membership(
        RingId::new(1, 12),
        &[1],
        qnetd_core::wire::Heuristics::Undefined,
    )
    .await;
    n2.membership(
        RingId::new(2, 12),
        &[2],
        qnetd_core::wire::Heuristics::Undefined,
    )
    .await;
    assert_eq!(n1.vote_info().await, Vote::Ack);
    assert_eq!(n2.vote, Some(Vote::Nack));
    srv.stop().await;
}

#[tokio::test]
async fn certificate_name_is_matched_case_insensitively() {
    let tls = pki("case");
    let srv = server(&tls, TlsMode::Required, true).await;
    // Certificate for "tlscase", cluster name "TLSCASE" (as NSS allows).
    let _n = tls_node(&srv, node_config(&tls.dir, "tlscase"), "TLSCASE", 1).await;
    srv.stop().await;
}

#[tokio::test]
async fn certificate_of_another_cluster_is_refused() {
    let tls = pki("othercluster");
    let srv = server(&tls, TlsMode::On, true).await;
    let (mut a1, _a2) = healthy_tls_pair(&srv, &tls, "bystander-a").await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    let p = params("victim", 1, TieBreaker::Lowest);
    // A valid certificate from our CA, but for cluster "bystander-a".
    let r = c
        .handshake_tls(&p, node_config(&tls.dir, "bystander-a"))
        .await;
    assert!(
        r.is_err(),
        "INIT with another cluster's certificate must fail: {r:?}"
    );
    wait_log(&["cluster=victim", "does not match cluster name"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn missing_client_certificate_is_refused() {
    let tls = pki("nocert");
    let srv = server(&tls, TlsMode::On, true).await;
    let (mut a1, _a2) = healthy_tls_pair(&srv, &tls, "bystander-b").await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    let config = tls_client_config(&ca(&tls.dir), None).unwrap();
    let r = c
        .handshake_tls(&params("nocert", 1, TieBreaker::Lowest), config)
        .await;
    assert!(
        r.is_err(),
        "a client without certificate must be refused: {r:?}"
    );
    wait_log(&["cluster=nocert", "TLS handshake failed"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let tls = pki("foreignca");
    let foreign = pki("foreignca-other");
    let srv = server(&tls, TlsMode::On, true).await;
    let (mut a1, _a2) = healthy_tls_pair(&srv, &tls, "bystander-c").await;
    // The client trusts our CA but presents a certificate of another CA.
    let b = Pki::new(&foreign.dir).issue_client("foreign", 365).unwrap();
    let config = tls_client_config(
        &ca(&tls.dir),
        Some((b.cert_pem.as_bytes(), b.key_pem.as_bytes())),
    )
    .unwrap();
    let mut c = Client::connect(srv.addr).await.unwrap();
    let r = c
        .handshake_tls(&params("foreign", 1, TieBreaker::Lowest), config)
        .await;
    assert!(r.is_err(), "a foreign certificate must be refused: {r:?}");
    wait_log(&["cluster=foreign", "TLS handshake failed"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn plain_client_gets_tls_required() {
    let tls = pki("required");
    let srv = server(&tls, TlsMode::Required, true).await;
    let (mut a1, _a2) = healthy_tls_pair(&srv, &tls, "bystander-d").await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    let p = params("plain", 1, TieBreaker::Lowest);
    c.send(&Message::Preinit(qnetd_core::wire::Preinit {
        seq: Some(1),
        cluster_name: Some(b"plain".to_vec()),
    }))
    .await
    .unwrap();
    match c.recv().await.unwrap() {
        Message::PreinitReply(r) => {
            assert_eq!(r.tls_supported, Some(TlsSupported::Required));
            assert_eq!(r.tls_client_cert_required, Some(true));
        }
        m => panic!("{m:?}"),
    }
    c.send(&Message::Init(qnetd_tools::client::init_message(2, &p)))
        .await
        .unwrap();
    assert_eq!(expect_error(&mut c, ErrorCode::TLS_REQUIRED).await, Some(2));
    wait_log(&["cluster=plain", "TLS required"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn garbage_client_hello_is_refused() {
    let tls = pki("garbage");
    let srv = server(&tls, TlsMode::On, true).await;
    let (mut a1, _a2) = healthy_tls_pair(&srv, &tls, "bystander-e").await;
    let mut c = Client::connect(srv.addr).await.unwrap();
    c.send(&Message::Preinit(qnetd_core::wire::Preinit {
        seq: Some(1),
        cluster_name: Some(b"garbagehello".to_vec()),
    }))
    .await
    .unwrap();
    assert!(matches!(c.recv().await.unwrap(), Message::PreinitReply(_)));
    // STARTTLS followed at once (same write) by bytes that are no ClientHello.
    let mut bytes = Message::StartTls(qnetd_core::wire::StartTls { seq: Some(2) }).to_bytes();
    bytes.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
    c.send_raw(&bytes).await.unwrap();
    c.expect_closed().await.unwrap();
    wait_log(&["cluster=garbagehello", "TLS handshake failed"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn tls_without_client_certificate_when_not_required() {
    let tls = pki("nocc");
    let srv = server(&tls, TlsMode::On, false).await;
    let config = tls_client_config(&ca(&tls.dir), None).unwrap();
    let mut c = Client::connect(srv.addr).await.unwrap();
    let r = c
        .handshake_tls(&params("nocc", 1, TieBreaker::Lowest), config)
        .await
        .unwrap();
    assert_eq!(r.error_code, Some(ErrorCode::NO_ERROR));
    srv.stop().await;
}

#[tokio::test]
async fn reload_keeps_connected_clients() {
    let tls = pki("reload");
    let srv = server(&tls, TlsMode::On, true).await;
    let (mut a1, _a2) = healthy_tls_pair(&srv, &tls, "reload").await;
    srv.ctx.tls.as_ref().unwrap().reload().unwrap();
    assert_unharmed(&mut a1).await;
    // New handshakes still work after the reload.
    let _n3 = tls_node(&srv, node_config(&tls.dir, "reload2"), "reload2", 1).await;
    srv.stop().await;
}

#[tokio::test]
async fn certificate_expiry_is_exported() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = pki("expiry");
    let srv = server(&tls, TlsMode::On, true).await;
    let st = srv.ctx.status();
    let roles: Vec<&str> = st.certificates.iter().map(|c| c.role.as_str()).collect();
    assert_eq!(roles, vec!["ca", "server"]);
    assert!(
        st.certificates.iter().all(|c| c.days_left > 36_000),
        "{:?}",
        st.certificates
    );
    let mut s = tokio::net::TcpStream::connect(srv.ctx.metrics_addr.unwrap())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut m = String::new();
    s.read_to_string(&mut m).await.unwrap();
    let line = m
        .lines()
        .find(|l| l.starts_with("qnetd_tls_certificate_expiry_timestamp_seconds{role=\"server\""))
        .unwrap_or_else(|| panic!("no expiry gauge in:\n{m}"));
    let ts: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(ts > now + 365 * 86400, "{line}");
    srv.stop().await;
}

//! Tests of the server's TLS: a handshake and records through memory
//! against an OpenSSL client, and a garbage ClientHello.

use super::*;
use openssl::ssl::{SslConnector, SslFiletype};

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TLS directory with a CA, a server certificate and a client
/// certificate for the cluster "mem".
fn pki() -> Dir {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("qnetd-tls-unit-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = Pki::new(&dir);
    pki.init(Default::default()).unwrap();
    let bundle = pki.issue_client("mem", 2).unwrap();
    std::fs::write(dir.join("client.pem"), bundle.cert_pem).unwrap();
    std::fs::write(dir.join("client-key.pem"), bundle.key_pem).unwrap();
    Dir(dir)
}

/// An OpenSSL client over memory that sends the SNI every qdevice sends
/// and does not check the server (the tests look at the server side).
fn memory_client(mut c: openssl::ssl::SslConnectorBuilder) -> SslStream<MemIo> {
    c.set_verify(SslVerifyMode::NONE);
    let ssl = c
        .build()
        .configure()
        .unwrap()
        .into_ssl("Qnetd Server")
        .unwrap();
    SslStream::new(ssl, MemIo::default()).unwrap()
}

/// Moves ciphertext between a client `SslStream<MemIo>` and the server
/// `TlsConn` until neither has anything to say.
fn pump(client: &mut SslStream<MemIo>, server: &mut TlsConn) -> Option<HandshakeStep> {
    let mut last = None;
    for _ in 0..10 {
        let _ = client.do_handshake();
        let to_server = std::mem::take(&mut client.get_mut().tx);
        if !to_server.is_empty() {
            server.feed(&to_server);
            last = Some(server.handshake());
        }
        let mut to_client = Vec::new();
        server.take_output(&mut to_client);
        if to_client.is_empty() && to_server.is_empty() {
            break;
        }
        client.get_mut().rx.extend_from_slice(&to_client);
    }
    last
}

#[test]
fn a_handshake_and_records_through_memory() {
    let dir = pki();
    let ctx = TlsContext::load_or_init(&dir.0, true).unwrap();
    let mut c = SslConnector::builder(SslMethod::tls_client()).unwrap();
    c.set_ca_file(dir.0.join(Pki::CA_CERT)).unwrap();
    c.set_certificate_file(dir.0.join("client.pem"), SslFiletype::PEM)
        .unwrap();
    c.set_private_key_file(dir.0.join("client-key.pem"), SslFiletype::PEM)
        .unwrap();
    let mut client = memory_client(c);
    // The ClientHello arrives with the bytes read before STARTTLS was
    // handled.
    let _ = client.connect();
    let hello = std::mem::take(&mut client.get_mut().tx);
    let mut server = ctx.starter().start(hello).unwrap();
    assert!(matches!(server.handshake(), HandshakeStep::NeedInput));
    assert!(server.has_output(), "the server's flight");
    let mut flight = Vec::new();
    server.take_output(&mut flight);
    client.get_mut().rx.extend_from_slice(&flight);
    match pump(&mut client, &mut server) {
        Some(HandshakeStep::Done(Some(names))) => {
            assert!(names.iter().any(|n| n == "mem"), "{names:?}")
        }
        other => panic!("{other:?}"),
    }
    // Application data both ways; nothing stays buffered.
    client.ssl_write(b"hello").unwrap();
    let records = std::mem::take(&mut client.get_mut().tx);
    let (a, b) = records.split_at(3);
    let mut got = Vec::new();
    let mut scratch = [0u8; 16384];
    server.feed(a);
    server
        .read_plain(&mut scratch, |p| got.extend_from_slice(p))
        .unwrap();
    assert!(got.is_empty(), "a partial record yields nothing");
    server.feed(b);
    server
        .read_plain(&mut scratch, |p| got.extend_from_slice(p))
        .unwrap();
    assert_eq!(got, b"hello");
    assert!(server.ssl.get_ref().rx.is_empty());
    server.write_plain(b"world").unwrap();
    let mut out = Vec::new();
    server.take_output(&mut out);
    assert!(!server.has_output());
    client.get_mut().rx.extend_from_slice(&out);
    let mut buf = [0u8; 64];
    let n = client.ssl_read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"world");
    // close_notify from the client ends the server's reading.
    let _ = client.shutdown();
    let bye = std::mem::take(&mut client.get_mut().tx);
    server.feed(&bye);
    assert!(matches!(
        server.read_plain(&mut scratch, |_| {}),
        Err(TlsReadEnd::Closed)
    ));
}

#[test]
fn garbage_instead_of_a_client_hello_fails_the_handshake() {
    let dir = pki();
    let ctx = TlsContext::load_or_init(&dir.0, true).unwrap();
    let mut server = ctx
        .starter()
        .start(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
        .unwrap();
    match server.handshake() {
        HandshakeStep::Failed(f) => assert_eq!(f.kind, TlsFailureKind::NotTls, "{f:?}"),
        other => panic!("{other:?}"),
    }
}

/// Runs a handshake of `client` against a server that requires client
/// certificates and returns how it failed.
fn failed_handshake(c: openssl::ssl::SslConnectorBuilder, dir: &Dir) -> TlsFailure {
    let ctx = TlsContext::load_or_init(&dir.0, true).unwrap();
    let mut client = memory_client(c);
    let _ = client.connect();
    let hello = std::mem::take(&mut client.get_mut().tx);
    let mut server = ctx.starter().start(hello).unwrap();
    let mut step = server.handshake();
    if matches!(step, HandshakeStep::NeedInput) {
        let mut flight = Vec::new();
        server.take_output(&mut flight);
        client.get_mut().rx.extend_from_slice(&flight);
        step = pump(&mut client, &mut server).expect("the client answered");
    }
    match step {
        HandshakeStep::Failed(f) => f,
        other => panic!("the handshake must fail: {other:?}"),
    }
}

#[test]
fn a_client_without_a_certificate_is_classified_by_reason_code() {
    let dir = pki();
    let c = SslConnector::builder(SslMethod::tls_client()).unwrap();
    let f = failed_handshake(c, &dir);
    assert_eq!(f.kind, TlsFailureKind::NoCertificate, "{f:?}");
}

#[test]
fn a_client_with_only_old_tls_versions_is_classified_by_reason_code() {
    let dir = pki();
    let mut c = SslConnector::builder(SslMethod::tls_client()).unwrap();
    c.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
    c.set_max_proto_version(Some(SslVersion::TLS1_1)).unwrap();
    let f = failed_handshake(c, &dir);
    assert_eq!(f.kind, TlsFailureKind::NoCommonVersion, "{f:?}");
}

//! Unit tests of the PKI operations (no NSS tools needed; the NSS round trip
//! is `tests/interop/nss-certs.sh`).

use super::*;
use std::os::unix::fs::PermissionsExt;
use x509_parser::extensions::ParsedExtension;

/// `certutil -R -s CN=testcluster` output (RSA 2048, DER), made once with NSS.
const CERTUTIL_CSR: &[u8] = include_bytes!("../tests/data/certutil-testcluster.crq");

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let mut rnd = [0u8; 8];
        SystemRandom::new().fill(&mut rnd).expect("rng");
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let p = std::env::temp_dir().join(format!("qnetd-certs-{tag}-{name}"));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn init_pki(tag: &str) -> (TempDir, Pki) {
    let tmp = TempDir::new(tag);
    let pki = Pki::new(tmp.0.join("tls"));
    pki.init(InitOptions::default()).expect("init");
    (tmp, pki)
}

fn der_of_pem_file(path: &Path) -> Vec<u8> {
    let data = fs::read(path).expect("read");
    info::cert_ders(&data).expect("pem").remove(0)
}

fn rcgen_csr(cn: &str) -> (KeyPair, String, Vec<u8>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let csr = params.serialize_request(&key).expect("csr");
    let pem = csr.pem().expect("pem");
    (key, pem, csr.der().to_vec())
}

#[test]
fn init_creates_files_with_modes() {
    let (_tmp, pki) = init_pki("modes");
    let dir_mode = fs::metadata(pki.dir()).expect("dir").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    for (name, want) in [
        (Pki::CA_KEY, 0o600),
        (Pki::SERVER_KEY, 0o600),
        (Pki::CA_CERT, 0o644),
        (Pki::SERVER_CERT, 0o644),
        (Pki::CA_EXPORT, 0o644),
    ] {
        let mode = fs::metadata(pki.path(name))
            .expect(name)
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, want, "{name}");
    }
    assert_eq!(
        fs::read(pki.path(Pki::CA_CERT)).expect("ca"),
        fs::read(pki.path(Pki::CA_EXPORT)).expect("export")
    );
}

#[test]
fn init_refuses_to_overwrite() {
    let (_tmp, pki) = init_pki("overwrite");
    let before = fs::read(pki.path(Pki::CA_KEY)).expect("key");
    let err = pki.init(InitOptions::default()).expect_err("must refuse");
    assert!(matches!(err, CertError::AlreadyExists { ref existing, .. } if existing.len() == 5));
    let msg = err.to_string();
    assert!(
        msg.contains("qnetd-ca-key.pem") && msg.contains("move them away"),
        "{msg}"
    );
    assert_eq!(before, fs::read(pki.path(Pki::CA_KEY)).expect("key"));

    // A single leftover file is enough to refuse, and nothing else is written.
    let tmp2 = TempDir::new("one");
    fs::create_dir_all(&tmp2.0).expect("mkdir");
    fs::write(tmp2.0.join(Pki::SERVER_CERT), b"x").expect("write");
    let pki2 = Pki::new(&tmp2.0);
    let err = pki2.init(InitOptions::default()).expect_err("must refuse");
    assert!(err.to_string().contains("qnetd-server.pem"));
    assert!(!tmp2.0.join(Pki::CA_KEY).exists());
}

#[test]
fn ca_certificate_fields() {
    let (_tmp, pki) = init_pki("ca");
    let der = der_of_pem_file(&pki.path(Pki::CA_CERT));
    let cert = info::parse_der(&der).expect("parse");
    assert_eq!(cert.subject().to_string(), "CN=QNet CA");
    assert_eq!(cert.issuer().to_string(), "CN=QNet CA");
    let bc = cert.basic_constraints().expect("bc").expect("present");
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = cert.key_usage().expect("ku").expect("present").value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert!(cert.subject_alternative_name().expect("san").is_none());
    let info = &describe(&der).expect("describe")[0];
    assert!(info.is_ca);
    assert_eq!(info.key_type, "ECDSA P-256");
    assert!(info.days_left() >= 36_524, "{}", info.days_left());
    // The serial is random and 16 bytes long.
    assert_eq!(cert.raw_serial().len(), 16);
    assert!(cert.verify_signature(None).is_ok());
}

#[test]
fn server_certificate_fields() {
    let (_tmp, pki) = init_pki("server");
    let ca_der = der_of_pem_file(&pki.path(Pki::CA_CERT));
    let ca = info::parse_der(&ca_der).expect("ca");
    let der = der_of_pem_file(&pki.path(Pki::SERVER_CERT));
    let cert = info::parse_der(&der).expect("parse");
    assert_eq!(cert.subject().to_string(), "CN=Qnetd Server");
    assert_eq!(cert.issuer().to_string(), "CN=QNet CA");
    assert!(!cert.is_ca());
    assert!(cert.subject_alternative_name().expect("san").is_none());
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("present")
        .value;
    assert!(eku.server_auth && !eku.client_auth);
    let ku = cert.key_usage().expect("ku").expect("present").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
    assert_eq!(names(&der), vec!["Qnetd Server".to_string()]);

    // The server key matches the server certificate.
    let key_pem = fs::read_to_string(pki.path(Pki::SERVER_KEY)).expect("key");
    let key = KeyPair::from_pem(&key_pem).expect("key");
    assert_eq!(
        cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );

    // Validity is configurable.
    let tmp = TempDir::new("short");
    let short = Pki::new(&tmp.0);
    let report = short
        .init(InitOptions {
            server_validity_days: 10,
            ..InitOptions::default()
        })
        .expect("init");
    assert!((9..=10).contains(&report.server.days_left()));
    assert!(report.ca.days_left() > 36_000);
    assert_eq!(report.files.len(), 5);
}

fn check_client_cert(pki: &Pki, der: &[u8], cluster: &str) {
    let ca_der = der_of_pem_file(&pki.path(Pki::CA_CERT));
    let ca = info::parse_der(&ca_der).expect("ca");
    let cert = info::parse_der(der).expect("parse");
    assert_eq!(cert.subject().to_string(), format!("CN={cluster}"));
    assert_eq!(cert.issuer().to_string(), "CN=QNet CA");
    assert!(!cert.is_ca());
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("present")
        .value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(cert
        .key_usage()
        .expect("ku")
        .expect("present")
        .value
        .digital_signature());
    assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
    assert!(cert.extensions().iter().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::AuthorityKeyIdentifier(_)
    )));
    assert_eq!(names(der), vec![cluster.to_string()]);
}

#[test]
fn sign_rcgen_csr_der_and_pem() {
    let (_tmp, pki) = init_pki("sign");
    let (key, pem, der) = rcgen_csr("Cluster1");
    for input in [der.as_slice(), pem.as_bytes()] {
        let signed = pki.sign_csr(input, "cluster1", 30).expect("sign");
        check_client_cert(&pki, &signed.der, "cluster1");
        let cert = info::parse_der(&signed.der).expect("parse");
        // The requested key is kept.
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
        assert!((29..=30).contains(&describe(signed.pem.as_bytes()).expect("pem")[0].days_left()));
        let ku = cert.key_usage().expect("ku").expect("present").value;
        assert!(!ku.key_encipherment(), "no keyEncipherment on an EC key");
    }
}

#[test]
fn sign_certutil_rsa_csr() {
    let (_tmp, pki) = init_pki("certutil");
    let signed = pki
        .sign_csr(CERTUTIL_CSR, "testcluster", DEFAULT_VALIDITY_DAYS)
        .expect("sign");
    check_client_cert(&pki, &signed.der, "testcluster");
    let info = &describe(&signed.der).expect("describe")[0];
    assert_eq!(info.key_type, "RSA 2048");
    let (_, req) = X509CertificationRequest::from_der(CERTUTIL_CSR).expect("csr");
    let cert = info::parse_der(&signed.der).expect("parse");
    assert_eq!(
        cert.public_key().raw,
        req.certification_request_info.subject_pki.raw
    );
    let ku = cert.key_usage().expect("ku").expect("present").value;
    assert!(ku.digital_signature() && ku.key_encipherment());
}

#[test]
fn sign_refuses_cn_mismatch_and_bad_input() {
    let (_tmp, pki) = init_pki("mismatch");
    let err = pki
        .sign_csr(CERTUTIL_CSR, "othercluster", 30)
        .expect_err("mismatch");
    let msg = err.to_string();
    assert!(matches!(err, CertError::CnMismatch { .. }));
    assert!(
        msg.contains("testcluster") && msg.contains("othercluster"),
        "{msg}"
    );

    // Case differences are fine; the certificate spells the name as given.
    let signed = pki.sign_csr(CERTUTIL_CSR, "TestCluster", 30).expect("case");
    assert_eq!(names(&signed.der), vec!["TestCluster".to_string()]);

    // A flipped bit in the signature is caught.
    let mut bad = CERTUTIL_CSR.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert!(matches!(
        pki.sign_csr(&bad, "testcluster", 30),
        Err(CertError::BadCsrSignature { .. })
    ));
    // Garbage, truncation and a certificate instead of a CSR are parse errors.
    assert!(matches!(
        pki.sign_csr(b"junk", "x", 30),
        Err(CertError::Parse { .. })
    ));
    assert!(matches!(
        pki.sign_csr(&CERTUTIL_CSR[..100], "testcluster", 30),
        Err(CertError::Parse { .. })
    ));
    let ca_pem = fs::read(pki.path(Pki::CA_CERT)).expect("ca");
    assert!(matches!(
        pki.sign_csr(&ca_pem, "x", 30),
        Err(CertError::Parse { .. })
    ));
    // Unusable cluster names.
    for name in ["", "a/b", "..", &"x".repeat(65), "bad\nname"] {
        assert!(matches!(
            pki.sign_csr(CERTUTIL_CSR, name, 30),
            Err(CertError::InvalidClusterName { .. })
        ));
    }
}

#[test]
fn sign_without_init_says_to_init() {
    let tmp = TempDir::new("noinit");
    let pki = Pki::new(&tmp.0);
    let err = pki
        .sign_csr(CERTUTIL_CSR, "testcluster", 30)
        .expect_err("no CA");
    assert!(matches!(err, CertError::NotInitialized { .. }));
    assert!(err.to_string().contains("qnetd certs init"), "{err}");
}

#[test]
fn mismatched_ca_key_is_detected() {
    let (_tmp, pki) = init_pki("keymix");
    // Replace the CA key with the server key.
    let server_key = fs::read(pki.path(Pki::SERVER_KEY)).expect("key");
    fs::write(pki.path(Pki::CA_KEY), server_key).expect("write");
    assert!(matches!(
        pki.issue_client("c", 30),
        Err(CertError::CaKeyMismatch { .. })
    ));
}

#[test]
fn issue_client_bundle() {
    let (_tmp, pki) = init_pki("client");
    let bundle = pki.issue_client("mycluster", 365).expect("issue");
    check_client_cert(&pki, &bundle.cert_der, "mycluster");
    assert!(
        (364..=365).contains(&describe(bundle.cert_pem.as_bytes()).expect("pem")[0].days_left())
    );
    let key = KeyPair::from_pem(&bundle.key_pem).expect("key");
    let cert = info::parse_der(&bundle.cert_der).expect("parse");
    assert_eq!(
        cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    // The PKCS#12 holds the certificate and the key in the clear (empty
    // password) with the NSS nickname.
    let p12 = &bundle.p12;
    assert!(p12
        .windows(bundle.cert_der.len())
        .any(|w| w == bundle.cert_der.as_slice()));
    let key_der = key.serialize_der();
    assert!(p12.windows(key_der.len()).any(|w| w == key_der.as_slice()));
    let nick: Vec<u8> = CLIENT_NICKNAME
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    assert_eq!(
        p12.windows(nick.len())
            .filter(|w| *w == nick.as_slice())
            .count(),
        2
    );
}

#[test]
fn names_prefers_dns_sans() {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["alpha.example".to_string(), "beta".to_string()])
        .expect("params");
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "ignored-cn");
    let cert = params.self_signed(&key).expect("cert");
    assert_eq!(names(cert.der()), vec!["alpha.example", "beta"]);
    let info = &describe(cert.pem().as_bytes()).expect("describe")[0];
    assert_eq!(info.common_names, vec!["ignored-cn"]);
    assert_eq!(info.dns_names, vec!["alpha.example", "beta"]);
    assert!(!info.is_ca);
    assert!(names(&cert.der()[..50]).is_empty());
    assert!(names_equal("MyCluster", "mycluster"));
    assert!(!names_equal("mycluster", "mycluster2"));
}

#[test]
fn describe_reads_every_pem_block_and_skips_text() {
    let (_tmp, pki) = init_pki("describe");
    let mut text = b"Certificate listing, as the reference export has\n".to_vec();
    text.extend(fs::read(pki.path(Pki::CA_CERT)).expect("ca"));
    text.extend(fs::read(pki.path(Pki::SERVER_CERT)).expect("server"));
    let infos = describe(&text).expect("describe");
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[0].subject, "CN=QNet CA");
    assert_eq!(infos[1].subject, "CN=Qnetd Server");
    assert_eq!(infos[1].common_names, vec!["Qnetd Server"]);
    assert!(infos[1].dns_names.is_empty());
    let fp = &infos[0].sha256_fingerprint;
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp.chars().all(|c| c == ':' || c.is_ascii_hexdigit()));
    assert!(infos[0].not_after_rfc3339.ends_with('Z'));
    assert!(infos[0].not_before < infos[0].not_after);
    assert_eq!(infos[0].not_before_rfc3339, rfc3339(infos[0].not_before));
}

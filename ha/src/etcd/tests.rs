//! Tests of the etcd client: key prefixes, the gateway's JSON,
//! configuration errors and unreachable endpoints.

use super::*;

#[test]
fn prefix_end_is_the_next_key() {
    assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
}

#[test]
fn gateway_json_is_read() {
    let v: Value = serde_json::from_str(
        r#"{"header":{"revision":"42"},"kvs":[{"key":"L3EvZy9sZWFkZXI=","create_revision":"7","mod_revision":"9","version":"2","value":"YQ==","lease":"1234"}],"count":"1"}"#,
    )
    .unwrap();
    assert_eq!(header_revision(&v), 42);
    let k = kvs(&v).unwrap();
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].key, b"/q/g/leader");
    assert_eq!(k[0].value, b"a");
    assert_eq!(
        (
            k[0].create_revision,
            k[0].mod_revision,
            k[0].version,
            k[0].lease
        ),
        (7, 9, 2, 1234)
    );
    let bad: Value = serde_json::from_str(r#"{"kvs":[{"key":"!!"}]}"#).unwrap();
    assert!(kvs(&bad).is_err());
}

#[test]
fn config_errors_are_typed() {
    let e = Etcd::new(&EtcdConfig {
        endpoints: vec![],
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(matches!(e, HaError::InvalidConfig { .. }));
    let e = Etcd::new(&EtcdConfig {
        user: Some("u".into()),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("together"));
    let e = Etcd::new(&EtcdConfig {
        endpoints: vec!["https://h:1".into()],
        tls: TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(matches!(e, HaError::TlsFile { .. }), "{e}");
}

#[tokio::test]
async fn unreachable_endpoints_are_unavailable() {
    // a port nothing listens on (bound then closed)
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let c = Etcd::new(&EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        ..Default::default()
    })
    .unwrap();
    let e = c.range(b"k", None, 0).await.unwrap_err();
    assert!(matches!(e, HaError::Unavailable { .. }), "{e}");
    assert!(e.is_unavailable());
}

//! Tests of the HA configuration, the etcd key layout, the CA fingerprint
//! and the leader's right to serve.

use super::*;

fn cfg() -> HaConfig {
    HaConfig::new(EtcdConfig::default(), "g1", "a", &"ab".repeat(32))
}

#[test]
fn defaults_validate() {
    cfg().validate().unwrap();
}

#[test]
fn bad_settings_are_named() {
    type Case = (Box<dyn Fn(&mut HaConfig)>, &'static str);
    let cases: Vec<Case> = vec![
        (Box::new(|c| c.group = "a/b".into()), "group"),
        (Box::new(|c| c.name = String::new()), "name"),
        (
            Box::new(|c| c.lease_ttl = Duration::from_millis(2500)),
            "lease_ttl",
        ),
        (
            Box::new(|c| c.lease_ttl = Duration::from_secs(1)),
            "lease_ttl",
        ),
        (Box::new(|c| c.margin = Duration::from_secs(5)), "margin"),
        (
            Box::new(|c| c.keepalive_interval = Duration::from_secs(4)),
            "keepalive_interval",
        ),
        (Box::new(|c| c.ca_sha256 = "xyz".into()), "ca_sha256"),
    ];
    for (f, field) in cases {
        let mut c = cfg();
        f(&mut c);
        let e = c.validate().unwrap_err();
        assert!(
            matches!(e, HaError::InvalidConfig { field: f, .. } if f == field),
            "{e}"
        );
    }
}

#[test]
fn keys_follow_the_layout() {
    let k = Keys::new("g1");
    assert_eq!(k.leader(), b"/qnetd/g1/leader");
    assert_eq!(k.ca(), b"/qnetd/g1/ca-sha256");
    assert_eq!(k.vote(b"web\x00"), b"/qnetd/g1/votes/77656200");
    assert!(k.vote(b"x").starts_with(&k.votes_prefix()));
}

#[test]
fn fingerprint_is_hex_sha256() {
    assert_eq!(
        ca_fingerprint(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn only_a_leader_before_its_deadline_may_serve() {
    let now = Instant::now();
    let term = LeaderTerm {
        revision: 5,
        lease: 9,
    };
    let l = Role::Leader {
        term,
        serve_until: now + Duration::from_secs(1),
    };
    assert!(l.may_serve(now));
    assert!(!l.may_serve(now + Duration::from_secs(1)));
    assert!(!Role::TakingOver {
        term,
        serve_from: now
    }
    .may_serve(now));
    assert!(!Role::Standby { leader: None }.may_serve(now));
    assert!(!Role::NoQuorum { since: now }.may_serve(now));
}

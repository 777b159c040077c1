//! Settings: defaults, ranges, the `-S` list and the TOML file.

use super::*;

#[test]
fn defaults_match_the_reference() {
    let s = Settings::default();
    assert_eq!(s.port, 5403);
    assert_eq!(s.max_client_receive_size, 32768);
    assert_eq!(s.max_client_send_buffers, 32);
    assert_eq!(s.initial_dpd_ms(), 180_000);
    assert_eq!(s.dpd_ms(8000), 12_000);
    assert!(!s.keep_active_partition_tie_breaker);
}

#[test]
fn hardening_settings_parse_and_check_ranges() {
    let mut s = Settings::default();
    assert_eq!(s.listen_backlog, 4096);
    assert_eq!(s.init_timeout, 5000);
    s.set_advanced_list("init_timeout=2000,max_clients_per_address=0,restart_vote_hold=0")
        .unwrap();
    assert_eq!(
        (
            s.init_timeout,
            s.max_clients_per_address,
            s.restart_vote_hold
        ),
        (2000, 0, 0)
    );
    assert!(s.set_advanced_list("init_timeout=50").is_err());
    assert!(s.set_advanced_list("restart_vote_hold=3600001").is_err());
    s.set_advanced("state_dir", "off").unwrap();
    assert_eq!(s.state_dir, None);
    s.set_advanced("state_dir", "/tmp/x").unwrap();
    assert_eq!(s.state_dir, Some(PathBuf::from("/tmp/x")));
}

#[test]
fn advanced_settings_are_validated() {
    let mut s = Settings::default();
    assert!(s.set_advanced_list("max_client_send_buffers=1").is_err());
    assert!(s.set_advanced_list("max_client_receive_size=15").is_err());
    assert!(s
        .set_advanced_list("dpd_interval_coefficient=1000.5")
        .is_err());
    assert_eq!(
        s.set_advanced_list("no_such_key=1"),
        Err(SettingError::UnknownAdvanced {
            key: "no_such_key".into()
        })
    );
    assert!(matches!(
        s.set_advanced_list("dpd_enabled=maybe"),
        Err(SettingError::NotABoolean { .. })
    ));
    let w = s
        .set_advanced_list("DPD_Enabled=off,heartbeat_interval_min=500,dpd_interval=3")
        .unwrap();
    assert_eq!(
        w,
        vec![SettingWarning::Deprecated {
            key: "dpd_interval",
            instead: "dpd_interval_coefficient"
        }]
    );
    assert!(!s.dpd_enabled);
    assert_eq!(s.heartbeat_interval_min, 500);
}

#[test]
fn coefficient_above_150_is_refused_at_start() {
    let mut s = Settings::default();
    s.set_advanced("dpd_interval_coefficient", "151").unwrap();
    assert!(s.validate().is_err());
    s.set_advanced("dpd_interval_coefficient", "150").unwrap();
    assert!(s.validate().is_ok());
}

#[test]
fn example_config_file_holds_the_defaults() {
    let mut s = Settings::default();
    let text = include_str!("../../../config/qnetd.toml");
    let w = s.apply_toml(text, Path::new("config/qnetd.toml")).unwrap();
    assert!(w.is_empty());
    assert_eq!(s, Settings::default());
}

#[test]
fn toml_file_sets_the_same_keys() {
    let mut s = Settings::default();
    let w = s
        .apply_toml(
            "port = 15403\nlisten_address = \"127.0.0.1\"\ntls = \"off\"\n[advanced]\nmax_client_send_buffers = 64\nkeep_active_partition_tie_breaker = true\n",
            Path::new("test.toml"),
        )
        .unwrap();
    assert!(w.is_empty());
    assert_eq!(s.port, 15403);
    assert_eq!(s.listen_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.max_client_send_buffers, 64);
    assert!(s.keep_active_partition_tie_breaker);
    let e = s.apply_toml("prot = 1\n", Path::new("x.toml")).unwrap_err();
    match &e {
        SettingError::InFile { file, error } => {
            assert_eq!(file, Path::new("x.toml"));
            assert_eq!(**error, SettingError::UnknownKey { key: "prot".into() });
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().starts_with("x.toml: unknown key 'prot'"),
        "{e}"
    );
}

//! Tests of the coordinator: source addresses, split winners and refused
//! configurations.

use super::phases::split_winner;
use super::*;
use crate::bench::error::OptionsError;
use crate::bench::node::View;

#[test]
fn source_addresses_are_distinct_loopback_hosts() {
    let mut seen = std::collections::HashSet::new();
    for i in 0..70_000 {
        let a = source_address(i);
        assert!(a.is_loopback());
        assert!(a.octets()[3] != 0 && a.octets()[3] != 255, "{a}");
        assert!(seen.insert(a), "{a} twice");
    }
    assert_eq!(source_address(0), Ipv4Addr::new(127, 1, 0, 1));
}

#[test]
fn winners() {
    assert_eq!(split_winner(2, TieBreaker::Lowest), View::Low);
    assert_eq!(split_winner(2, TieBreaker::Highest), View::High);
    assert_eq!(split_winner(3, TieBreaker::Lowest), View::High);
    assert_eq!(split_winner(4, TieBreaker::NodeId(3)), View::High);
    assert_eq!(split_winner(4, TieBreaker::NodeId(9)), View::Low);
}

#[test]
fn bad_configs_are_refused() {
    let c = Config {
        nodes: 1,
        ..Config::default()
    };
    assert_eq!(
        check_config(&c, Workload::MassSplit),
        Err(OptionsError::SplitNeedsTwoNodes)
    );
    assert_eq!(
        check_config(&Config::default(), Workload::Reconnect),
        Err(OptionsError::ReconnectNeedsSpawn)
    );
    let c = Config {
        server: "10.0.0.1:5403".parse().unwrap(),
        ..Config::default()
    };
    assert_eq!(
        check_config(&c, Workload::ConnectStorm),
        Err(OptionsError::NotLoopback("10.0.0.1:5403".parse().unwrap()))
    );
    let c = Config {
        clusters: 0,
        ..Config::default()
    };
    assert_eq!(
        check_config(&c, Workload::ConnectStorm),
        Err(OptionsError::NoClusters)
    );
    assert_eq!(
        check_config(&Config::default(), Workload::ConnectStorm),
        Ok(())
    );
}

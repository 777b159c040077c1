//! Tests of the simulations' plumbing: the schedule plan read from the
//! environment and the generator.

use crate::sim::schedules::Plan;
use crate::sim::Rng;

#[test]
fn plan_from_variables() {
    assert_eq!(Plan::parse(None, None, 7), Plan::Count(7));
    assert_eq!(Plan::parse(None, Some("100_000"), 7), Plan::Count(100_000));
    assert_eq!(Plan::parse(Some(" 42 "), Some("5"), 7), Plan::Replay(42));
    assert_eq!(Plan::parse(Some(""), Some(""), 7), Plan::Count(7));
    assert_eq!(Plan::Count(3).seeds(), 1..=3);
    assert_eq!(Plan::Replay(9).seeds(), 9..=9);
}

#[test]
#[should_panic(expected = "is not a non-negative integer")]
fn malformed_count_is_an_error() {
    Plan::parse(None, Some("lots"), 7);
}

#[test]
fn rng_is_deterministic() {
    let (mut a, mut b) = (Rng::new(5), Rng::new(5));
    let xs: Vec<u64> = (0..4).map(|_| a.next()).collect();
    let ys: Vec<u64> = (0..4).map(|_| b.next()).collect();
    assert_eq!(xs, ys);
    assert_ne!(Rng::new(6).next(), xs[0]);
    assert_eq!(Rng::new(0).below(0), 0);
}

#[test]
fn scripted_rng_plays_its_script_then_seed_zero() {
    let mut s = Rng::scripted(&[7, 250]);
    assert_eq!(s.below(5), 2);
    assert_eq!(s.next(), 250);
    assert_eq!(s.next(), Rng::new(0).next());
}

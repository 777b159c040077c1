//! Shared pieces of the randomized safety tests (`safety_randomized_schedules`
//! in `ffsplit`, `lms` and `two_node_lms`): the PRNG and the schedule
//! count / seed configuration. Each test keeps its own simulator; see
//! `docs/safety-testing.md` for what they model.
//!
//! * `QNETD_SAFETY_SCHEDULES=N` runs schedules with seeds `1..=N` (default:
//!   the small count each test passes, so `cargo test` stays fast).
//! * `QNETD_SAFETY_SEED=S` runs only the schedule with seed `S`, with the full
//!   message trace recorded, to replay a failure.
//! * `QNETD_SAFETY_KEEP_GOING=1` keeps running after a failing schedule and
//!   lists the failing seeds at the end.
//!
//! A failing schedule panics with its seed and the command that replays it.
//!
//! With the `fuzzing` feature only [`Rng`] is compiled (the fuzz target
//! drives the simulators with [`Rng::scripted`]); the schedule runner is for
//! tests.

#[cfg(test)]
use std::panic::{self, AssertUnwindSafe};

/// Environment variable: number of schedules per safety test.
#[cfg(test)]
pub(crate) const SCHEDULES_VAR: &str = "QNETD_SAFETY_SCHEDULES";
/// Environment variable: replay this one schedule seed.
#[cfg(test)]
pub(crate) const SEED_VAR: &str = "QNETD_SAFETY_SEED";
/// Environment variable: run every schedule even after a failure, and
/// report all failing seeds at the end.
#[cfg(test)]
pub(crate) const KEEP_GOING_VAR: &str = "QNETD_SAFETY_KEEP_GOING";

/// xorshift64*: small, deterministic, no dependencies. A scripted generator
/// ([`Rng::scripted`], for the fuzz target) first returns the bytes of its
/// script, one per draw, then goes on as the generator of seed 0.
pub(crate) struct Rng {
    state: u64,
    script: Vec<u8>,
    pos: usize,
}

impl Rng {
    /// A generator for `seed`; any seed (0 included) gives a non-zero state.
    pub(crate) fn new(seed: u64) -> Self {
        Rng {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            script: Vec::new(),
            pos: 0,
        }
    }

    /// A generator whose first draws are the bytes of `script` (so every
    /// choice of a schedule is a byte the fuzzer controls: `below(n)` for
    /// n <= 256 and `chance` take one byte each).
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    pub(crate) fn scripted(script: &[u8]) -> Self {
        Rng {
            script: script.to_vec(),
            ..Rng::new(0)
        }
    }

    pub(crate) fn next(&mut self) -> u64 {
        if let Some(&b) = self.script.get(self.pos) {
            self.pos += 1;
            return u64::from(b);
        }
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (0 when `n` is 0); always draws once.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with the given probability in percent.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Which schedules to run, from the environment.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Seeds `1..=n`.
    Count(u64),
    /// Only this seed, traced.
    Replay(u64),
}

#[cfg(test)]
impl Plan {
    /// Reads [`SEED_VAR`] and [`SCHEDULES_VAR`]; `default_count` applies when
    /// neither is set. A malformed value is an error, not a silent default.
    pub(crate) fn from_env(default_count: u64) -> Plan {
        Self::parse(
            std::env::var(SEED_VAR).ok().as_deref(),
            std::env::var(SCHEDULES_VAR).ok().as_deref(),
            default_count,
        )
    }

    fn parse(seed: Option<&str>, schedules: Option<&str>, default_count: u64) -> Plan {
        let number = |var: &str, text: &str| -> u64 {
            let digits: String = text.trim().chars().filter(|&c| c != '_').collect();
            digits
                .parse()
                .unwrap_or_else(|_| panic!("{var}={text:?} is not a non-negative integer"))
        };
        match (seed, schedules) {
            (Some(s), _) if !s.trim().is_empty() => Plan::Replay(number(SEED_VAR, s)),
            (_, Some(n)) if !n.trim().is_empty() => Plan::Count(number(SCHEDULES_VAR, n)),
            _ => Plan::Count(default_count),
        }
    }

    /// Whether schedules should record their full trace.
    pub(crate) fn tracing(self) -> bool {
        matches!(self, Plan::Replay(_))
    }

    fn seeds(self) -> std::ops::RangeInclusive<u64> {
        match self {
            Plan::Count(n) => 1..=n,
            Plan::Replay(s) => s..=s,
        }
    }
}

/// Runs `schedule(seed, tracing)` for every seed of the plan read from the
/// environment. `test` is the test function's full name, used in the replay
/// command printed when a schedule panics. Returns the number of schedules
/// run.
///
/// The first failing schedule ends the run, unless [`KEEP_GOING_VAR`] is set
/// (to anything but `0`): then every schedule runs and the test fails at the
/// end with the number of failing seeds and the first few of them.
#[cfg(test)]
pub(crate) fn run_schedules(
    test: &str,
    default_count: u64,
    mut schedule: impl FnMut(u64, bool),
) -> u64 {
    let plan = Plan::from_env(default_count);
    let tracing = plan.tracing();
    let keep_going = std::env::var(KEEP_GOING_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    let mut failed: Vec<u64> = Vec::new();
    let mut first_failure = String::new();
    let mut done = 0;
    for seed in plan.seeds() {
        done += 1;
        let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| schedule(seed, tracing))) else {
            continue;
        };
        let cause = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(non-string panic)");
        let report = format!(
            "{test}: schedule with seed {seed} failed: {cause}\n\
             replay it (with a full trace) with:\n    \
             {SEED_VAR}={seed} cargo test -p qnetd-algorithms {test} -- --exact --nocapture"
        );
        if !keep_going {
            panic!("{report}");
        }
        if failed.is_empty() {
            first_failure = report;
        }
        failed.push(seed);
    }
    if !failed.is_empty() {
        let shown: Vec<u64> = failed.iter().copied().take(20).collect();
        panic!(
            "{test}: {} of {done} schedules failed; first seeds {shown:?}\nfirst failure: {first_failure}",
            failed.len()
        );
    }
    if tracing {
        eprintln!("{test}: replayed seed {:?} without failure", plan.seeds());
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

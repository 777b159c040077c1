//! The schedule runner of the randomized safety tests: which seeds to run
//! (from the environment), catching a failing schedule and printing the
//! command that replays it. See the module `sim` and docs/safety-testing.md.

use std::panic::{self, AssertUnwindSafe};

/// Environment variable: number of schedules per safety test.
pub(crate) const SCHEDULES_VAR: &str = "QNETD_SAFETY_SCHEDULES";
/// Environment variable: replay this one schedule seed.
pub(crate) const SEED_VAR: &str = "QNETD_SAFETY_SEED";
/// Environment variable: run every schedule even after a failure, and
/// report all failing seeds at the end.
pub(crate) const KEEP_GOING_VAR: &str = "QNETD_SAFETY_KEEP_GOING";

/// Which schedules to run, from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Seeds `1..=n`.
    Count(u64),
    /// Only this seed, traced.
    Replay(u64),
}

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

    pub(crate) fn parse(seed: Option<&str>, schedules: Option<&str>, default_count: u64) -> Plan {
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

    pub(crate) fn seeds(self) -> std::ops::RangeInclusive<u64> {
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

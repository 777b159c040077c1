//! The leader's lease as seen from its own monotonic clock: a pure model
//! (no clock of its own, `now` is passed in) of when a leader may serve.
//!
//! etcd counts a lease's time on the clock of the etcd leader, from the
//! moment it processes a grant or keep-alive. The qnetd leader cannot know
//! that moment, only a bound: the request was processed after it was sent.
//! So the lease certainly lives until `sent + ttl` (real time, clocks that
//! run at the same rate), and the leader serves only until
//!
//! ```text
//! serve_until = sent + ttl - margin
//! ```
//!
//! where `sent` is the local monotonic time when the grant or keep-alive
//! REQUEST was sent (never when its response arrived) and `margin` covers
//! the clock rate difference over one TTL and the time between a check and
//! the write of an ACK to a socket. A keep-alive only extends the deadline
//! from its own send time; a late or reordered response never moves it
//! back; once the lease is lost (a keep-alive answered with TTL 0, or the
//! leader key gone) nothing but a new grant makes it valid again.
//!
//! [`takeover_at`] is the other side: when a newly elected leader may start
//! serving (docs/ha.md, "Fencing").

use std::time::{Duration, Instant};

/// The lease of one leadership term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseClock {
    margin: Duration,
    state: State,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// No lease granted yet.
    None,
    /// Valid until the deadline (exclusive).
    Valid { serve_until: Instant, ttl: Duration },
    /// The lease ended; only a new grant revives it.
    Lost,
}

impl LeaseClock {
    /// A clock with no lease; `margin` is subtracted from every deadline.
    pub fn new(margin: Duration) -> Self {
        LeaseClock {
            margin,
            state: State::None,
        }
    }

    /// A grant request sent at `sent_at` was answered with `ttl`. Starts a
    /// new term: any earlier loss is forgotten.
    pub fn granted(&mut self, sent_at: Instant, ttl: Duration) {
        self.state = State::None;
        self.extend(sent_at, ttl);
    }

    /// A keep-alive request sent at `sent_at` was answered with `ttl`
    /// (etcd's remaining TTL after the refresh). A zero TTL means etcd no
    /// longer knows the lease: the lease is lost. Ignored after a loss.
    pub fn renewed(&mut self, sent_at: Instant, ttl: Duration) {
        match self.state {
            State::Lost => {}
            _ if ttl.is_zero() => self.state = State::Lost,
            _ => self.extend(sent_at, ttl),
        }
    }

    /// The lease is known to be gone (revoked, leader key deleted, resign).
    pub fn lost(&mut self) {
        self.state = State::Lost;
    }

    fn extend(&mut self, sent_at: Instant, ttl: Duration) {
        // A TTL not larger than the margin never allows serving.
        let Some(usable) = ttl.checked_sub(self.margin) else {
            if !matches!(self.state, State::Valid { .. }) {
                self.state = State::None;
            }
            return;
        };
        let until = sent_at + usable;
        match self.state {
            State::Valid { serve_until, .. } if serve_until >= until => {}
            _ => {
                self.state = State::Valid {
                    serve_until: until,
                    ttl,
                }
            }
        }
    }

    /// The deadline, if a lease was granted and not lost. It may lie in the
    /// past: use [`LeaseClock::may_serve`].
    pub fn serve_until(&self) -> Option<Instant> {
        match self.state {
            State::Valid { serve_until, .. } => Some(serve_until),
            _ => None,
        }
    }

    /// Whether the leader may serve (send an ACK, accept a client) at `now`.
    pub fn may_serve(&self, now: Instant) -> bool {
        self.serve_until().is_some_and(|until| now < until)
    }

    /// Time left to serve at `now` (zero when it may not serve).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.serve_until()
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// The TTL etcd reported last.
    pub fn ttl(&self) -> Option<Duration> {
        match self.state {
            State::Valid { ttl, .. } => Some(ttl),
            _ => None,
        }
    }
}

/// What a new leader knows about the last leader that may have served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Previous {
    /// No leader ever served in this group (no term record).
    Nobody,
    /// The last serving leader resigned: it stopped serving before it
    /// deleted its key.
    Resigned,
    /// The last serving leader's key went away otherwise (lease expiry,
    /// or a revoke/delete that may have come early): it may serve until
    /// its own deadline, at most its TTL after its last keep-alive, which
    /// was sent before the key went away.
    Vanished { ttl: Duration },
}

/// How a new leader treats a previous leader whose key vanished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TakeoverPolicy {
    /// Wait the previous leader's full TTL after winning (default): safe
    /// even when the old lease was revoked before its time (by hand, or by
    /// the etcd bug of a stuck old etcd leader revoking leases, fixed in
    /// etcd 3.4.28 / 3.5.11).
    #[default]
    WaitPreviousTtl,
    /// Serve as soon as the election is won: relies on the old key having
    /// gone by expiry only (etcd with the fix, RBAC so that nobody else
    /// can revoke or delete under the group prefix).
    TrustExpiry,
}

/// When a leader that won the election at `won_at` may start serving.
pub fn takeover_at(won_at: Instant, previous: Previous, policy: TakeoverPolicy) -> Instant {
    match (previous, policy) {
        (Previous::Vanished { ttl }, TakeoverPolicy::WaitPreviousTtl) => won_at + ttl,
        _ => won_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtual clock: instants are offsets from one base.
    struct Clock(Instant);
    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }
    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn clock() -> Clock {
        Clock(Instant::now())
    }

    #[test]
    fn nothing_is_served_before_a_grant() {
        let c = clock();
        let l = LeaseClock::new(ms(1000));
        assert!(!l.may_serve(c.at(0)));
        assert_eq!(l.serve_until(), None);
        assert_eq!(l.remaining(c.at(0)), Duration::ZERO);
    }

    #[test]
    fn grant_counts_from_the_request_send_time() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        // request sent at 0, answer arrives at 3000 (slow etcd)
        l.granted(c.at(0), ms(5000));
        assert_eq!(l.serve_until(), Some(c.at(4000)));
        assert!(l.may_serve(c.at(3000)));
        assert!(l.may_serve(c.at(3999)));
        assert!(!l.may_serve(c.at(4000)));
        assert_eq!(l.remaining(c.at(3000)), ms(1000));
    }

    #[test]
    fn keepalive_extends_from_its_own_send_time_only() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(5000));
        // keep-alive sent at 1000, answered at 3500: deadline 1000+5000-1000
        l.renewed(c.at(1000), ms(5000));
        assert_eq!(l.serve_until(), Some(c.at(5000)));
        assert!(!l.may_serve(c.at(5000)));
    }

    #[test]
    fn late_response_of_an_older_keepalive_never_shortens() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(5000));
        l.renewed(c.at(2000), ms(5000)); // newer, answered first
        l.renewed(c.at(1000), ms(5000)); // older, answered later
        assert_eq!(l.serve_until(), Some(c.at(6000)));
    }

    #[test]
    fn lost_keepalives_let_the_lease_run_out() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(5000));
        l.renewed(c.at(1000), ms(5000));
        // keep-alives sent at 2000, 3000, 4000 are never answered: no call
        assert!(l.may_serve(c.at(4999)));
        assert!(!l.may_serve(c.at(5000)));
        assert!(!l.may_serve(c.at(60_000)));
    }

    #[test]
    fn pause_past_the_deadline_stops_serving_even_if_a_renewal_follows() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(5000));
        // the process is paused (SIGSTOP) from 500 to 9000; at 9000 it
        // checks before an ACK: not allowed
        assert!(!l.may_serve(c.at(9000)));
        // a keep-alive sent before the pause and answered after it only
        // extends from its send time: still expired
        l.renewed(c.at(500), ms(5000));
        assert!(!l.may_serve(c.at(9000)));
        // a keep-alive sent after the pause and answered with a live TTL
        // means etcd still has the lease: valid again from that send time
        l.renewed(c.at(9000), ms(5000));
        assert!(l.may_serve(c.at(9100)));
        assert_eq!(l.serve_until(), Some(c.at(13_000)));
    }

    #[test]
    fn zero_ttl_answer_means_lost_and_sticks() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(5000));
        l.renewed(c.at(1000), Duration::ZERO);
        assert!(l.is_lost());
        assert!(!l.may_serve(c.at(1001)));
        // a late answer to an earlier keep-alive does not revive it
        l.renewed(c.at(900), ms(5000));
        assert!(!l.may_serve(c.at(1001)));
        // only a new grant does
        l.granted(c.at(2000), ms(5000));
        assert!(l.may_serve(c.at(2001)));
    }

    #[test]
    fn explicit_loss_stops_at_once() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(5000));
        l.lost();
        assert!(!l.may_serve(c.at(1)));
        assert_eq!(l.serve_until(), None);
    }

    #[test]
    fn ttl_changes_apply_from_the_send_time_of_the_answered_request() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(5000));
        // etcd reports a longer TTL (e.g. after an etcd leader change it
        // restarts the full TTL plus an election timeout)
        l.renewed(c.at(1000), ms(6000));
        assert_eq!(l.serve_until(), Some(c.at(6000)));
        assert_eq!(l.ttl(), Some(ms(6000)));
        // a shorter reported TTL does not move an earlier, later deadline
        l.renewed(c.at(1500), ms(3000));
        assert_eq!(l.serve_until(), Some(c.at(6000)));
        // but a later send with the short TTL counts once it is later
        l.renewed(c.at(5000), ms(3000));
        assert_eq!(l.serve_until(), Some(c.at(7000)));
    }

    #[test]
    fn ttl_not_above_the_margin_never_serves() {
        let c = clock();
        let mut l = LeaseClock::new(ms(1000));
        l.granted(c.at(0), ms(1000));
        assert!(!l.may_serve(c.at(0)));
        l.granted(c.at(0), ms(800));
        assert!(!l.may_serve(c.at(0)));
    }

    #[test]
    fn takeover_waits_the_previous_ttl_only_when_the_previous_key_vanished() {
        let c = clock();
        let won = c.at(10_000);
        let v = Previous::Vanished { ttl: ms(5000) };
        assert_eq!(
            takeover_at(won, v, TakeoverPolicy::WaitPreviousTtl),
            c.at(15_000)
        );
        assert_eq!(takeover_at(won, v, TakeoverPolicy::TrustExpiry), won);
        assert_eq!(
            takeover_at(won, Previous::Resigned, TakeoverPolicy::WaitPreviousTtl),
            won
        );
        assert_eq!(
            takeover_at(won, Previous::Nobody, TakeoverPolicy::WaitPreviousTtl),
            won
        );
    }

    /// The fencing property on a virtual timeline: an old leader that keeps
    /// its last keep-alive at `k` serves until `k + ttl - margin`; its key
    /// can vanish no earlier than `k` (early revoke) and the next leader
    /// wins no earlier than that. With the default policy the two serving
    /// intervals never overlap, for every vanish and win time.
    #[test]
    fn old_and_new_leader_never_overlap_with_the_default_policy() {
        let c = clock();
        for k in [0u64, 700, 3000] {
            let mut old = LeaseClock::new(ms(1000));
            old.granted(c.at(0), ms(5000));
            old.renewed(c.at(k), ms(5000));
            let old_end = old.serve_until().unwrap();
            for vanish in (k..k + 6000).step_by(250) {
                for delay in [0u64, 10, 400] {
                    let won = c.at(vanish + delay);
                    let start = takeover_at(
                        won,
                        Previous::Vanished { ttl: ms(5000) },
                        TakeoverPolicy::WaitPreviousTtl,
                    );
                    assert!(start >= old_end, "k={k} vanish={vanish} delay={delay}");
                }
            }
        }
    }
}

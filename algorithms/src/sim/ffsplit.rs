//! Random schedules of ffsplit clusters (2-8 nodes; see
//! docs/safety-testing.md, "ffsplit schedules"): used by
//! `tests::safety::ffsplit_safety_randomized_schedules` and, with the
//! `fuzzing` feature, by the fuzz target.

use crate::sim::world::World;
use crate::sim::Rng;
use crate::{AlgorithmKind, Heuristics, NodeId, TieBreaker};

/// One schedule: 60-159 random steps with the safety check after each,
/// then the liveness check; panics on the first violation. `label` names
/// the schedule in failure messages (its seed).
pub(crate) fn run_schedule(rng: Rng, label: &str, tracing: bool) {
    run(rng, label, tracing, false);
}

/// [`run_schedule`] with server restarts: before each step, 0-3 s of
/// virtual time pass, the server restarts with probability 3 % (clients
/// drop to NACK) and, with probability 20 %, a random node's timer fires
/// if it is due (the restart hold's end).
pub(crate) fn run_schedule_with_restarts(rng: Rng, label: &str, tracing: bool) {
    run(rng, label, tracing, true);
}

fn run(rng: Rng, label: &str, tracing: bool, restarts: bool) {
    let mut s = Schedule::new(rng, label, tracing);
    let steps = 60 + s.rng.below(100);
    for _ in 0..steps {
        if restarts {
            s.restart_step();
        }
        s.random_step();
        s.check_safety();
    }
    s.check_liveness();
}

fn random_heuristics(rng: &mut Rng) -> Heuristics {
    [Heuristics::Undefined, Heuristics::Pass, Heuristics::Fail][rng.below(3)]
}

struct Schedule {
    rng: Rng,
    world: World,
}

impl Schedule {
    fn new(mut rng: Rng, label: &str, tracing: bool) -> Schedule {
        // 2-8 distinct node ids out of 1..=12, ascending.
        let count = 2 + rng.below(7);
        let mut ids: Vec<NodeId> = Vec::new();
        while ids.len() < count {
            let id = 1 + rng.below(12) as NodeId;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let tb = match rng.below(4) {
            0 => TieBreaker::Lowest,
            1 => TieBreaker::Highest,
            2 => TieBreaker::NodeId(ids[rng.below(ids.len())]),
            _ => TieBreaker::NodeId(1 + rng.below(12) as NodeId),
        };
        let label = format!("{label} ids {ids:?} tie-breaker {tb:?}");
        let world = World::new(AlgorithmKind::Ffsplit, tb, &ids, false, 2, label, tracing);
        Schedule { rng, world }
    }

    /// Time passes, the server may restart, a due timer may fire.
    fn restart_step(&mut self) {
        let ms = self.rng.below(3000) as u64;
        self.world.advance(ms);
        if self.rng.chance(3) {
            self.world.restart(false);
        }
        if self.rng.chance(20) {
            let i = self.rng.below(self.world.nodes.len());
            let due = self.world.server.timer(self.world.nodes[i].id);
            if due.is_some_and(|t| t <= self.world.server.now_ms()) {
                self.world.fire_timer(i);
            }
        }
    }

    fn check_safety(&self) {
        if let Err(e) = self.world.check_safety() {
            self.world.fail(e);
        }
    }

    /// INIT with random KAP and heuristics; quorum lists say inquorate.
    fn connect(&mut self, i: usize) {
        let kap = self.rng.chance(50);
        let heuristics = random_heuristics(&mut self.rng);
        self.world.connect(i, kap, heuristics, false);
    }

    /// A new partitioning; each node of a changed group follows its
    /// membership list with a quorum list 30 % of the time.
    fn repartition(&mut self, assignment: &[usize], force: bool) {
        let rng = &mut self.rng;
        self.world
            .repartition(assignment, force, false, &mut || rng.chance(30));
    }

    fn random_assignment(&mut self) -> (usize, Vec<usize>) {
        let groups = 1 + self.rng.below(3);
        let assignment = (0..self.world.nodes.len())
            .map(|_| self.rng.below(groups))
            .collect();
        (groups, assignment)
    }

    /// Delivers one pending message of a random busy node, either way;
    /// false if nothing was pending.
    fn deliver_random(&mut self) -> bool {
        let busy = self.world.busy();
        if busy.is_empty() {
            return false;
        }
        let i = busy[self.rng.below(busy.len())];
        let n = &self.world.nodes[i];
        let to_server = match (n.up.is_empty(), n.down.is_empty()) {
            (false, true) => true,
            (true, false) => false,
            _ => self.rng.chance(50),
        };
        if to_server {
            self.world.deliver_up(i);
        } else {
            self.world.deliver_down(i);
        }
        true
    }

    /// One random step: mostly message deliveries, otherwise a change that
    /// can move the vote (network split/merge, heuristics result,
    /// disconnect, reconnect, config reload).
    fn random_step(&mut self) {
        let i = self.rng.below(self.world.nodes.len());
        let connected = self.world.nodes[i].connected;
        match self.rng.below(100) {
            0..=54 => {
                self.deliver_random();
            }
            // Let everything settle (safety is checked after each message).
            55..=61 => self.drain(),
            62..=66 => {
                let (_, assignment) = self.random_assignment();
                self.repartition(&assignment, false);
            }
            67..=80 if connected => {
                let h = random_heuristics(&mut self.rng);
                self.world.change_heuristics(i, h);
            }
            81..=86 if connected => self.world.disconnect(i),
            87..=97 if !connected => self.connect(i),
            98..=99 if connected => self.world.change_config(i),
            _ => {}
        }
    }

    /// Delivers everything still queued, in random order.
    fn drain(&mut self) {
        while self.deliver_random() {
            self.check_safety();
        }
    }

    /// Liveness: with everybody connected, a fresh partitioning and all
    /// messages delivered, exactly the members of one partition that may be
    /// quorate (at least half the nodes) hold ACK, if there is one.
    fn check_liveness(&mut self) {
        for i in 0..self.world.nodes.len() {
            if !self.world.nodes[i].connected {
                self.connect(i);
            }
        }
        let (groups, assignment) = self.random_assignment();
        self.repartition(&assignment, true);
        self.drain();

        let total = self.world.nodes.len();
        let holders = self.world.holders();
        let eligible: Vec<Vec<NodeId>> = (0..groups)
            .map(|g| {
                self.world
                    .group_members(g)
                    .iter()
                    .map(|n| n.node_id)
                    .collect::<Vec<_>>()
            })
            .filter(|m| !m.is_empty() && 2 * m.len() >= total)
            .collect();
        if eligible.is_empty() {
            if !holders.is_empty() {
                self.world.fail("ACK without a quorate partition");
            }
        } else if !eligible.contains(&holders) {
            self.world.fail(format!(
                "ACK holders {holders:?} are not one eligible partition of {eligible:?}"
            ));
        }
    }
}

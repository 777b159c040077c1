//! Random schedules of lms and 2nodelms clusters (see
//! docs/safety-testing.md, "lms / 2nodelms schedules"): used by the
//! `tests::safety` tests of both algorithms and, with the `fuzzing` feature,
//! by the fuzz target.

use crate::sim::world::World;
use crate::sim::Rng;
use crate::{AlgorithmKind, Heuristics, NodeId, TieBreaker};

fn pick_heuristics(rng: &mut Rng, defined: bool) -> Heuristics {
    match rng.below(if defined { 2 } else { 3 }) {
        0 => Heuristics::Pass,
        1 => Heuristics::Fail,
        _ => Heuristics::Undefined,
    }
}

/// One random schedule of `steps` steps for `seed`, on 2nodelms or lms
/// with one of `node_counts` nodes, followed by settling; panics on the
/// first violation. Returns the steps done and how many nodes hold ACK
/// after settling.
#[cfg(test)]
pub(crate) fn run_one(
    kind: AlgorithmKind,
    seed: u64,
    tracing: bool,
    steps: usize,
    node_counts: &[usize],
    keeps_vote: bool,
) -> (usize, usize) {
    let rng = Rng::new(seed.wrapping_add((kind as u64) << 40));
    let label = format!("seed {seed}");
    let plan = Plan {
        steps,
        node_counts,
        keeps_vote,
        restarts: false,
    };
    run_with(kind, rng, &label, tracing, &plan)
}

/// [`run_one`] with server restarts: before each step, 0-3 s of virtual
/// time pass and the server restarts with probability 3 %; every client
/// keeps its vote over a restart (2nodelms; lms clients with
/// `wait_for_all` while quorate), whatever `keeps_vote` says of ordinary
/// disconnects.
#[cfg(test)]
pub(crate) fn run_one_with_restarts(
    kind: AlgorithmKind,
    seed: u64,
    tracing: bool,
    steps: usize,
    node_counts: &[usize],
    keeps_vote: bool,
) -> (usize, usize) {
    let rng = Rng::new(seed.wrapping_add((kind as u64) << 40));
    let label = format!("seed {seed}");
    let plan = Plan {
        steps,
        node_counts,
        keeps_vote,
        restarts: true,
    };
    run_with(kind, rng, &label, tracing, &plan)
}

/// The shape of a schedule.
pub(crate) struct Plan<'a> {
    /// Random steps before settling.
    pub(crate) steps: usize,
    /// Cluster sizes to pick from.
    pub(crate) node_counts: &'a [usize],
    /// A client keeps its vote when its connection drops (2nodelms).
    pub(crate) keeps_vote: bool,
    /// The server restarts now and then (every client keeps its vote).
    pub(crate) restarts: bool,
}

/// [`run_one`] with the choices taken from `rng`; `label` names the
/// schedule in failure messages.
pub(crate) fn run_with(
    kind: AlgorithmKind,
    mut rng: Rng,
    label: &str,
    tracing: bool,
    plan: &Plan<'_>,
) -> (usize, usize) {
    let Plan {
        steps,
        node_counts,
        keeps_vote,
        restarts,
    } = *plan;
    let count = node_counts[rng.below(node_counts.len())];
    let mut ids: Vec<NodeId> = Vec::new();
    while ids.len() < count {
        let id = match rng.below(4) {
            0 => 0x8000_0000 + rng.below(5) as u32,
            1 => u32::MAX - rng.below(3) as u32,
            _ => 1 + rng.below(8) as u32,
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let tie_breaker = match rng.below(3) {
        0 => TieBreaker::Lowest,
        1 => TieBreaker::Highest,
        _ => TieBreaker::NodeId(if rng.below(4) == 0 {
            12345
        } else {
            ids[rng.below(ids.len())]
        }),
    };
    let defined = rng.below(2) == 0;
    let label = format!("{label} ids {ids:?} tie-breaker {tie_breaker:?}");
    let world = World::new(kind, tie_breaker, &ids, keeps_vote, 1, label, tracing);
    let mut s = Schedule { rng, world };
    for id in ids {
        if s.rng.below(4) != 0 {
            s.connect_id(id);
        }
    }
    for _ in 0..steps {
        if restarts {
            let ms = s.rng.below(3000) as u64;
            s.world.advance(ms);
            if s.rng.chance(3) {
                s.world.restart(true);
            }
        }
        s.step(defined);
        if let Err(e) = s.world.check_safety() {
            s.world.fail(e);
        }
    }
    s.settle();
    let holders = s.world.holders().len();
    if holders == 0 {
        s.world.fail("nobody holds ACK after settling");
    }
    let missing = s.world.ring_without_ack();
    if !missing.is_empty() {
        s.world.fail(format!(
            "nodes {missing:?} of the ring holding ACK do not hold it after settling"
        ));
    }
    (steps, holders)
}

struct Schedule {
    rng: Rng,
    world: World,
}

impl Schedule {
    /// INIT without KAP, with the node's current heuristics; quorum lists
    /// say quorate.
    fn connect_id(&mut self, id: NodeId) {
        if let Some(i) = self.world.index_of(id) {
            let h = self.world.nodes[i].heuristics;
            self.world.connect(i, false, h, true);
        }
    }

    /// A new partitioning into 1..=n groups; every changed client follows
    /// its membership list with a quorum list.
    fn repartition(&mut self) {
        let k = 1 + self.rng.below(self.world.nodes.len());
        let assignment: Vec<usize> = (0..self.world.nodes.len())
            .map(|_| self.rng.below(k))
            .collect();
        self.world
            .repartition(&assignment, false, true, &mut || true);
    }

    /// One random step on a random node.
    fn step(&mut self, defined_heuristics: bool) {
        let i = self.rng.below(self.world.nodes.len());
        let n = &self.world.nodes[i];
        let (id, connected, ups, downs) = (n.id, n.connected, n.up.len(), n.down.len());
        let timer = self.world.server.timer(id).is_some();
        match self.rng.below(100) {
            0..=34 if ups > 0 => self.world.deliver_up(i),
            35..=64 if downs > 0 => self.world.deliver_down(i),
            65..=72 if timer => self.world.fire_timer(i),
            73..=79 => self.repartition(),
            80..=86 if connected => {
                let h = pick_heuristics(&mut self.rng, true);
                self.world.change_heuristics(i, h);
            }
            87..=92 if connected => self.world.disconnect(i),
            93..=99 if !connected => {
                self.world.nodes[i].heuristics = pick_heuristics(&mut self.rng, defined_heuristics);
                self.connect_id(id);
            }
            _ => {}
        }
    }

    /// Connects everybody and delivers every queued message, in random
    /// order, until nothing is left to do. Timers are not fired: the
    /// liveness check after it requires progress from messages alone.
    fn settle(&mut self) {
        for i in 0..self.world.nodes.len() {
            if !self.world.nodes[i].connected {
                let id = self.world.nodes[i].id;
                self.connect_id(id);
            }
        }
        for _ in 0..10_000 {
            let busy = self.world.busy();
            if busy.is_empty() {
                return;
            }
            let i = busy[self.rng.below(busy.len())];
            // Either direction, whichever has something (the other way
            // when the chosen one is empty).
            let (ups, downs) = (self.world.nodes[i].up.len(), self.world.nodes[i].down.len());
            let up = if ups == 0 || downs == 0 {
                ups > 0
            } else {
                self.rng.below(2) == 0
            };
            if up {
                self.world.deliver_up(i);
            } else {
                self.world.deliver_down(i);
            }
            if let Err(e) = self.world.check_safety() {
                self.world.fail(format!("{e} while settling"));
            }
        }
    }
}

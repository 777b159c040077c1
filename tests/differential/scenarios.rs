//! The scenarios: scripts of steps over named nodes, the final vote every
//! node must hold on both servers, and the differences by design (exact
//! outcome on each side, with the reason).
//!
//! Trace notation (what a node received, in order): `cfg:`/`mem:`/`quo:`
//! NODE_LIST_REPLY to a config/membership/quorum list, `heur:`
//! HEURISTICS_CHANGE_REPLY, `ask:` ASK_FOR_VOTE_REPLY, `vi:` VOTE_INFO, then
//! the vote and `@node/seq` of the ring id; `err:N` SERVER_ERROR N;
//! `closed` the server closed the connection. Final votes: ACK, NACK, WAIT,
//! ASK_LATER, none (never a vote for the current ring), gone (disconnected
//! by the script), closed (by the server).

use qnetd_core::wire::{AlgorithmKind, Heuristics, RingId, TieBreaker};

use crate::driver::{ClusterParams, Step};

const U: Heuristics = Heuristics::Undefined;
const PASS: Heuristics = Heuristics::Pass;
const FAIL: Heuristics = Heuristics::Fail;

const fn r(node: u32, seq: u64) -> RingId {
    RingId::new(node, seq)
}

/// A declared difference by design for one node.
#[derive(Clone, Debug)]
pub struct Difference {
    pub node: u32,
    pub reason: &'static str,
    /// (trace, final vote) on the reference.
    pub reference: (&'static str, &'static str),
    /// (trace, final vote) on ours.
    pub ours: (&'static str, &'static str),
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub covers: &'static str,
    pub cluster: ClusterParams,
    pub steps: Vec<Step>,
    /// Final vote of every node without a declared difference, on both.
    pub expect: Vec<(u32, &'static str)>,
    pub differences: Vec<Difference>,
    /// Server state at the end: (reference, ours), "alive" or "died".
    pub server_end: (&'static str, &'static str),
}

fn sc(
    name: &'static str,
    covers: &'static str,
    algorithm: AlgorithmKind,
    tie_breaker: TieBreaker,
) -> Scenario {
    Scenario {
        name,
        covers,
        cluster: ClusterParams {
            name: format!("diff-{name}"),
            algorithm,
            tie_breaker,
            // corosync-qdevice's default (keep_active_partition_tie_breaker=on).
            kap: Some(true),
        },
        steps: Vec::new(),
        expect: Vec::new(),
        differences: Vec::new(),
        server_end: ("alive", "alive"),
    }
}

impl Scenario {
    fn kap(mut self, kap: Option<bool>) -> Self {
        self.cluster.kap = kap;
        self
    }
    fn step(mut self, s: Step) -> Self {
        self.steps.push(s);
        self
    }
    fn connect(self, node: u32, ring: RingId) -> Self {
        self.step(Step::Connect { node, ring })
    }
    fn config(self, node: u32, nodes: &[u32], initial: bool) -> Self {
        self.step(Step::Config {
            node,
            nodes: nodes.to_vec(),
            initial,
        })
    }
    fn mem(self, node: u32, ring: RingId, members: &[u32], heur: Heuristics) -> Self {
        self.step(Step::Membership {
            node,
            ring,
            members: members.to_vec(),
            heur,
        })
    }
    fn quorum(self, node: u32, members: &[u32]) -> Self {
        self.step(Step::Quorum {
            node,
            members: members.to_vec(),
        })
    }
    fn heur(self, node: u32, heur: Heuristics) -> Self {
        self.step(Step::Heuristics { node, heur })
    }
    fn ask(self, node: u32) -> Self {
        self.step(Step::Ask { node })
    }
    fn hold(self, node: u32) -> Self {
        self.step(Step::Hold { node })
    }
    fn release(self, node: u32) -> Self {
        self.step(Step::Release { node })
    }
    fn leave(self, node: u32) -> Self {
        self.step(Step::Disconnect { node })
    }
    /// What corosync-qdevice does on connect: INIT (with the current ring),
    /// SET_OPTION(KAP), initial config list, membership list, quorum list.
    fn join(self, node: u32, config: &[u32], ring: RingId, members: &[u32], h: Heuristics) -> Self {
        self.connect(node, ring)
            .config(node, config, true)
            .mem(node, ring, members, h)
            .quorum(node, members)
    }
    /// Every node of `nodes` joins, all in one ring with all of them.
    fn join_all(mut self, nodes: &[u32]) -> Self {
        for &n in nodes {
            self = self.join(n, nodes, r(1, 4), nodes, U);
        }
        self
    }
    /// A split: each partition's members report its ring and member list,
    /// partition after partition, node after node.
    fn split(self, parts: &[(RingId, &[u32], Heuristics)]) -> Self {
        let mut steps = Vec::new();
        for (ring, members, heur) in parts {
            for &node in members.iter() {
                steps.push(Step::Membership {
                    node,
                    ring: *ring,
                    members: members.to_vec(),
                    heur: *heur,
                });
            }
        }
        self.step(Step::Group(steps))
    }
    fn expect(mut self, finals: &[(u32, &'static str)]) -> Self {
        self.expect.extend_from_slice(finals);
        self
    }
    fn differs(
        mut self,
        node: u32,
        reason: &'static str,
        reference: (&'static str, &'static str),
        ours: (&'static str, &'static str),
    ) -> Self {
        self.differences.push(Difference {
            node,
            reason,
            reference,
            ours,
        });
        self
    }
    fn server_end(mut self, reference: &'static str, ours: &'static str) -> Self {
        self.server_end = (reference, ours);
        self
    }
}

use AlgorithmKind::{Ffsplit, Lms, TwoNodeLms};
use TieBreaker::{Highest, Lowest, NodeId};

pub fn all() -> Vec<Scenario> {
    vec![
        // ------------------------------------------------------------ ffsplit
        sc("ffsplit-2-lowest", "2-node ffsplit 1/1 split, tie-breaker lowest: node 1 keeps the vote", Ffsplit, Lowest)
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U)])
            .expect(&[(1, "ACK"), (2, "NACK")]),
        sc("ffsplit-2-highest", "2-node ffsplit 1/1 split, tie-breaker highest: node 2 gets the vote", Ffsplit, Highest)
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U)])
            .expect(&[(1, "NACK"), (2, "ACK")]),
        sc("ffsplit-2-nodeid", "2-node ffsplit 1/1 split, tie-breaker node id 2 (node 1 reports first)", Ffsplit, NodeId(2))
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U)])
            .expect(&[(1, "NACK"), (2, "ACK")]),
        sc("ffsplit-4-heuristics", "4-node ffsplit 2/2 split: heuristics (fail vs pass) beat the lowest tie-breaker", Ffsplit, Lowest)
            .join_all(&[1, 2, 3, 4])
            .split(&[(r(1, 8), &[1, 2], FAIL), (r(3, 8), &[3, 4], PASS)])
            .expect(&[(1, "NACK"), (2, "NACK"), (3, "ACK"), (4, "ACK")]),
        sc("ffsplit-4-3-1", "4-node ffsplit 3/1 split: the majority wins against the lowest tie-breaker", Ffsplit, Lowest)
            .join_all(&[1, 2, 3, 4])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2, 3, 4], U)])
            .expect(&[(1, "NACK"), (2, "ACK"), (3, "ACK"), (4, "ACK")]),
        sc("ffsplit-4-1-1-1-1", "4-node ffsplit 1/1/1/1 split: no partition has half, everybody NACK", Ffsplit, Lowest)
            .join_all(&[1, 2, 3, 4])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U), (r(3, 8), &[3], U), (r(4, 8), &[4], U)])
            .expect(&[(1, "NACK"), (2, "NACK"), (3, "NACK"), (4, "NACK")]),
        sc("ffsplit-kap-on", "keep-active-partition on: after a heuristics-decided split the tie-breaker would move the vote to node 1, KAP keeps it on node 2", Ffsplit, Lowest)
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], FAIL), (r(2, 8), &[2], PASS)])
            .heur(1, PASS)
            .expect(&[(1, "NACK"), (2, "ACK")]),
        sc("ffsplit-kap-off", "the same with KAP off (SET_OPTION kap=0): the lowest tie-breaker moves the vote to node 1", Ffsplit, Lowest)
            .kap(Some(false))
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], FAIL), (r(2, 8), &[2], PASS)])
            .heur(1, PASS)
            .expect(&[(1, "ACK"), (2, "NACK")]),
        sc("ffsplit-disconnect", "2-node ffsplit split, then the winner disconnects: the vote moves to node 2", Ffsplit, Lowest)
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U)])
            .leave(1)
            .expect(&[(1, "gone"), (2, "ACK")]),
        sc("ffsplit-errors", "ffsplit list errors: config without the sender (18), membership without the sender (19), ASK_FOR_VOTE (14)", Ffsplit, Lowest)
            .join(1, &[1, 2], r(1, 4), &[1, 2], U)
            .connect(2, r(1, 4))
            .config(2, &[1, 3], true)
            .config(2, &[1, 2], true)
            .mem(2, r(1, 4), &[1, 3], U)
            .mem(2, r(1, 4), &[1, 2], U)
            .quorum(2, &[1, 2])
            .ask(2)
            .expect(&[(1, "ACK"), (2, "ACK")]),
        sc("ffsplit-not-ready-peer", "ffsplit decision while a peer has sent its config list but no membership list yet", Ffsplit, Lowest)
            .join(1, &[1, 2], r(1, 4), &[1, 2], U)
            .connect(2, r(1, 4))
            .config(2, &[1, 2], true)
            .mem(1, r(1, 8), &[1], U)
            .mem(2, r(2, 8), &[2], U)
            .quorum(2, &[2])
            .differs(1, "ffsplit module, not-ready clients (quirks 25, 28): while node 2 has sent no membership list ours decides nothing (WAIT) and gives the ACK once node 2 reported; the reference decides at once (and re-sends ACK)",
                ("cfg:ASK_LATER@1/4 vi:ACK@1/4 mem:NO_CHANGE@1/4 quo:NO_CHANGE@1/4 mem:NO_CHANGE@1/8 vi:ACK@1/8 vi:ACK@1/8", "ACK"),
                ("cfg:ASK_LATER@1/4 vi:ACK@1/4 mem:NO_CHANGE@1/4 quo:NO_CHANGE@1/4 mem:WAIT@1/8 vi:ACK@1/8", "ACK"))
            .differs(2, "quirks 25, 28: the reference sends VOTE_INFO(NACK) to node 2 before its membership list (a 3.0.x client exits on that); ours sends nothing before both lists",
                ("cfg:ASK_LATER@1/4 vi:NACK@1/4 vi:NACK@2/8 mem:NO_CHANGE@2/8 quo:NO_CHANGE@2/8", "NACK"),
                ("cfg:ASK_LATER@1/4 vi:NACK@2/8 mem:NO_CHANGE@2/8 quo:NO_CHANGE@2/8", "NACK")),
        sc("ffsplit-late-reply", "ffsplit: a late VOTE_INFO_REPLY of an old round while the node's new ACK is held back (quirk 2)", Ffsplit, Lowest)
            .join_all(&[1, 2])
            .hold(2)
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U)])
            .hold(1)
            .heur(2, PASS)
            .release(2)
            .release(1)
            .expect(&[(1, "NACK")])
            .differs(2, "quirk 2: in the reference node 2's late reply to its old NACK cancels its pending ACK, so nobody holds the vote; ours ignores that reply and sends the ACK once node 1 acknowledged its NACK",
                ("cfg:ASK_LATER@1/4 vi:ACK@1/4 mem:NO_CHANGE@1/4 quo:NO_CHANGE@1/4 vi:NACK@2/8 mem:NO_CHANGE@2/8 heur:NO_CHANGE@2/8", "NACK"),
                ("cfg:ASK_LATER@1/4 vi:ACK@1/4 mem:NO_CHANGE@1/4 quo:NO_CHANGE@1/4 vi:NACK@2/8 mem:NO_CHANGE@2/8 heur:NO_CHANGE@2/8 vi:ACK@2/8", "ACK")),
        sc("ffsplit-lone-unready", "ffsplit: the only other client of the cluster disconnects while a client has sent no lists (quirk 1)", Ffsplit, Lowest)
            .join(1, &[1, 2], r(1, 4), &[1, 2], U)
            .connect(2, r(1, 4))
            .leave(1)
            .expect(&[(1, "gone")])
            .server_end("died (signal 11)", "alive")
            .differs(2, "quirk 1: the reference runs its tie-breaker on node 2's empty config list and crashes (SIGSEGV), dropping every client; ours treats node 2 as not ready and sends nothing",
                ("closed", "closed"),
                ("", "none")),
        // ---------------------------------------------------------------- lms
        sc("lms-3-split", "3-node lms 1/2/3 split into singletons: the lowest node keeps the vote", Lms, Lowest)
            .join_all(&[1, 2, 3])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U), (r(3, 8), &[3], U)])
            .expect(&[(1, "ACK"), (2, "NACK")])
            .differs(3, "lms quirk 8: the reference checks ring settling against node 3's previous membership [1,2,3], answers WAIT and sends NACK from its timer; ours uses the new list, all rings have settled, NACK at once",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@3/8 vi:NACK@3/8", "NACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:NACK@3/8", "NACK")),
        sc("lms-3-split-merge", "3-node lms: after the 1/2/3 split nodes 2 and 3 merge into the larger partition (quirk 26)", Lms, Lowest)
            .join_all(&[1, 2, 3])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U), (r(3, 8), &[3], U)])
            .mem(2, r(2, 12), &[2, 3], U)
            .mem(3, r(2, 12), &[2, 3], U)
            .quorum(2, &[2, 3])
            .quorum(3, &[2, 3])
            .differs(1, "quirk 26: the reference gives the merged ring 2/12 ACK while node 1 keeps its ACK for ring 1/8 (two rings with ACK); ours takes node 1's ACK away first (VOTE_INFO NACK)",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@1/8 vi:ACK@1/8", "ACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@1/8 vi:ACK@1/8 vi:NACK@1/8", "NACK"))
            .differs(2, "quirks 8, 26: the reference answers the merge from stale rings (NACK) and gives ACK on the quorum list; ours waits for node 3's ring, then for node 1's NACK acknowledgement, then sends ACK",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@2/8 vi:NACK@2/8 mem:NACK@2/12 quo:ACK@2/12", "ACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@2/8 vi:NACK@2/8 mem:WAIT@2/12 vi:ACK@2/12 quo:ACK@2/12", "ACK"))
            .differs(3, "quirk 8 at the split (see lms-3-split), then as node 2: ACK only after node 1 acknowledged its NACK",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@3/8 vi:NACK@3/8 mem:NACK@2/12 quo:ACK@2/12", "ACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:NACK@3/8 mem:WAIT@2/12 vi:ACK@2/12 quo:ACK@2/12", "ACK")),
        sc("lms-3-winners-leave", "3-node lms 1 | 2,3 split, then the winning pair disconnects (quirk 10)", Lms, Lowest)
            .join_all(&[1, 2, 3])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2, 3], U)])
            .leave(2)
            .leave(3)
            .expect(&[(2, "gone")])
            .differs(1, "quirk 10: the reference never re-decides on a disconnect, node 1 keeps NACK; ours re-decides and node 1, the only partition left, gets ACK",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@1/8 vi:NACK@1/8", "NACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@1/8 vi:NACK@1/8 vi:ACK@1/8", "ACK"))
            .differs(3, "quirk 8 at the split (ours answers ACK at once); quirk 10 when node 2 leaves: ours re-decides 1 vs 1 (lowest tie-breaker, as the reference would on node 3's next event) and takes the ACK away from node 3",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@2/8 vi:ACK@2/8", "gone"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:ACK@2/8 vi:NACK@2/8", "gone")),
        sc("lms-4-nodeid", "4-node lms 2/2 split with tie-breaker node 3 (quirk 7)", Lms, NodeId(3))
            .join_all(&[1, 2, 3, 4])
            .split(&[(r(1, 8), &[1, 2], U), (r(3, 8), &[3, 4], U)])
            .expect(&[(1, "NACK"), (2, "NACK"), (3, "ACK")])
            .differs(4, "quirk 7: the reference gives ACK to the nominated node only, its partition peer gets NACK; ours gives the whole partition of node 3 ACK (and answers at once, quirk 8)",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:WAIT@3/8 vi:NACK@3/8", "NACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:ACK@1/4 mem:ACK@3/8", "ACK")),
        // ----------------------------------------------------------- 2nodelms
        sc("2nodelms-split", "2nodelms split, tie-breaker lowest: node 1 ACK, node 2 NACK", TwoNodeLms, Lowest)
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U)])
            .expect(&[(2, "NACK")])
            .differs(1, "quirk 26: ours decides nothing while node 2 still reports ring 1/4 (it may hold ACK there) and sends the ACK once node 2 reported; the reference answers from node 2's stale ring",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:ACK@1/8", "ACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:WAIT@1/8 vi:ACK@1/8", "ACK")),
        sc("2nodelms-stale-heuristics", "2nodelms split where the first reporter is compared with its peer's pre-split heuristics (quirk 26)", TwoNodeLms, Lowest)
            .join(1, &[1, 2], r(1, 4), &[1, 2], FAIL)
            .join(2, &[1, 2], r(1, 4), &[1, 2], U)
            .split(&[(r(2, 8), &[2], PASS), (r(1, 8), &[1], PASS)])
            .expect(&[(1, "ACK")])
            .differs(2, "quirk 26: the reference compares node 2's PASS with node 1's pre-split FAIL and gives ACK, then node 1 (PASS, lowest) gets ACK too: two ACKs; ours waits for node 1's new ring and gives node 2 NACK",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:ACK@2/8", "ACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:WAIT@2/8 vi:NACK@2/8", "NACK")),
        sc("2nodelms-winner-leaves", "2nodelms split, the winner leaves qnetd, the loser reports a new ring", TwoNodeLms, Lowest)
            .join_all(&[1, 2])
            .split(&[(r(1, 8), &[1], U), (r(2, 8), &[2], U)])
            .leave(1)
            .mem(2, r(2, 12), &[2], U)
            .differs(1, "as in 2nodelms-split: ours waits for node 2's new ring before the ACK",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:ACK@1/8", "gone"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:WAIT@1/8 vi:ACK@1/8", "gone"))
            .differs(2, "2nodelms module: a departed winner keeps its ACK (a 2nodelms client keeps its vote without the server), so ours gives no other ring ACK until ring 1/8 provably ended (WAIT); the reference gives node 2 ACK, possibly a second ACK",
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:NACK@2/8 mem:ACK@2/12", "ACK"),
                ("cfg:NO_CHANGE@1/4 mem:ACK@1/4 quo:NO_CHANGE@1/4 mem:NACK@2/8 mem:WAIT@2/12", "WAIT")),
        sc("2nodelms-bad-config", "2nodelms with 3 configured nodes: SERVER_ERROR 12 (quirk 23)", TwoNodeLms, Lowest)
            .connect(1, r(1, 4))
            .config(1, &[1, 2, 3], true)
            .expect(&[(1, "none")]),
    ]
}

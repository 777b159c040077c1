//! Cost of the ffsplit and lms decisions for clusters of 2 to 64 nodes
//! (`cargo bench -p qnetd-algorithms`), through the public [`Cluster`] API
//! as the server drives it:
//!
//! - `decision`: the one membership list that completes a 50:50 split (the
//!   last node of the second half reports its new ring) and the decision it
//!   triggers. The cluster before it (everybody joined with ACK, the other
//!   n-1 nodes already reported the split) is built outside the timing.
//! - `round`: one cluster-wide membership change (every node reports the new
//!   ring: the whole cluster, or its halves after a split, alternately), the
//!   decisions it leads to, and the VOTE_INFO_REPLY round trips until the
//!   ACKs went out.

use qnetd_algorithms::{
    Action, AlgorithmKind, Cluster, Event, Heuristics, NodeId, NodeInfo, RingId, TieBreaker,
};

fn main() {
    divan::main();
}

const NODES: &[u32] = &[2, 4, 8, 16, 32, 64];

struct Sim {
    cluster: Cluster,
    nodes: u32,
    seq: u64,
    pending: Vec<(NodeId, u32)>,
}

fn list(ids: &[NodeId]) -> Vec<NodeInfo> {
    ids.iter().map(|&id| NodeInfo::new(id)).collect()
}

impl Sim {
    /// `nodes` clients with config 1..=nodes, all in one ring with ACK.
    fn new(kind: AlgorithmKind, nodes: u32) -> Sim {
        let mut cluster = Cluster::new(kind, TieBreaker::Lowest);
        let ring = RingId::new(1, 4);
        let all: Vec<NodeId> = (1..=nodes).collect();
        for id in 1..=nodes {
            cluster
                .join(id, kind, TieBreaker::Lowest, ring, 8000, true, 0)
                .expect("join");
        }
        let mut sim = Sim {
            cluster,
            nodes,
            seq: 4,
            pending: Vec::new(),
        };
        for id in 1..=nodes {
            let out = sim.cluster.handle(
                id,
                Event::ConfigList {
                    nodes: list(&all),
                    initial: true,
                    config_version: None,
                },
                0,
            );
            sim.collect(out.actions);
        }
        sim.round(false);
        sim
    }

    fn collect(&mut self, actions: Vec<Action>) {
        for a in actions {
            if let Action::SendVoteInfo { node, seq, .. } = a {
                self.pending.push((node, seq));
            }
        }
    }

    /// The partitions of the next change: the whole cluster or its halves.
    fn parts(&self, split: bool) -> Vec<Vec<NodeId>> {
        let all: Vec<NodeId> = (1..=self.nodes).collect();
        let half = (self.nodes / 2) as usize;
        if split {
            vec![all[..half].to_vec(), all[half..].to_vec()]
        } else {
            vec![all]
        }
    }

    /// Node `id` of partition `p` reports its membership.
    fn report(&mut self, id: NodeId, p: &[NodeId]) -> usize {
        let out = self.cluster.handle(
            id,
            Event::Membership {
                ring: RingId::new(p[0], self.seq),
                nodes: list(p),
                heuristics: Heuristics::Undefined,
            },
            0,
        );
        let n = out.actions.len();
        self.collect(out.actions);
        n
    }

    /// Acknowledges every VOTE_INFO sent, and those they lead to; returns
    /// how many.
    fn acknowledge(&mut self) -> usize {
        let mut sent = 0;
        while let Some((node, seq)) = self.pending.pop() {
            sent += 1;
            let out = self.cluster.handle(node, Event::VoteInfoReply { seq }, 0);
            self.collect(out.actions);
        }
        sent
    }

    /// One membership change and its decision; returns VOTE_INFOs sent.
    fn round(&mut self, split: bool) -> usize {
        self.seq += 4;
        for p in self.parts(split) {
            for &id in &p {
                self.report(id, &p);
            }
        }
        self.acknowledge()
    }

    /// A cluster in which every node but the last reported a 50:50 split.
    fn before_split_decision(kind: AlgorithmKind, nodes: u32) -> (Sim, Vec<NodeId>) {
        let mut sim = Sim::new(kind, nodes);
        sim.seq += 4;
        let parts = sim.parts(true);
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            for &id in &p[..p.len() - usize::from(last)] {
                sim.report(id, p);
            }
        }
        sim.pending.clear();
        let second = parts.last().cloned().unwrap_or_default();
        (sim, second)
    }
}

fn decision(bencher: divan::Bencher, kind: AlgorithmKind, nodes: u32) {
    bencher
        .counter(divan::counter::ItemsCount::new(1usize))
        .with_inputs(|| Sim::before_split_decision(kind, nodes))
        .bench_local_refs(|(sim, part)| {
            let last = part[part.len() - 1];
            divan::black_box(sim.report(last, part))
        });
}

fn round(bencher: divan::Bencher, kind: AlgorithmKind, nodes: u32) {
    let mut sim = Sim::new(kind, nodes);
    let mut split = false;
    bencher
        .counter(divan::counter::ItemsCount::new(1usize))
        .bench_local(|| {
            split = !split;
            divan::black_box(sim.round(split))
        });
}

mod ffsplit {
    use super::*;

    #[divan::bench(args = NODES)]
    fn decision(bencher: divan::Bencher, nodes: u32) {
        super::decision(bencher, AlgorithmKind::Ffsplit, nodes);
    }

    #[divan::bench(args = NODES)]
    fn round(bencher: divan::Bencher, nodes: u32) {
        super::round(bencher, AlgorithmKind::Ffsplit, nodes);
    }
}

mod lms {
    use super::*;

    #[divan::bench(args = NODES)]
    fn decision(bencher: divan::Bencher, nodes: u32) {
        super::decision(bencher, AlgorithmKind::Lms, nodes);
    }

    #[divan::bench(args = NODES)]
    fn round(bencher: divan::Bencher, nodes: u32) {
        super::round(bencher, AlgorithmKind::Lms, nodes);
    }
}

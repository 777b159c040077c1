//! Decisions per second of the ffsplit algorithm for 2-, 4- and 16-node
//! clusters: one iteration is a cluster-wide membership change (every node
//! reports the new ring: the whole cluster, or its half after a split),
//! the decision it leads to, and the VOTE_INFO_REPLY round trips until the
//! ACKs went out. `cargo bench -p qnetd-algorithms`.

use qnetd_algorithms::{
    Action, AlgorithmKind, Cluster, Event, Heuristics, NodeId, NodeInfo, RingId, TieBreaker,
};

fn main() {
    divan::main();
}

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

    /// One membership change and its decision; returns VOTE_INFOs sent.
    fn round(&mut self, split: bool) -> usize {
        self.seq += 4;
        let all: Vec<NodeId> = (1..=self.nodes).collect();
        let half = (self.nodes / 2) as usize;
        let parts: Vec<&[NodeId]> = if split {
            vec![&all[..half], &all[half..]]
        } else {
            vec![&all[..]]
        };
        for p in parts {
            let ring = RingId::new(p[0], self.seq);
            for &id in p {
                let out = self.cluster.handle(
                    id,
                    Event::Membership {
                        ring,
                        nodes: list(p),
                        heuristics: Heuristics::Undefined,
                    },
                    0,
                );
                self.collect(out.actions);
            }
        }
        let mut sent = 0;
        while let Some((node, seq)) = self.pending.pop() {
            sent += 1;
            let out = self.cluster.handle(node, Event::VoteInfoReply { seq }, 0);
            self.collect(out.actions);
        }
        sent
    }
}

#[divan::bench(args = [2, 4, 16])]
fn ffsplit_membership_change(bencher: divan::Bencher, nodes: u32) {
    let mut sim = Sim::new(AlgorithmKind::Ffsplit, nodes);
    let mut split = false;
    bencher
        .counter(divan::counter::ItemsCount::new(1usize))
        .bench_local(|| {
            split = !split;
            divan::black_box(sim.round(split))
        });
}

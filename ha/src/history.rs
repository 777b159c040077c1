//! The history checker: over a log of the votes every arbitrator instance
//! sent (VOTE_INFO and replies carrying a vote), reports each moment at
//! which ACKs in force cover two different partitions of one cluster.
//!
//! Model: a corosync-qdevice node holds one vote at a time, the last one it
//! was sent, whichever instance sent it. An ACK is in force from the event
//! that sent it until the next vote event for the same node (a NACK, an
//! ACK for another ring, ...) or until a [`Kind::Disconnected`] event for
//! the node that says it stops voting (`keeps_vote: false`; ffsplit nodes
//! drop their vote when they lose the server, lms and 2nodelms nodes may
//! keep it, so the log producer says which). Two ACKs in force conflict
//! when they are for two different partitions of one cluster: different
//! ring ids whose member lists are disjoint (a node belongs to one
//! partition at a time, so overlapping member lists are one partition's
//! successive rings). The function is pure; the events may come in any
//! order and are sorted by time (ties keep their input order).

use std::collections::{BTreeMap, HashMap};

/// A ring id: the node id and sequence number corosync sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ring {
    pub node_id: u32,
    pub seq: u64,
}

/// The vote a message carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vote {
    Ack,
    Nack,
    AskLater,
    WaitForReply,
    NoChange,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The instance sent `vote` to the node for `ring` (whose members are
    /// `members`).
    Vote {
        vote: Vote,
        ring: Ring,
        members: Vec<u32>,
    },
    /// The node's connection to the instance ended.
    Disconnected { keeps_vote: bool },
}

/// One event of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// A time common to every instance's log (e.g. CLOCK_MONOTONIC of the
    /// test host), any unit.
    pub time: u64,
    pub instance: String,
    pub cluster: Vec<u8>,
    pub node: u32,
    pub kind: Kind,
}

/// An ACK that was in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldAck {
    pub instance: String,
    pub node: u32,
    pub ring: Ring,
    pub members: Vec<u32>,
    pub since: u64,
}

/// Two ACKs in force at `time` for two partitions of `cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub time: u64,
    pub cluster: Vec<u8>,
    pub first: HeldAck,
    pub second: HeldAck,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {}: cluster {:?}: node {} holds ACK from {} for ring {}.{:x} {:?} (since {}) while node {} holds ACK from {} for ring {}.{:x} {:?} (since {})",
            self.time,
            String::from_utf8_lossy(&self.cluster),
            self.first.node,
            self.first.instance,
            self.first.ring.node_id,
            self.first.ring.seq,
            self.first.members,
            self.first.since,
            self.second.node,
            self.second.instance,
            self.second.ring.node_id,
            self.second.ring.seq,
            self.second.members,
            self.second.since,
        )
    }
}

fn disjoint(a: &[u32], b: &[u32]) -> bool {
    !a.iter().any(|x| b.contains(x))
}

/// Checks a history; returns every violation (the first one per pair of
/// conflicting ACKs), in time order. An empty result means the history
/// is safe.
pub fn check(events: &[Event]) -> Vec<Violation> {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.time);
    // per cluster: node -> the ACK it holds
    let mut held: HashMap<&[u8], BTreeMap<u32, HeldAck>> = HashMap::new();
    let mut out = Vec::new();
    let mut reported: Vec<(Vec<u8>, u32, u64, u32, u64)> = Vec::new();
    for e in order {
        let nodes = held.entry(e.cluster.as_slice()).or_default();
        match &e.kind {
            Kind::Vote {
                vote: Vote::Ack,
                ring,
                members,
            } => {
                let ack = HeldAck {
                    instance: e.instance.clone(),
                    node: e.node,
                    ring: *ring,
                    members: members.clone(),
                    since: e.time,
                };
                for other in nodes.values() {
                    if other.node == e.node || other.ring == ack.ring {
                        continue;
                    }
                    if disjoint(&other.members, &ack.members) {
                        let key = (e.cluster.clone(), other.node, other.since, e.node, e.time);
                        if !reported.contains(&key) {
                            reported.push(key);
                            out.push(Violation {
                                time: e.time,
                                cluster: e.cluster.clone(),
                                first: other.clone(),
                                second: ack.clone(),
                            });
                        }
                    }
                }
                nodes.insert(e.node, ack);
            }
            // NoChange keeps whatever the node holds
            Kind::Vote {
                vote: Vote::NoChange,
                ..
            } => {}
            Kind::Vote { .. } => {
                nodes.remove(&e.node);
            }
            Kind::Disconnected { keeps_vote } => {
                // the connection that ended is the instance's; a node that
                // already moved to another instance keeps what that sent
                let from_this = nodes.get(&e.node).is_some_and(|a| a.instance == e.instance);
                if !keeps_vote && from_this {
                    nodes.remove(&e.node);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(t: u64, inst: &str, node: u32, v: Vote, ring: (u32, u64), members: &[u32]) -> Event {
        Event {
            time: t,
            instance: inst.into(),
            cluster: b"web".to_vec(),
            node,
            kind: Kind::Vote {
                vote: v,
                ring: Ring {
                    node_id: ring.0,
                    seq: ring.1,
                },
                members: members.to_vec(),
            },
        }
    }
    fn disc(t: u64, inst: &str, node: u32, keeps: bool) -> Event {
        Event {
            time: t,
            instance: inst.into(),
            cluster: b"web".to_vec(),
            node,
            kind: Kind::Disconnected { keeps_vote: keeps },
        }
    }

    #[test]
    fn a_clean_failover_during_a_split_passes() {
        // split {1,2} / {3,4}; a gives the vote to {1,2}; a dies; b keeps
        // it with {1,2} and NACKs {3,4}
        let h = vec![
            vote(10, "a", 1, Vote::Ack, (1, 5), &[1, 2]),
            vote(10, "a", 2, Vote::Ack, (1, 5), &[1, 2]),
            vote(11, "a", 3, Vote::Nack, (3, 5), &[3, 4]),
            vote(11, "a", 4, Vote::Nack, (3, 5), &[3, 4]),
            disc(20, "a", 1, true),
            disc(20, "a", 2, true),
            disc(20, "a", 3, false),
            disc(20, "a", 4, false),
            vote(30, "b", 3, Vote::Nack, (3, 5), &[3, 4]),
            vote(31, "b", 1, Vote::Ack, (1, 5), &[1, 2]),
            vote(31, "b", 4, Vote::Nack, (3, 5), &[3, 4]),
            vote(32, "b", 2, Vote::Ack, (1, 5), &[1, 2]),
        ];
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn new_leader_acking_the_other_partition_while_the_old_ack_holds_fails() {
        let h = vec![
            vote(10, "a", 1, Vote::Ack, (1, 5), &[1, 2]),
            vote(10, "a", 3, Vote::Nack, (3, 5), &[3, 4]),
            // a's clients keep their vote (lms), b ACKs the other side
            disc(20, "a", 1, true),
            vote(25, "b", 3, Vote::Ack, (3, 5), &[3, 4]),
        ];
        let v = check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].time, 25);
        assert_eq!(v[0].first.instance, "a");
        assert_eq!(v[0].second.instance, "b");
        assert!(v[0].to_string().contains("node 3 holds ACK from b"));
    }

    #[test]
    fn two_live_instances_acking_both_sides_fails_even_unsorted() {
        let h = vec![
            vote(12, "b", 4, Vote::Ack, (3, 9), &[3, 4]),
            vote(11, "a", 2, Vote::Ack, (1, 9), &[1, 2]),
        ];
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].first.node, 2);
        assert_eq!(v[0].second.node, 4);
    }

    #[test]
    fn ack_ended_by_a_nack_or_a_vote_dropping_disconnect_does_not_conflict() {
        let h = vec![
            vote(10, "a", 1, Vote::Ack, (1, 5), &[1, 2]),
            vote(11, "a", 2, Vote::Ack, (1, 5), &[1, 2]),
            vote(15, "a", 1, Vote::Nack, (1, 5), &[1, 2]),
            disc(16, "a", 2, false),
            vote(20, "b", 3, Vote::Ack, (3, 6), &[3, 4]),
        ];
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn disconnect_from_an_instance_the_node_left_keeps_the_other_ack() {
        let h = vec![
            vote(10, "a", 1, Vote::Ack, (1, 5), &[1, 2]),
            vote(12, "b", 1, Vote::Ack, (1, 5), &[1, 2]),
            // the late disconnect from a must not clear b's ACK
            disc(13, "a", 1, false),
            vote(14, "b", 3, Vote::Ack, (3, 5), &[3, 4]),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn successive_rings_of_one_partition_do_not_conflict() {
        // heal: {1,2} and then {1,2,3,4}; old ACK for {1,2} overlaps the
        // merged ring's members
        let h = vec![
            vote(10, "a", 1, Vote::Ack, (1, 5), &[1, 2]),
            vote(20, "b", 3, Vote::Ack, (1, 6), &[1, 2, 3, 4]),
            vote(21, "b", 1, Vote::Ack, (1, 6), &[1, 2, 3, 4]),
        ];
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn no_change_keeps_the_ack_in_force() {
        let h = vec![
            vote(10, "a", 1, Vote::Ack, (1, 5), &[1, 2]),
            vote(11, "a", 1, Vote::NoChange, (1, 5), &[1, 2]),
            vote(12, "b", 3, Vote::Ack, (3, 5), &[3, 4]),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn other_clusters_do_not_interfere() {
        let mut other = vote(11, "b", 3, Vote::Ack, (3, 5), &[3, 4]);
        other.cluster = b"db".to_vec();
        let h = vec![vote(10, "a", 1, Vote::Ack, (1, 5), &[1, 2]), other];
        assert_eq!(check(&h), vec![]);
    }
}

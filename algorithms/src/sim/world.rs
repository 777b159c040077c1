//! The world around the server model: the nodes of one cluster, the network
//! partition each node is in, its corosync ring, its qdevice client and the
//! two FIFO queues of its connection (client to server, server to client).
//! Every operation is deterministic; the random choices are made by the
//! schedules (`sim::ffsplit`, `sim::lms`), which call these operations.
//!
//! The client follows the reference corosync-qdevice 3.0.x: it applies a vote
//! only for its current ring (NO_CHANGE changes nothing; ASK_LATER and
//! WAIT_FOR_REPLY mean "not voting"), answers every VOTE_INFO, stops voting
//! when its membership changes and then reports the new membership, and
//! stops voting when a connection is set up. When it loses the server it
//! drops an ACK to NACK, unless the world's clients keep their vote
//! (2nodelms); a disconnected client drops its ACK when its membership
//! changes.
//!
//! A client that stops voting while it holds ACK (it reconnects) stops
//! polling votequorum, which goes on counting its last ACK until
//! `quorum.device.timeout` (10 s) passes without a poll: such a node still
//! holds ACK for the invariant until it polls again (it applies ACK or
//! NACK), its ring changes or the timeout passes on the virtual clock.

use std::collections::{BTreeMap, VecDeque};

use crate::sim::server::Server;
use crate::{AlgorithmKind, Event, Heuristics, NodeId, NodeInfo, RingId, TieBreaker, Vote};

/// The vote a client acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Held {
    /// Not voting (nothing decided, WAIT_FOR_REPLY / ASK_LATER, a new ring).
    #[default]
    Nothing,
    Ack,
    Nack,
}

/// A server-to-client message.
#[derive(Debug)]
pub(crate) enum Down {
    Reply { vote: Vote, ring: RingId },
    VoteInfo { seq: u32, vote: Vote, ring: RingId },
}

/// votequorum's default `quorum.device.timeout` (ms).
pub(crate) const DEVICE_TIMEOUT_MS: u64 = 10_000;

/// One simulated node: corosync, its qdevice client and its connection.
pub(crate) struct Node {
    pub(crate) id: NodeId,
    /// Network partition the node is in.
    pub(crate) group: usize,
    /// The node's current ring (known also while it is disconnected).
    pub(crate) ring: RingId,
    pub(crate) connected: bool,
    pub(crate) heuristics: Heuristics,
    pub(crate) held: Held,
    /// The client holds ACK without polling (it reconnected): votequorum
    /// counts it until this time.
    linger_until: Option<u64>,
    /// Client to server.
    pub(crate) up: VecDeque<Event>,
    /// Server to client.
    pub(crate) down: VecDeque<Down>,
}

/// The cluster, its network and the server.
pub(crate) struct World {
    pub(crate) server: Server,
    kind: AlgorithmKind,
    tie_breaker: TieBreaker,
    /// By ascending node id.
    pub(crate) nodes: Vec<Node>,
    config: Vec<NodeInfo>,
    /// Sequence number of the last ring formed.
    ring_seq: u64,
    /// A client that loses the server keeps its vote (2nodelms).
    keeps_vote: bool,
    /// The label of the schedule and, when tracing, every step.
    log: Vec<String>,
    tracing: bool,
}

impl World {
    /// Nodes `ids` (any order), all in ring (lowest id, 1) and disconnected.
    /// New rings get sequence numbers from `ring_seq + 1` on.
    pub(crate) fn new(
        kind: AlgorithmKind,
        tie_breaker: TieBreaker,
        ids: &[NodeId],
        keeps_vote: bool,
        ring_seq: u64,
        label: String,
        tracing: bool,
    ) -> World {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let ring = RingId::new(sorted.first().copied().unwrap_or(1), 1);
        let nodes = sorted
            .iter()
            .map(|&id| Node {
                id,
                group: 0,
                ring,
                connected: false,
                heuristics: Heuristics::Undefined,
                held: Held::Nothing,
                linger_until: None,
                up: VecDeque::new(),
                down: VecDeque::new(),
            })
            .collect();
        World {
            server: Server::new(kind, tie_breaker),
            kind,
            tie_breaker,
            nodes,
            config: sorted.iter().map(|&id| NodeInfo::new(id)).collect(),
            ring_seq,
            keeps_vote,
            log: vec![label],
            tracing,
        }
    }

    /// Records a step in the trace (only when tracing).
    pub(crate) fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            self.log.push(line());
        }
    }

    /// Text for a failure: the schedule's label and the trace if recorded.
    pub(crate) fn trace(&self) -> String {
        if self.tracing {
            self.log.join("\n")
        } else {
            format!(
                "{} (replay the seed for a message trace)",
                self.log.join("\n")
            )
        }
    }

    /// Panics with `what` and the trace.
    pub(crate) fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("{what}\n{}", self.trace())
    }

    pub(crate) fn index_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.binary_search_by_key(&id, |n| n.id).ok()
    }

    /// The nodes of network partition `group`, by ascending id.
    pub(crate) fn group_members(&self, group: usize) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .filter(|n| n.group == group)
            .map(|n| NodeInfo::new(n.id))
            .collect()
    }

    /// Hands VOTE_INFOs to the clients' queues; a protocol violation of
    /// the algorithm fails the schedule.
    fn deliver_actions(&mut self, actions: Result<Vec<crate::Action>, String>) {
        let actions = actions.unwrap_or_else(|e| self.fail(e));
        for action in actions {
            if let crate::Action::SendVoteInfo {
                node,
                seq,
                vote,
                ring,
            } = action
            {
                let Some(i) = self.index_of(node) else {
                    self.fail(format!("VOTE_INFO to unknown node {node}"));
                };
                if !self.nodes[i].connected {
                    self.fail(format!("VOTE_INFO to disconnected node {node}"));
                }
                self.nodes[i]
                    .down
                    .push_back(Down::VoteInfo { seq, vote, ring });
            }
        }
    }

    /// Node `i` connects: INIT completes (with `kap`), then its client
    /// queues its initial config list, its membership list (with
    /// `heuristics`) and a quorum list with the `quorate` flag.
    pub(crate) fn connect(&mut self, i: usize, kap: bool, heuristics: Heuristics, quorate: bool) {
        let members = self.group_members(self.nodes[i].group);
        let (id, ring) = (self.nodes[i].id, self.nodes[i].ring);
        let joined = self.server.join(id, self.kind, self.tie_breaker, ring, kap);
        if let Err(e) = joined {
            self.fail(format!("join of node {id} refused: {e:?}"));
        }
        let config = self.config.clone();
        let now = self.server.now_ms();
        let n = &mut self.nodes[i];
        n.connected = true;
        if n.held == Held::Ack && n.linger_until.is_none() {
            n.linger_until = Some(now + DEVICE_TIMEOUT_MS);
        } else if n.linger_until.is_none() {
            n.held = Held::Nothing;
        }
        n.heuristics = heuristics;
        n.up.push_back(Event::ConfigList {
            nodes: config,
            initial: true,
            config_version: None,
        });
        n.up.push_back(Event::Membership {
            ring,
            nodes: members.clone(),
            heuristics,
        });
        n.up.push_back(Event::Quorum {
            quorate,
            nodes: members,
        });
        self.note(|| format!("connect {id} kap {kap} heuristics {heuristics:?}"));
    }

    /// Node `i`'s connection drops: both queues are lost, the client keeps
    /// or drops its vote, the server re-decides for the others.
    pub(crate) fn disconnect(&mut self, i: usize) {
        let keeps = self.keeps_vote;
        let n = &mut self.nodes[i];
        n.connected = false;
        n.up.clear();
        n.down.clear();
        if !keeps && n.held == Held::Ack {
            n.held = Held::Nack;
            n.linger_until = None;
        }
        let id = n.id;
        self.note(|| format!("disconnect {id}"));
        let actions = self.server.leave(id, false);
        self.deliver_actions(actions);
    }

    /// The network changes to `assignment` (group per node). Every group
    /// whose member set changed (all of them if `force`) forms a new ring.
    /// For each node of such a group, in ascending id order, `quorum_list()`
    /// says whether its client follows the membership list with a quorum
    /// list (with the `quorate` flag); connected clients stop voting and
    /// queue the new membership, disconnected ones drop an ACK.
    pub(crate) fn repartition(
        &mut self,
        assignment: &[usize],
        force: bool,
        quorate: bool,
        quorum_list: &mut dyn FnMut() -> bool,
    ) {
        let old: Vec<Vec<NodeInfo>> = (0..self.nodes.len())
            .map(|i| self.group_members(self.nodes[i].group))
            .collect();
        for (n, &g) in self.nodes.iter_mut().zip(assignment) {
            n.group = g;
        }
        let mut new_rings: BTreeMap<usize, RingId> = BTreeMap::new();
        for (i, old_members) in old.iter().enumerate() {
            let group = self.nodes[i].group;
            let members = self.group_members(group);
            if !force && members == *old_members {
                continue;
            }
            let seq = &mut self.ring_seq;
            let ring = *new_rings.entry(group).or_insert_with(|| {
                *seq += 1;
                RingId::new(members.first().map_or(1, |n| n.node_id), *seq)
            });
            let quorum = quorum_list();
            let n = &mut self.nodes[i];
            n.ring = ring;
            n.linger_until = None;
            if n.connected {
                n.held = Held::Nothing;
                n.up.push_back(Event::Membership {
                    ring,
                    nodes: members.clone(),
                    heuristics: n.heuristics,
                });
                if quorum {
                    n.up.push_back(Event::Quorum {
                        quorate,
                        nodes: members,
                    });
                }
            } else if n.held == Held::Ack {
                n.held = Held::Nack;
            }
        }
        self.note(|| format!("partition {assignment:?}"));
    }

    /// Virtual time passes.
    pub(crate) fn advance(&mut self, ms: u64) {
        self.server.advance(ms);
    }

    /// The server restarts: every connection drops (both queues are lost),
    /// each client keeps its vote if `keep_votes` (2nodelms, lms with
    /// `wait_for_all` while quorate) or drops an ACK to NACK, and the server
    /// comes back with its vote memory only.
    pub(crate) fn restart(&mut self, keep_votes: bool) {
        for n in &mut self.nodes {
            if n.connected {
                n.connected = false;
                n.up.clear();
                n.down.clear();
                if !keep_votes && n.held == Held::Ack {
                    n.held = Held::Nack;
                    n.linger_until = None;
                }
            }
        }
        self.server.restart();
        let (now, memory) = (
            self.server.now_ms(),
            self.server.remembered().map(<[_]>::to_vec),
        );
        self.note(|| format!("server restart at {now} ms, remembered holder {memory:?}"));
    }

    /// Node `i`'s heuristics change; its client reports it.
    pub(crate) fn change_heuristics(&mut self, i: usize, heuristics: Heuristics) {
        let n = &mut self.nodes[i];
        n.heuristics = heuristics;
        n.up.push_back(Event::HeuristicsChange { heuristics });
        let id = n.id;
        self.note(|| format!("heuristics {id} {heuristics:?}"));
    }

    /// Node `i`'s client sends a changed config list (same nodes).
    pub(crate) fn change_config(&mut self, i: usize) {
        let nodes = self.config.clone();
        self.nodes[i].up.push_back(Event::ConfigList {
            nodes,
            initial: false,
            config_version: Some(2),
        });
    }

    /// The server processes the next message from node `i`'s client; it
    /// must not be refused.
    pub(crate) fn deliver_up(&mut self, i: usize) {
        let Some(event) = self.nodes[i].up.pop_front() else {
            return;
        };
        let id = self.nodes[i].id;
        let has_reply = !matches!(event, Event::VoteInfoReply { .. } | Event::Timer);
        let name = event.name();
        let outcome = match self.server.handle(id, event) {
            Ok(o) => o,
            Err(e) => self.fail(e),
        };
        self.note(|| {
            format!(
                "server <- {id} {name}: {:?} {:?}",
                outcome.reply, outcome.actions
            )
        });
        let vote = match outcome.reply {
            Ok(v) => v,
            Err(e) => self.fail(format!("unexpected error {e:?} for a {name}")),
        };
        self.deliver_actions(Ok(outcome.actions));
        if has_reply {
            self.nodes[i].down.push_back(Down::Reply {
                vote,
                ring: outcome.reply_ring,
            });
        }
    }

    /// Node `i`'s client processes the next message from the server.
    pub(crate) fn deliver_down(&mut self, i: usize) {
        let now = self.server.now_ms();
        let n = &mut self.nodes[i];
        let Some(msg) = n.down.pop_front() else {
            return;
        };
        let (vote, ring) = match msg {
            Down::Reply { vote, ring } => (vote, ring),
            Down::VoteInfo { seq, vote, ring } => {
                n.up.push_back(Event::VoteInfoReply { seq });
                (vote, ring)
            }
        };
        if ring == n.ring {
            let lingering = n.linger_until.is_some_and(|t| now < t);
            match vote {
                Vote::Ack => n.held = Held::Ack,
                Vote::Nack => n.held = Held::Nack,
                // Still not polling: votequorum counts a lingering ACK.
                Vote::AskLater | Vote::WaitForReply if lingering => {}
                Vote::AskLater | Vote::WaitForReply => n.held = Held::Nothing,
                Vote::NoChange => {}
            }
            if matches!(vote, Vote::Ack | Vote::Nack) || !lingering {
                n.linger_until = None;
            }
        }
        let (id, held) = (n.id, n.held);
        self.note(|| format!("client {id} <- {vote:?} {ring}: holds {held:?}"));
    }

    /// Node `i`'s algorithm timer fires, if armed.
    pub(crate) fn fire_timer(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let outcome = match self.server.fire_timer(id) {
            Ok(Some(o)) => o,
            Ok(None) => return,
            Err(e) => self.fail(e),
        };
        self.note(|| format!("timer {id}: {:?} {:?}", outcome.reply, outcome.actions));
        self.deliver_actions(Ok(outcome.actions));
    }

    /// Whether votequorum counts node `n`'s ACK now.
    fn holds_ack(&self, n: &Node) -> bool {
        n.held == Held::Ack && n.linger_until.is_none_or(|t| self.server.now_ms() < t)
    }

    /// The invariant: no two nodes of different current rings hold ACK,
    /// connected or not.
    pub(crate) fn check_safety(&self) -> Result<(), String> {
        let mut first: Option<(NodeId, RingId)> = None;
        for n in self.nodes.iter().filter(|n| self.holds_ack(n)) {
            match first {
                None => first = Some((n.id, n.ring)),
                Some((a, ring)) if ring != n.ring => {
                    return Err(format!(
                        "two partitions hold ACK: nodes {a} (ring {ring}) and {} (ring {})",
                        n.id, n.ring
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Nodes with a message waiting in either direction.
    pub(crate) fn busy(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].up.is_empty() || !self.nodes[i].down.is_empty())
            .collect()
    }

    /// Nodes holding ACK.
    pub(crate) fn holders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| self.holds_ack(n))
            .map(|n| n.id)
            .collect()
    }

    /// Nodes of the ring holding ACK that do not hold it themselves.
    pub(crate) fn ring_without_ack(&self) -> Vec<NodeId> {
        let Some(ring) = self
            .nodes
            .iter()
            .find(|n| self.holds_ack(n))
            .map(|n| n.ring)
        else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .filter(|n| n.ring == ring && !self.holds_ack(n))
            .map(|n| n.id)
            .collect()
    }
}

//! The session's messages after INIT: options, heartbeats, node lists,
//! votes asked for and acknowledged, heuristics changes, and the algorithm
//! timer. Everything that runs the cluster's algorithm does so under the
//! cluster lock: the algorithm decides, the deliveries go to the mailboxes
//! (this session's own included), this session drains its mailbox and then
//! queues its reply, all before the lock is released.

use std::time::Instant;

use qnetd_algorithms::{Event, Heuristics, RingId, Vote};
use tracing::{debug, warn};

use super::Session;
use crate::table::lock;
use crate::telemetry;
use crate::wire::{
    self, ErrorCode, HeuristicsChangeReply, Message, MsgType, NodeList, NodeListReply,
    NodeListType, SetOption,
};

impl Session {
    /// A message of an initialised client (the gates have passed).
    pub(super) fn on_cluster_message(&mut self, msg: Message, raw: &[u8], now: Instant) {
        match msg {
            Message::SetOption(m) => self.on_set_option(m, now),
            Message::EchoRequest(_) => {
                metrics::counter!(telemetry::HEARTBEATS).increment(1);
                self.handle_mailbox(now);
                self.push_raw(&wire::echo_reply_from_request(raw));
            }
            Message::NodeList(m) => self.on_node_list(m, now),
            Message::AskForVote(m) => match m.seq {
                None => self.missing_option(MsgType::AskForVote, None, "sequence number", now),
                Some(seq) => self.run_algorithm(Event::AskForVote, seq, now, |vote, ring| {
                    Message::AskForVoteReply(wire::AskForVoteReply {
                        seq: Some(seq),
                        vote: Some(vote),
                        ring_id: Some(ring),
                    })
                }),
            },
            Message::VoteInfoReply(m) => match m.seq {
                None => self.missing_option(MsgType::VoteInfoReply, None, "sequence number", now),
                Some(seq) => self.on_vote_info_reply(seq, now),
            },
            Message::HeuristicsChange(m) => match (m.seq, m.heuristics) {
                (Some(seq), Some(h)) => self.run_algorithm(
                    Event::HeuristicsChange { heuristics: h },
                    seq,
                    now,
                    |vote, ring| {
                        Message::HeuristicsChangeReply(HeuristicsChangeReply {
                            seq: Some(seq),
                            vote: Some(vote),
                            ring_id: Some(ring),
                            heuristics: Some(h),
                        })
                    },
                ),
                (seq, _) => self.missing_option(
                    MsgType::HeuristicsChange,
                    seq,
                    "sequence number or heuristics",
                    now,
                ),
            },
            // PREINIT, STARTTLS and INIT were dispatched before; the
            // server-to-client types were answered before too.
            other => self.error(other.seq(), ErrorCode::UNEXPECTED_MESSAGE, now),
        }
    }

    fn on_set_option(&mut self, m: SetOption, now: Instant) {
        let Some(joined) = &self.joined else {
            return self.error(m.seq, ErrorCode::INIT_REQUIRED, now);
        };
        if let Some(hb) = m.heartbeat_interval {
            if !self.heartbeat_acceptable(hb) {
                warn!(
                    heartbeat_ms = hb,
                    "SET_OPTION heartbeat out of range; sending error 13"
                );
                return self.error(m.seq, ErrorCode::INVALID_HEARTBEAT_INTERVAL, now);
            }
        }
        let cluster = std::sync::Arc::clone(&joined.cluster);
        let node = joined.node;
        let mut entry = lock(&cluster);
        if let Some(hb) = m.heartbeat_interval {
            entry.cluster.set_heartbeat(node, hb);
        }
        if let Some(kap) = m.kap {
            entry.cluster.set_kap(node, kap);
        }
        let client = entry.cluster.client(node);
        let reply = Message::SetOptionReply(SetOption {
            seq: m.seq,
            heartbeat_interval: m.heartbeat_interval.and(client.map(|c| c.heartbeat_ms)),
            kap: m.kap.and(client.map(|c| c.kap)),
        });
        if let Some(hb) = m.heartbeat_interval {
            self.heartbeat_ms = hb;
        }
        debug!(heartbeat_ms = ?m.heartbeat_interval, kap = ?m.kap, "SET_OPTION applied");
        self.reply(&reply, now);
        drop(entry);
    }

    fn on_node_list(&mut self, m: NodeList, now: Instant) {
        let (Some(list_type), Some(seq)) = (m.list_type, m.seq) else {
            return self.missing_option(
                MsgType::NodeList,
                m.seq,
                "list type or sequence number",
                now,
            );
        };
        let event = match list_type {
            NodeListType::InitialConfig | NodeListType::ChangedConfig => Event::ConfigList {
                nodes: m.nodes,
                initial: list_type == NodeListType::InitialConfig,
                config_version: m.config_version,
            },
            NodeListType::Membership => {
                let Some(ring) = m.ring_id else {
                    return self.missing_option(
                        MsgType::NodeList,
                        Some(seq),
                        "ring id (membership list)",
                        now,
                    );
                };
                Event::Membership {
                    ring,
                    nodes: m.nodes,
                    heuristics: m.heuristics.unwrap_or(Heuristics::Undefined),
                }
            }
            NodeListType::Quorum => {
                let Some(quorate) = m.quorate else {
                    return self.missing_option(
                        MsgType::NodeList,
                        Some(seq),
                        "quorate flag (quorum list)",
                        now,
                    );
                };
                Event::Quorum {
                    quorate,
                    nodes: m.nodes,
                }
            }
        };
        self.run_algorithm(event, seq, now, |vote, ring| {
            Message::NodeListReply(NodeListReply {
                seq: Some(seq),
                list_type: Some(list_type),
                ring_id: Some(ring),
                vote: Some(vote),
            })
        })
    }

    /// Runs the cluster's algorithm on an event from this client and, in
    /// this order and under the cluster lock, delivers the VOTE_INFOs it
    /// decided (this client's own are encoded now, from the mailbox) and
    /// queues the reply built by `reply` (or a SERVER_ERROR).
    fn run_algorithm(
        &mut self,
        event: Event,
        seq: u32,
        now: Instant,
        reply: impl FnOnce(Vote, RingId) -> Message,
    ) {
        let Some(joined) = &self.joined else {
            return self.error(Some(seq), ErrorCode::INIT_REQUIRED, now);
        };
        self.algorithm_ran = true;
        let cluster = std::sync::Arc::clone(&joined.cluster);
        let node = joined.node;
        let event_name = event.name();
        let mut entry = lock(&cluster);
        let outcome = entry.handle(node, event, self.arbiter.ms_since_origin(now));
        match outcome.reply {
            Ok(vote) => {
                debug!(event = event_name, vote = vote.label(), ring = %outcome.reply_ring, "replying");
                self.handle_mailbox(now);
                if self.may_send_vote(vote, now) {
                    self.count_vote(vote);
                    self.push(&reply(vote, outcome.reply_ring));
                }
            }
            Err(e) => {
                warn!(event = event_name, error = %e, "algorithm refused the message; sending error {}", e.code());
                self.error(Some(seq), ErrorCode(e.code()), now);
            }
        }
        drop(entry);
    }

    fn on_vote_info_reply(&mut self, seq: u32, now: Instant) {
        if let Some((pending, _)) = self.deadlines.nack {
            // Per-client seqs grow; a reply to this or a later VOTE_INFO counts.
            if seq.wrapping_sub(pending) as i32 >= 0 {
                self.deadlines.nack = None;
            }
        }
        let Some(joined) = &self.joined else {
            return;
        };
        let cluster = std::sync::Arc::clone(&joined.cluster);
        let node = joined.node;
        let mut entry = lock(&cluster);
        let outcome = entry.handle(
            node,
            Event::VoteInfoReply { seq },
            self.arbiter.ms_since_origin(now),
        );
        if let Err(e) = outcome.reply {
            warn!(error = %e, seq, "vote info reply refused; sending error {}", e.code());
            self.error(Some(seq), ErrorCode(e.code()), now);
        } else {
            // What the acknowledgement released (the next holder's ACK) goes
            // out in decision order with everything else.
            self.handle_mailbox(now);
        }
        drop(entry);
    }

    /// The client's algorithm timer fired.
    pub(super) fn on_algorithm_timer(&mut self, now: Instant) {
        let Some(joined) = &self.joined else {
            return;
        };
        let cluster = std::sync::Arc::clone(&joined.cluster);
        let node = joined.node;
        let mut entry = lock(&cluster);
        entry.handle(node, Event::Timer, self.arbiter.ms_since_origin(now));
        self.handle_mailbox(now);
        drop(entry);
    }
}

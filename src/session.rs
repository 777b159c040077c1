//! The protocol state machine of one client connection.
//!
//! A [`Session`] takes whole messages (already split by the framing layer),
//! checks them in the order the reference server does, updates the cluster
//! table and queues every reply through the connection's [`Peer`] handle. It
//! does no I/O itself and reads no clock: the server shell passes the time in
//! and carries out the returned [`Control`] (switch to TLS, close).
//!
//! Gates: PREINIT is needed before STARTTLS and INIT; a successful INIT is
//! needed before every other client message. A second PREINIT or INIT is
//! refused without touching the state (the reference overwrites its state
//! there, see docs/differences.md).

use std::sync::Arc;

use qnetd_algorithms::{AlgorithmKind, Event, Heuristics, NodeId, RingId};
use tracing::{debug, info, warn};

use crate::config::{Settings, TlsMode, MAX_TIMER_MS};
use crate::framing::SkipReason;
use crate::table::{lock, ClientMeta, JoinRequest, Outgoing, Peer, SharedCluster, Table};
use crate::wire::{
    self, ErrorCode, Header, HeuristicsChangeReply, Init, InitReply, Message, MsgType, NodeList,
    NodeListReply, NodeListType, PreinitReply, ServerError, SetOption, TlsSupported, HEADER_LEN,
};

/// What the shell must do after a message was handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Flush queued output, then start a TLS server handshake on the socket.
    StartTls,
    /// Close the connection; the reason goes to the log.
    Close(String),
}

/// Facts about the TLS state of the connection the shell tells the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsState {
    pub started: bool,
    /// The names (CN and DNS SANs) of a verified client certificate.
    pub peer_names: Option<Vec<String>>,
}

/// A client that completed INIT.
struct Joined<P> {
    node: NodeId,
    cluster: SharedCluster<P>,
}

/// One client connection's protocol state.
pub struct Session<P: Peer> {
    settings: Arc<Settings>,
    table: Arc<Table<P>>,
    peer: P,
    cluster_name: Option<Vec<u8>>,
    tls: TlsState,
    cert_checked: bool,
    joined: Option<Joined<P>>,
    heartbeat_ms: u32,
    /// Peer address, `ip:port`.
    addr: String,
    /// Sequence number of the last VOTE_INFO_REPLY received.
    last_vote_info_reply: Option<u32>,
    /// Server time (ms) of the last message received (shared with the
    /// table for status output).
    last_seen_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Error replies sent on this connection (see [`MAX_PROTOCOL_ERRORS`]).
    errors_sent: std::sync::atomic::AtomicU32,
}

/// Error replies one connection may cause before it is closed: a real
/// client never gets more than a few, and a stream of garbage must cost
/// neither CPU for decoding nor the log for warnings forever.
pub const MAX_PROTOCOL_ERRORS: u32 = 16;

/// Formats a cluster name for logs (it is raw bytes on the wire).
pub fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl<P: Peer> Session<P> {
    pub fn new(settings: Arc<Settings>, table: Arc<Table<P>>, peer: P, addr: String) -> Self {
        Session {
            addr,
            last_vote_info_reply: None,
            last_seen_ms: Arc::default(),
            errors_sent: Default::default(),
            settings,
            table,
            peer,
            cluster_name: None,
            tls: TlsState::default(),
            cert_checked: false,
            joined: None,
            heartbeat_ms: crate::config::INITIAL_HEARTBEAT_MS,
        }
    }

    /// The node id, once INIT succeeded.
    pub fn node_id(&self) -> Option<NodeId> {
        self.joined.as_ref().map(|j| j.node)
    }

    pub fn cluster_name(&self) -> Option<&[u8]> {
        self.cluster_name.as_deref()
    }

    /// The current dead-peer-detection interval, or `None` when disabled.
    pub fn dpd_ms(&self) -> Option<u64> {
        self.settings
            .dpd_enabled
            .then(|| self.settings.dpd_ms(self.heartbeat_ms))
    }

    /// How long the client has to acknowledge a VOTE_INFO(NACK): its
    /// dead-peer interval (coefficient x heartbeat, 12 s by default), also
    /// when dead-peer detection is off.
    pub fn nack_ack_timeout_ms(&self) -> u64 {
        self.settings.dpd_ms(self.heartbeat_ms)
    }

    /// The sequence number of the last VOTE_INFO_REPLY received.
    pub fn last_vote_info_reply(&self) -> Option<u32> {
        self.last_vote_info_reply
    }

    /// Records that the TLS handshake completed.
    pub fn set_tls(&mut self, tls: TlsState) {
        self.tls = tls;
    }

    fn queue(&self, msg: Message) -> Control {
        if self.peer.send(Outgoing::Message(msg.to_bytes())) {
            Control::Continue
        } else {
            Control::Close("send queue full (the client does not read its replies)".into())
        }
    }

    fn error(&self, seq: Option<u32>, code: ErrorCode) -> Control {
        metrics::counter!(crate::metrics::ERRORS_SENT, "error" => code.name()).increment(1);
        let sent = self
            .errors_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let control = self.queue(Message::ServerError(ServerError {
            seq,
            error_code: Some(code),
        }));
        if sent >= MAX_PROTOCOL_ERRORS && matches!(control, Control::Continue) {
            return Control::Close(format!(
                "too many protocol errors ({sent}): the client does not speak the qnetd protocol (or is a different version)"
            ));
        }
        control
    }

    /// A message the framing layer skipped (unknown type or too long): the
    /// reference answers with an error without a sequence number and keeps
    /// the connection.
    pub fn on_skipped(&mut self, msg_type: u16, length: u32, reason: SkipReason) -> Control {
        match reason {
            SkipReason::UnknownType => {
                warn!(
                    msg_type,
                    "message of unknown type received; sending error 4 (unsupported message)"
                );
                self.error(None, ErrorCode::UNSUPPORTED_MESSAGE)
            }
            SkipReason::TooLong if u64::from(length) > self.absurd_length() => {
                warn!(
                    msg_type,
                    length,
                    limit = self.settings.max_client_receive_size,
                    "message claims a length far above max_client_receive_size; sending error 5 (message too long) and closing the connection instead of reading it"
                );
                let _ = self.error(None, ErrorCode::MESSAGE_TOO_LONG);
                Control::Close(format!(
                    "message of {length} bytes claimed (limit {}): not read",
                    self.settings.max_client_receive_size
                ))
            }
            SkipReason::TooLong => {
                warn!(
                    msg_type,
                    length,
                    limit = self.settings.max_client_receive_size,
                    "message longer than max_client_receive_size; sending error 5 (message too long)"
                );
                self.error(None, ErrorCode::MESSAGE_TOO_LONG)
            }
        }
    }

    /// A claimed body length beyond which the message is not skipped but
    /// the connection closed: four times the receive limit. Up to that, the
    /// body is read and discarded as the reference does, so a client that
    /// is slightly over the limit keeps its connection.
    fn absurd_length(&self) -> u64 {
        4 * self.settings.max_client_receive_size as u64
    }

    /// Handles one whole message (header and body) of a known type.
    pub fn on_message(&mut self, raw: &[u8], now_ms: u64) -> Control {
        self.last_seen_ms
            .store(now_ms, std::sync::atomic::Ordering::Relaxed);
        if raw.len() < HEADER_LEN {
            return Control::Close("internal error: short frame".into());
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&raw[..HEADER_LEN]);
        let header = Header::parse(&h);
        let Some(msg_type) = MsgType::from_u16(header.msg_type) else {
            return self.error(None, ErrorCode::UNSUPPORTED_MESSAGE);
        };
        let msg = match wire::decode(msg_type, &raw[HEADER_LEN..]) {
            Ok(m) => m,
            Err(e) => {
                warn!(msg = msg_type.name(), error = %e, "cannot decode message; sending error 9 (error decoding message)");
                return self.error(e.seq, ErrorCode::ERROR_DECODING_MSG);
            }
        };
        if !msg_type.is_client_to_server() {
            warn!(
                msg = msg_type.name(),
                "client sent a server-to-client message; sending error 8 (unexpected message)"
            );
            return self.error(msg.seq(), ErrorCode::UNEXPECTED_MESSAGE);
        }
        match msg {
            Message::Preinit(m) => self.on_preinit(m),
            Message::StartTls(m) => self.on_starttls(m.seq),
            Message::Init(m) => self.on_init(m, now_ms),
            other => {
                let seq = other.seq();
                if let Some(c) = self.check_tls(seq) {
                    return c;
                }
                if self.joined.is_none() {
                    warn!(
                        msg = msg_type.name(),
                        "message before a successful INIT; sending error 11 (init required)"
                    );
                    return self.error(seq, ErrorCode::INIT_REQUIRED);
                }
                match other {
                    Message::SetOption(m) => self.on_set_option(m),
                    Message::EchoRequest(_) => {
                        metrics::counter!(crate::metrics::HEARTBEATS).increment(1);
                        let reply = wire::echo_reply_from_request(raw);
                        if self.peer.send(Outgoing::Message(reply)) {
                            Control::Continue
                        } else {
                            Control::Close(
                                "send queue full (the client does not read its replies)".into(),
                            )
                        }
                    }
                    Message::NodeList(m) => self.on_node_list(m, now_ms),
                    Message::AskForVote(m) => match m.seq {
                        None => self.missing_option(MsgType::AskForVote, None, "sequence number"),
                        Some(seq) => self.run_algorithm(
                            Event::AskForVote,
                            now_ms,
                            |vote, ring| {
                                Message::AskForVoteReply(wire::AskForVoteReply {
                                    seq: Some(seq),
                                    vote: Some(vote),
                                    ring_id: Some(ring),
                                })
                            },
                            seq,
                        ),
                    },
                    Message::VoteInfoReply(m) => match m.seq {
                        None => {
                            self.missing_option(MsgType::VoteInfoReply, None, "sequence number")
                        }
                        Some(seq) => self.on_vote_info_reply(seq, now_ms),
                    },
                    Message::HeuristicsChange(m) => match (m.seq, m.heuristics) {
                        (Some(seq), Some(h)) => self.run_algorithm(
                            Event::HeuristicsChange { heuristics: h },
                            now_ms,
                            |vote, ring| {
                                Message::HeuristicsChangeReply(HeuristicsChangeReply {
                                    seq: Some(seq),
                                    vote: Some(vote),
                                    ring_id: Some(ring),
                                    heuristics: Some(h),
                                })
                            },
                            seq,
                        ),
                        (seq, _) => self.missing_option(
                            MsgType::HeuristicsChange,
                            seq,
                            "sequence number or heuristics",
                        ),
                    },
                    // Server-to-client types were answered above.
                    _ => self.error(seq, ErrorCode::UNEXPECTED_MESSAGE),
                }
            }
        }
    }

    fn missing_option(&self, t: MsgType, seq: Option<u32>, what: &str) -> Control {
        warn!(
            msg = t.name(),
            "message lacks its {what}; sending error 7 (required option missing)"
        );
        self.error(seq, ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION)
    }

    fn on_preinit(&mut self, m: wire::Preinit) -> Control {
        if self.cluster_name.is_some() {
            warn!("second PREINIT on one connection refused with error 8; cluster name kept");
            return self.error(m.seq, ErrorCode::UNEXPECTED_MESSAGE);
        }
        let Some(name) = m.cluster_name else {
            return self.missing_option(MsgType::Preinit, m.seq, "cluster name");
        };
        tracing::Span::current().record("cluster", tracing::field::display(display_name(&name)));
        debug!("PREINIT received");
        self.cluster_name = Some(name);
        let tls_supported = match self.settings.tls {
            TlsMode::Off => TlsSupported::Unsupported,
            TlsMode::On => TlsSupported::Supported,
            TlsMode::Required => TlsSupported::Required,
        };
        self.queue(Message::PreinitReply(PreinitReply {
            seq: m.seq,
            tls_supported: Some(tls_supported),
            tls_client_cert_required: Some(self.settings.client_cert_required),
        }))
    }

    fn on_starttls(&mut self, seq: Option<u32>) -> Control {
        if self.cluster_name.is_none() {
            warn!("STARTTLS before PREINIT; sending error 6 (preinit required)");
            return self.error(seq, ErrorCode::PREINIT_REQUIRED);
        }
        if self.tls.started {
            return Control::Close("STARTTLS on a connection that already uses TLS".into());
        }
        if self.settings.tls == TlsMode::Off {
            return Control::Close(
                "client asked for STARTTLS but TLS is off on this server (-s off)".into(),
            );
        }
        Control::StartTls
    }

    /// The reference's TLS gate for post-PREINIT messages. Returns a control
    /// when the message must not be processed.
    fn check_tls(&mut self, seq: Option<u32>) -> Option<Control> {
        match self.settings.tls {
            TlsMode::Off => return None,
            TlsMode::Required if !self.tls.started => {
                warn!(
                    "message before STARTTLS while TLS is required; sending error 3 (TLS required)"
                );
                return Some(self.error(seq, ErrorCode::TLS_REQUIRED));
            }
            _ => {}
        }
        if !self.tls.started || !self.settings.client_cert_required || self.cert_checked {
            return None;
        }
        let name = display_name(self.cluster_name.as_deref().unwrap_or_default());
        match &self.tls.peer_names {
            None => Some(Control::Close(
                "TLS client presented no certificate but one is required (-c on)".into(),
            )),
            Some(names) => {
                if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                    self.cert_checked = true;
                    None
                } else {
                    Some(Control::Close(format!(
                        "client certificate names {names:?}, which does not match cluster name '{name}'"
                    )))
                }
            }
        }
    }

    fn on_init(&mut self, m: Init, now_ms: u64) -> Control {
        if let Some(c) = self.check_tls(m.seq) {
            return c;
        }
        if self.joined.is_some() {
            warn!("second INIT on an initialised connection refused with error 8; state kept");
            return self.init_reply(&m, ErrorCode::UNEXPECTED_MESSAGE);
        }
        let code = self.init_error_code(&m);
        if code != ErrorCode::NO_ERROR {
            warn!(error = %code, node = ?m.node_id, "INIT refused");
            return self.init_reply(&m, code);
        }
        // init_error_code() vouches that every field below is present/valid.
        let (Some(node), Some(ring), Some(hb), Some(tb), Some(algorithm)) = (
            m.node_id,
            m.ring_id,
            m.heartbeat_interval,
            m.tie_breaker,
            m.decision_algorithm.and_then(AlgorithmKind::from_u16),
        ) else {
            return self.init_reply(&m, ErrorCode::INTERNAL_ERROR);
        };
        let name = self.cluster_name.clone().unwrap_or_default();
        let req = JoinRequest {
            node,
            algorithm,
            tie_breaker: tb,
            ring,
            heartbeat_ms: hb,
            kap: self.settings.keep_active_partition_tie_breaker,
            meta: ClientMeta {
                addr: self.addr.clone(),
                tls_active: self.tls.started,
                cert_verified: self.cert_checked,
                joined_ms: now_ms,
                last_seen_ms: Arc::clone(&self.last_seen_ms),
            },
        };
        let reply = self.init_reply_message(&m, ErrorCode::NO_ERROR);
        let peer = self.peer.clone();
        let mut queued = false;
        match self.table.join(&name, req, self.peer.clone(), now_ms, |_| {
            queued = peer.send(Outgoing::Message(reply.to_bytes()));
        }) {
            Ok(cluster) => {
                tracing::Span::current().record("node", node);
                info!(
                    ring = %ring,
                    algorithm = algorithm.label(),
                    tie_breaker = %tb,
                    heartbeat_ms = hb,
                    "client joined cluster"
                );
                self.heartbeat_ms = hb;
                self.joined = Some(Joined { node, cluster });
                if queued {
                    Control::Continue
                } else {
                    Control::Close("send queue full (the client does not read its replies)".into())
                }
            }
            Err(e) => {
                let code = ErrorCode(e.code());
                warn!(error = %code, node, "INIT refused: {e:?} (another client of this cluster disagrees or uses this node id)");
                self.init_reply(&m, code)
            }
        }
    }

    /// The error code of an INIT, computed as the reference does, including
    /// its precedence quirks: a heartbeat or algorithm out of range replaces
    /// an earlier error code, and a missing heartbeat counts as 0 there.
    fn init_error_code(&self, m: &Init) -> ErrorCode {
        let mut code = ErrorCode::NO_ERROR;
        let ok = |c: ErrorCode| c == ErrorCode::NO_ERROR;
        if self.cluster_name.is_none() {
            code = ErrorCode::PREINIT_REQUIRED;
        }
        if ok(code) && m.node_id.is_none() {
            code = ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION;
        }
        if ok(code) && m.ring_id.is_none() {
            code = ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION;
        }
        if ok(code) && m.heartbeat_interval.is_none() {
            code = ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION;
        } else {
            let hb = m.heartbeat_interval.unwrap_or(0);
            if !self.heartbeat_acceptable(hb) {
                code = ErrorCode::INVALID_HEARTBEAT_INTERVAL;
            }
        }
        if ok(code) && m.tie_breaker.is_none() {
            code = ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION;
        }
        if ok(code) && m.decision_algorithm.is_none() {
            code = ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION;
        } else if AlgorithmKind::from_u16(m.decision_algorithm.unwrap_or(0)).is_none() {
            code = ErrorCode::UNSUPPORTED_DECISION_ALGORITHM;
        }
        code
    }

    /// Whether a heartbeat interval is within the configured range and its
    /// dead-peer interval fits the timer limit.
    fn heartbeat_acceptable(&self, hb: u32) -> bool {
        let s = &self.settings;
        (s.heartbeat_interval_min..=s.heartbeat_interval_max).contains(&hb)
            && !(s.dpd_enabled && s.dpd_ms(hb) > MAX_TIMER_MS)
    }

    fn init_reply_message(&self, m: &Init, code: ErrorCode) -> Message {
        Message::InitReply(InitReply {
            error_code: Some(code),
            supported_messages: m
                .supported_messages
                .as_ref()
                .map(|_| MsgType::ALL.iter().map(|t| *t as u16).collect()),
            supported_options: m
                .supported_options
                .as_ref()
                .map(|_| (0..wire::opt::COUNT).collect()),
            seq: m.seq,
            server_max_request_size: Some(clamp_u32(self.settings.max_client_receive_size)),
            server_max_reply_size: Some(clamp_u32(self.settings.max_client_send_size)),
            supported_algorithms: Some(AlgorithmKind::ALL.iter().map(|a| *a as u16).collect()),
        })
    }

    fn init_reply(&self, m: &Init, code: ErrorCode) -> Control {
        if code != ErrorCode::NO_ERROR {
            metrics::counter!(crate::metrics::ERRORS_SENT, "error" => code.name()).increment(1);
        }
        self.queue(self.init_reply_message(m, code))
    }

    fn on_set_option(&mut self, m: SetOption) -> Control {
        let Some(joined) = &self.joined else {
            return self.error(m.seq, ErrorCode::INIT_REQUIRED);
        };
        if let Some(hb) = m.heartbeat_interval {
            if !self.heartbeat_acceptable(hb) {
                warn!(
                    heartbeat_ms = hb,
                    "SET_OPTION heartbeat out of range; sending error 13"
                );
                return self.error(m.seq, ErrorCode::INVALID_HEARTBEAT_INTERVAL);
            }
        }
        let reply = {
            let mut entry = lock(&joined.cluster);
            if let Some(hb) = m.heartbeat_interval {
                entry.cluster.set_heartbeat(joined.node, hb);
            }
            if let Some(kap) = m.kap {
                entry.cluster.set_kap(joined.node, kap);
            }
            let client = entry.cluster.client(joined.node);
            Message::SetOptionReply(SetOption {
                seq: m.seq,
                heartbeat_interval: m.heartbeat_interval.and(client.map(|c| c.heartbeat_ms)),
                kap: m.kap.and(client.map(|c| c.kap)),
            })
        };
        if let Some(hb) = m.heartbeat_interval {
            self.heartbeat_ms = hb;
        }
        debug!(heartbeat_ms = ?m.heartbeat_interval, kap = ?m.kap, "SET_OPTION applied");
        self.queue(reply)
    }

    fn on_node_list(&mut self, m: NodeList, now_ms: u64) -> Control {
        let (Some(list_type), Some(seq)) = (m.list_type, m.seq) else {
            return self.missing_option(MsgType::NodeList, m.seq, "list type or sequence number");
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
                    );
                };
                Event::Quorum {
                    quorate,
                    nodes: m.nodes,
                }
            }
        };
        self.run_algorithm(
            event,
            now_ms,
            |vote, ring| {
                Message::NodeListReply(NodeListReply {
                    seq: Some(seq),
                    list_type: Some(list_type),
                    ring_id: Some(ring),
                    vote: Some(vote),
                })
            },
            seq,
        )
    }

    /// Runs the cluster's algorithm on an event from this client and queues,
    /// in this order and under the cluster lock, the VOTE_INFOs it decided
    /// and the reply built by `reply` (or a SERVER_ERROR).
    fn run_algorithm(
        &mut self,
        event: Event,
        now_ms: u64,
        reply: impl FnOnce(qnetd_algorithms::Vote, RingId) -> Message,
        seq: u32,
    ) -> Control {
        let Some(joined) = &self.joined else {
            return self.error(Some(seq), ErrorCode::INIT_REQUIRED);
        };
        let started = std::time::Instant::now();
        let event_name = event.name();
        let entry = &mut *lock(&joined.cluster);
        let outcome = entry.handle(joined.node, event, now_ms);
        match outcome.reply {
            Ok(vote) => {
                debug!(event = event_name, vote = vote.label(), ring = %outcome.reply_ring, "replying");
                metrics::counter!(crate::metrics::VOTES_SENT, "cluster" => entry.name.clone(), "vote" => vote.label()).increment(1);
                let control = self.queue(reply(vote, outcome.reply_ring));
                metrics::histogram!(crate::metrics::DECISION_LATENCY)
                    .record(started.elapsed().as_secs_f64());
                control
            }
            Err(e) => {
                warn!(event = event_name, error = %e, "algorithm refused the message; sending error {}", e.code());
                self.error(Some(seq), ErrorCode(e.code()))
            }
        }
    }

    fn on_vote_info_reply(&mut self, seq: u32, now_ms: u64) -> Control {
        self.last_vote_info_reply = Some(seq);
        if let Some(joined) = &self.joined {
            let entry = &mut *lock(&joined.cluster);
            let outcome = entry.handle(joined.node, Event::VoteInfoReply { seq }, now_ms);
            if let Err(e) = outcome.reply {
                warn!(error = %e, seq, "vote info reply refused; sending error {}", e.code());
                return self.error(Some(seq), ErrorCode(e.code()));
            }
        }
        Control::Continue
    }

    /// The client's algorithm timer fired.
    pub fn on_algo_timer(&mut self, now_ms: u64) {
        if let Some(joined) = &self.joined {
            let entry = &mut *lock(&joined.cluster);
            entry.handle(joined.node, Event::Timer, now_ms);
        }
    }

    /// The connection is closing: leave the cluster so the algorithm can
    /// re-decide for the remaining clients.
    pub fn on_close(&mut self, server_going_down: bool, now_ms: u64) {
        if let Some(joined) = self.joined.take() {
            let name = self.cluster_name.clone().unwrap_or_default();
            self.table.leave(
                &name,
                &joined.cluster,
                joined.node,
                server_going_down,
                now_ms,
            );
        }
    }
}

fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A peer that records what the session queued.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Outgoing>>>);

    impl Peer for Recorder {
        fn send(&self, item: Outgoing) -> bool {
            self.0.lock().unwrap().push(item);
            true
        }
        fn kick(&self, _reason: &'static str) {}
    }

    impl Recorder {
        fn take(&self) -> Vec<Message> {
            self.0
                .lock()
                .unwrap()
                .drain(..)
                .filter_map(|o| match o {
                    Outgoing::Message(b) | Outgoing::VoteInfo { bytes: b, .. } => {
                        let t = MsgType::from_u16(u16::from_be_bytes([b[0], b[1]])).unwrap();
                        Some(wire::decode(t, &b[HEADER_LEN..]).unwrap())
                    }
                    _ => None,
                })
                .collect()
        }
    }

    fn session(settings: Settings) -> (Session<Recorder>, Recorder) {
        let rec = Recorder::default();
        let s = Session::new(
            Arc::new(settings),
            Arc::new(Table::new()),
            rec.clone(),
            "127.0.0.1:1".into(),
        );
        (s, rec)
    }

    fn init(hb: Option<u32>, algorithm: Option<u16>) -> Message {
        Message::Init(Init {
            seq: Some(2),
            supported_messages: None,
            supported_options: None,
            node_id: Some(1),
            decision_algorithm: algorithm,
            heartbeat_interval: hb,
            tie_breaker: Some(qnetd_algorithms::TieBreaker::Lowest),
            ring_id: Some(RingId::new(1, 4)),
        })
    }

    fn preinit() -> Message {
        Message::Preinit(wire::Preinit {
            seq: Some(1),
            cluster_name: Some(b"c".to_vec()),
        })
    }

    fn init_code(rec: &Recorder) -> ErrorCode {
        match rec.take().pop() {
            Some(Message::InitReply(r)) => r.error_code.unwrap(),
            other => panic!("expected INIT_REPLY, got {other:?}"),
        }
    }

    #[test]
    fn init_error_code_precedence_matches_the_reference() {
        // No PREINIT and no heartbeat: the heartbeat check (missing = 0)
        // overrides "preinit required", as the reference does.
        let (mut s, rec) = session(Settings::default());
        s.on_message(&init(None, Some(1)).to_bytes(), 0);
        assert_eq!(init_code(&rec), ErrorCode::INVALID_HEARTBEAT_INTERVAL);
        // No PREINIT, valid heartbeat, unknown algorithm: 12 overrides 6.
        s.on_message(&init(Some(8000), Some(9)).to_bytes(), 0);
        assert_eq!(init_code(&rec), ErrorCode::UNSUPPORTED_DECISION_ALGORITHM);
        // No PREINIT, everything valid: 6.
        s.on_message(&init(Some(8000), Some(1)).to_bytes(), 0);
        assert_eq!(init_code(&rec), ErrorCode::PREINIT_REQUIRED);
        // After PREINIT, a missing algorithm: 7.
        s.on_message(&preinit().to_bytes(), 0);
        rec.take();
        s.on_message(&init(Some(8000), None).to_bytes(), 0);
        assert_eq!(init_code(&rec), ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION);
        // Heartbeat bounds are inclusive.
        s.on_message(&init(Some(120_001), Some(1)).to_bytes(), 0);
        assert_eq!(init_code(&rec), ErrorCode::INVALID_HEARTBEAT_INTERVAL);
        s.on_message(&init(Some(120_000), Some(1)).to_bytes(), 0);
        assert_eq!(init_code(&rec), ErrorCode::NO_ERROR);
        assert_eq!(s.dpd_ms(), Some(180_000));
    }

    #[test]
    fn a_stream_of_errors_closes_the_connection() {
        let (mut s, rec) = session(Settings::default());
        for i in 1..MAX_PROTOCOL_ERRORS {
            let c = s.on_skipped(0x4142, 10, SkipReason::UnknownType);
            assert!(
                matches!(c, Control::Continue),
                "error {i} keeps the connection"
            );
        }
        match s.on_skipped(0x4142, 10, SkipReason::UnknownType) {
            Control::Close(reason) => {
                assert!(reason.contains("too many protocol errors"), "{reason}")
            }
            _ => panic!("the 16th error must close the connection"),
        }
        // Every error was still answered.
        assert_eq!(rec.take().len(), MAX_PROTOCOL_ERRORS as usize);
    }

    #[test]
    fn dpd_interval_limit_refuses_the_heartbeat() {
        let mut settings = Settings::default();
        settings
            .set_advanced("dpd_interval_coefficient", "150")
            .unwrap();
        settings
            .set_advanced("heartbeat_interval_max", "200000")
            .unwrap();
        let (mut s, rec) = session(settings);
        s.on_message(&preinit().to_bytes(), 0);
        rec.take();
        // 150 x 120001 ms exceeds the 18,000,000 ms timer limit.
        s.on_message(&init(Some(120_001), Some(1)).to_bytes(), 0);
        assert_eq!(init_code(&rec), ErrorCode::INVALID_HEARTBEAT_INTERVAL);
    }

    #[test]
    fn tls_required_refuses_plain_messages_but_keeps_the_connection() {
        let settings = Settings {
            tls: TlsMode::Required,
            ..Settings::default()
        };
        let (mut s, rec) = session(settings);
        assert_eq!(s.on_message(&preinit().to_bytes(), 0), Control::Continue);
        match rec.take().pop() {
            Some(Message::PreinitReply(r)) => {
                assert_eq!(r.tls_supported, Some(TlsSupported::Required))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.on_message(&init(Some(8000), Some(1)).to_bytes(), 0),
            Control::Continue
        );
        match rec.take().pop() {
            Some(Message::ServerError(e)) => {
                assert_eq!(e.error_code, Some(ErrorCode::TLS_REQUIRED));
                assert_eq!(e.seq, Some(2));
            }
            other => panic!("{other:?}"),
        }
        let starttls = Message::StartTls(wire::StartTls { seq: Some(3) });
        assert_eq!(s.on_message(&starttls.to_bytes(), 0), Control::StartTls);
    }

    #[test]
    fn client_certificate_must_name_the_cluster() {
        let settings = Settings {
            tls: TlsMode::On,
            ..Settings::default()
        };
        let (mut s, rec) = session(settings.clone());
        s.on_message(&preinit().to_bytes(), 0);
        s.set_tls(TlsState {
            started: true,
            peer_names: Some(vec!["C".into()]),
        });
        assert_eq!(
            s.on_message(&init(Some(8000), Some(1)).to_bytes(), 0),
            Control::Continue
        );
        assert!(matches!(rec.take().pop(), Some(Message::InitReply(_))));

        let (mut s, _rec) = session(settings.clone());
        s.on_message(&preinit().to_bytes(), 0);
        s.set_tls(TlsState {
            started: true,
            peer_names: Some(vec!["other".into()]),
        });
        assert!(matches!(
            s.on_message(&init(Some(8000), Some(1)).to_bytes(), 0),
            Control::Close(_)
        ));

        let (mut s, _rec) = session(settings);
        s.on_message(&preinit().to_bytes(), 0);
        s.set_tls(TlsState {
            started: true,
            peer_names: None,
        });
        assert!(matches!(
            s.on_message(&init(Some(8000), Some(1)).to_bytes(), 0),
            Control::Close(_)
        ));
    }
}

//! The protocol state machine of one client connection, without I/O.
//!
//! A [`Session`] owns everything about one connection's protocol: its
//! handshake state, its place in a cluster, the bytes it has to send, and
//! every deadline (dead peer, INIT, TLS handshake, NACK acknowledgement, the
//! algorithm timer). It never reads a clock and never touches a socket: its
//! driver (qnetd-server's connection task, a test, the fuzzer) feeds it
//!
//! - [`Session::handle_frame`]: a whole message (or a skipped one) read
//!   from the client,
//! - [`Session::handle_mailbox`]: what the cluster decided for this client
//!   (typed [`Delivery`]s other sessions put into its mailbox),
//! - [`Session::handle_tls_established`]: the TLS handshake completed,
//! - [`Session::handle_timeout`]: the time reached [`Session::poll_timeout`],
//! - [`Session::handle_server_wait`] and [`Session::handle_server_resume`]:
//!   the connection waits for the server (its TLS handshake step is queued
//!   for a handshake worker), not for the client; the client's deadlines
//!   stand still meanwhile,
//!
//! each with the current time, and then asks [`Session::poll_transmit`]
//! for bytes to write, [`Session::poll_start_tls`] whether to switch to TLS
//! and [`Session::poll_close`] whether to close. When the connection ends,
//! the driver calls [`Session::finish`], which leaves the cluster.
//!
//! Message gates, in the reference's order: PREINIT is needed before
//! STARTTLS and INIT; a successful INIT is needed before every other client
//! message. A second PREINIT or INIT is refused without touching the state
//! (the reference overwrites its state there, see docs/differences.md).

/// Logs an event of this connection with its identity as fields
/// (`addr`, `cluster`, `node`). The server keeps no tracing span per
/// connection (a span costs memory for the connection's whole life), so
/// every line of a session says whose it is: `slog!(warn, self, "...")`.
macro_rules! slog {
    ($level:ident, $s:expr, $($arg:tt)+) => {
        ::tracing::$level!(
            addr = %$s.addr,
            cluster = %$crate::session::LogName($s.cluster_name.as_deref()),
            node = %$crate::session::LogNode($s.node_id()),
            $($arg)+
        )
    };
}

mod cluster_events;
mod handshake;
mod output;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_algorithms::{NodeId, Vote};

use crate::arbiter::{Arbiter, Disconnect};
use crate::close::CloseReason;
use crate::config::INITIAL_HEARTBEAT_MS;
use crate::framing::{Frame, SkipReason};
use crate::mailbox::{Delivery, Mailbox};
use crate::table::SharedCluster;
use crate::telemetry;
use crate::wire::{ErrorCode, Message, VoteInfo};

/// Error replies one connection may cause before it is closed: a real
/// client never gets more than a few, and a stream of garbage must cost
/// neither CPU for decoding nor the log for warnings forever.
pub const MAX_PROTOCOL_ERRORS: u32 = 16;

/// Formats a cluster name for logs (it is raw bytes on the wire).
pub fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// A connection's cluster name in a log line (`-` before PREINIT).
#[doc(hidden)]
pub struct LogName<'a>(pub Option<&'a [u8]>);

impl std::fmt::Display for LogName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(name) => f.write_str(&String::from_utf8_lossy(name)),
            None => f.write_str("-"),
        }
    }
}

/// A connection's node id in a log line (`-` before INIT).
#[doc(hidden)]
pub struct LogNode(pub Option<NodeId>);

impl std::fmt::Display for LogNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("-"),
        }
    }
}

/// The TLS facts of the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TlsState {
    started: bool,
    /// The names (CN and DNS SANs) of a verified client certificate.
    peer_names: Option<Vec<String>>,
}

/// A client that completed INIT.
struct Joined {
    node: NodeId,
    cluster: SharedCluster,
}

/// The deadlines a session keeps.
#[derive(Clone, Copy, Debug, Default)]
struct Deadlines {
    /// No complete message by then: the peer is dead.
    dead_peer: Option<Instant>,
    /// INIT not completed by then (from accept; cleared by INIT).
    init: Option<Instant>,
    /// TLS handshake not completed by then (from STARTTLS).
    handshake: Option<Instant>,
    /// A VOTE_INFO(NACK) with this seq must be acknowledged by then.
    nack: Option<(u32, Instant)>,
    /// The algorithm timer of this client.
    algorithm: Option<Instant>,
    /// Since when the connection waits for the server (see
    /// [`Session::handle_server_wait`]): the client's own deadlines (dead
    /// peer, INIT, TLS handshake) stand still.
    server_wait: Option<Instant>,
}

impl Deadlines {
    /// The deadlines that measure the client, unless it waits for the server.
    fn client_side(&self) -> [Option<Instant>; 3] {
        if self.server_wait.is_some() {
            [None; 3]
        } else {
            [self.dead_peer, self.init, self.handshake]
        }
    }

    fn earliest(&self) -> Option<Instant> {
        self.client_side()
            .into_iter()
            .chain([self.nack.map(|(_, t)| t), self.algorithm])
            .flatten()
            .min()
    }
}

/// Output held back until the vote memory is durable (high availability's
/// write-ahead: an ACK for a new vote holder leaves only once the holder is
/// stored, and everything queued after it waits behind it, in order).
struct HeldOutput {
    /// The memory version that must be durable.
    version: u64,
    bytes: Vec<u8>,
    count: usize,
    /// Whether an ACK is among the held messages (checked against the
    /// lease again when they are released).
    has_ack: bool,
}

/// One client connection's protocol state (see the module documentation).
pub struct Session {
    arbiter: Arc<Arbiter>,
    mailbox: Arc<Mailbox>,
    /// Peer address, `ip:port` as the reference prints it.
    addr: String,
    cluster_name: Option<Vec<u8>>,
    tls: TlsState,
    cert_checked: bool,
    joined: Option<Joined>,
    heartbeat_ms: u32,
    /// Server time (ms) of the last message received (shared with the
    /// table for status output).
    last_seen_ms: Arc<AtomicU64>,
    errors_sent: u32,
    deadlines: Deadlines,
    /// Encoded messages not yet taken by the driver.
    transmit: Vec<u8>,
    /// Messages in `transmit`.
    transmit_count: usize,
    /// Output waiting for the vote memory (write-ahead), if any.
    held: Option<HeldOutput>,
    start_tls: bool,
    close: Option<CloseReason>,
    /// An algorithm ran for the last frame (decision-latency histogram).
    algorithm_ran: bool,
}

impl Session {
    /// A session for a connection from `addr` accepted at `now`.
    pub fn new(arbiter: Arc<Arbiter>, addr: SocketAddr, now: Instant) -> Session {
        let s = &arbiter.settings;
        let mut deadlines = Deadlines {
            init: Some(now + Duration::from_millis(u64::from(s.init_timeout))),
            ..Deadlines::default()
        };
        if s.dpd_enabled {
            deadlines.dead_peer = Some(now + Duration::from_millis(s.initial_dpd_ms()));
        }
        let mailbox = Arc::new(Mailbox::new(s.max_client_send_buffers));
        Session {
            addr: format!("{}:{}", addr.ip(), addr.port()),
            last_seen_ms: Arc::new(AtomicU64::new(arbiter.ms_since_origin(now))),
            arbiter,
            mailbox,
            cluster_name: None,
            tls: TlsState::default(),
            cert_checked: false,
            joined: None,
            heartbeat_ms: INITIAL_HEARTBEAT_MS,
            errors_sent: 0,
            deadlines,
            transmit: Vec::new(),
            transmit_count: 0,
            held: None,
            start_tls: false,
            close: None,
            algorithm_ran: false,
        }
    }

    /// The session's mailbox: the driver waits on it
    /// ([`Mailbox::poll_ready`]) and then calls [`Session::handle_mailbox`].
    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// The node id, once INIT succeeded.
    pub fn node_id(&self) -> Option<NodeId> {
        self.joined.as_ref().map(|j| j.node)
    }

    /// The cluster name from PREINIT.
    pub fn cluster_name(&self) -> Option<&[u8]> {
        self.cluster_name.as_deref()
    }

    /// The dead-peer interval (coefficient × heartbeat), whether or not
    /// dead-peer detection is on: it is also how long a client has to
    /// acknowledge a VOTE_INFO(NACK).
    pub fn dead_peer_interval_ms(&self) -> u64 {
        self.arbiter.settings.dpd_ms(self.heartbeat_ms)
    }

    /// Handles one frame read from the client at `now`.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) {
        self.algorithm_ran = false;
        if self.close.is_some() {
            return;
        }
        match frame {
            Frame::Message(raw) => {
                self.last_seen_ms
                    .store(self.arbiter.ms_since_origin(now), Ordering::Relaxed);
                self.on_message(&raw, now);
                // Every complete message of a known type restarts dead-peer
                // detection, even one that fails to decode (with the
                // heartbeat it may just have set).
                self.reset_dead_peer(now);
                if self.joined.is_some() {
                    self.deadlines.init = None;
                }
            }
            Frame::Skipped {
                msg_type,
                length,
                reason,
            } => self.on_skipped(msg_type, length, reason, now),
        }
    }

    /// Takes what the cluster decided for this client (and a kick, if the
    /// client was disconnected by another session's overflow check).
    pub fn handle_mailbox(&mut self, now: Instant) {
        self.release_held(now);
        let (deliveries, kicked) = self.mailbox.take();
        for d in deliveries {
            self.handle_delivery(d, now);
        }
        if let Some(reason) = kicked {
            self.close(reason);
        }
    }

    /// Handles one delivery: encodes a VOTE_INFO (and starts waiting for
    /// the acknowledgement of a NACK) or arms or cancels the algorithm
    /// timer.
    pub fn handle_delivery(&mut self, delivery: Delivery, now: Instant) {
        if self.close.is_some() {
            return;
        }
        match delivery {
            Delivery::VoteInfo { seq, vote, ring } => {
                if !self.may_send_vote(vote, now) {
                    return;
                }
                self.count_vote(vote);
                slog!(debug, self, seq, vote = vote.label(), ring = %ring, "sending vote info");
                self.push(&Message::VoteInfo(VoteInfo {
                    seq: Some(seq),
                    vote: Some(vote),
                    ring_id: Some(ring),
                }));
                if vote == Vote::Nack {
                    let within = Duration::from_millis(self.dead_peer_interval_ms());
                    self.deadlines.nack = Some((seq, now + within));
                }
            }
            Delivery::ArmTimer { after_ms } => {
                self.deadlines.algorithm = Some(now + Duration::from_millis(after_ms));
            }
            Delivery::CancelTimer => self.deadlines.algorithm = None,
        }
    }

    /// The TLS handshake after STARTTLS completed at `now`; `peer_names` are
    /// the names of the verified client certificate, if one was sent.
    pub fn handle_tls_established(&mut self, peer_names: Option<Vec<String>>, now: Instant) {
        self.tls = TlsState {
            started: true,
            peer_names,
        };
        self.deadlines.handshake = None;
        self.reset_dead_peer(now);
    }

    /// The connection now waits for the server, not for the client: its
    /// TLS handshake step is queued for a handshake worker (the server
    /// admits only as many handshakes as it can finish; the others wait).
    /// Until [`Session::handle_server_resume`], the dead-peer, INIT and TLS
    /// handshake deadlines stand still, so a connection is never cut for
    /// the server's own slowness. Waiting twice is waiting once.
    pub fn handle_server_wait(&mut self, now: Instant) {
        if self.deadlines.server_wait.is_none() {
            self.deadlines.server_wait = Some(now);
        }
    }

    /// The server is done with what the connection waited for (see
    /// [`Session::handle_server_wait`]): the client's deadlines move on by
    /// the time it waited.
    pub fn handle_server_resume(&mut self, now: Instant) {
        let Some(since) = self.deadlines.server_wait.take() else {
            return;
        };
        let waited = now.saturating_duration_since(since);
        let d = &mut self.deadlines;
        for t in [&mut d.dead_peer, &mut d.init, &mut d.handshake]
            .into_iter()
            .flatten()
        {
            *t += waited;
        }
    }

    /// Whether the connection waits for the server (between
    /// [`Session::handle_server_wait`] and [`Session::handle_server_resume`]).
    pub fn waits_for_server(&self) -> bool {
        self.deadlines.server_wait.is_some()
    }

    /// Acts on every deadline that `now` reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.close.is_some() {
            return;
        }
        let mut d = self.deadlines;
        [d.dead_peer, d.init, d.handshake] = d.client_side();
        let s = Arc::clone(&self.arbiter.settings);
        if d.dead_peer.is_some_and(|t| now >= t) {
            self.close(CloseReason::DeadPeer {
                interval_ms: self.dead_peer_interval_ms(),
            });
        } else if let Some((seq, _)) = d.nack.filter(|(_, t)| now >= *t) {
            self.close(CloseReason::NackNotAcknowledged {
                seq,
                within_ms: self.dead_peer_interval_ms(),
            });
        } else if d.init.is_some_and(|t| now >= t) {
            self.close(CloseReason::InitTimeout {
                timeout_ms: u64::from(s.init_timeout),
            });
        } else if d.handshake.is_some_and(|t| now >= t) {
            self.close(CloseReason::TlsHandshake(crate::close::TlsFailure {
                kind: crate::close::TlsFailureKind::Timeout,
                detail: format!("not completed within {} ms", s.tls_handshake_timeout),
            }));
        } else if d.algorithm.is_some_and(|t| now >= t) {
            self.deadlines.algorithm = None;
            self.on_algorithm_timer(now);
        }
    }

    /// The next time [`Session::handle_timeout`] must be called (`None`:
    /// no deadline, or the session is closing).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.close.is_some() {
            return None;
        }
        self.deadlines.earliest()
    }

    /// Moves the bytes to send into `buf` (appended). Returns whether there
    /// were any.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        self.transmit_count = 0;
        if self.transmit.is_empty() {
            return false;
        }
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.transmit);
        } else {
            buf.append(&mut self.transmit);
        }
        true
    }

    /// Whether the driver must now flush what was transmitted and run the
    /// TLS server handshake (asked once, after STARTTLS). Frames read after
    /// STARTTLS are TLS records: the driver stops feeding frames and hands
    /// the framing layer's leftover bytes to the handshake.
    pub fn poll_start_tls(&mut self) -> bool {
        std::mem::take(&mut self.start_tls)
    }

    /// Why the connection must close, once it must.
    pub fn poll_close(&self) -> Option<&CloseReason> {
        self.close.as_ref()
    }

    /// Whether an algorithm ran for the last frame (the driver measures
    /// the decision latency around such frames).
    pub fn algorithm_ran(&self) -> bool {
        self.algorithm_ran
    }

    /// Closes the connection for `reason` (the first reason wins).
    pub fn close(&mut self, reason: CloseReason) {
        if self.close.is_none() {
            self.close = Some(reason);
        }
    }

    /// The connection is over: logs why, counts it, and leaves the cluster
    /// so that the algorithm re-decides for the remaining clients (unless
    /// the whole server is going down).
    pub fn finish(&mut self, now: Instant) {
        let reason = self.close.take().unwrap_or(CloseReason::ClientClosed);
        metrics::counter!(telemetry::DISCONNECTS, "reason" => reason.label()).increment(1);
        let joined = self.joined.is_some();
        match (reason.server_going_down(), reason.is_abnormal(), joined) {
            (true, _, _) => slog!(debug, self, "disconnecting: {reason}"),
            (false, true, _) => slog!(warn, self, "disconnecting client: {reason}"),
            (false, false, true) => slog!(info, self, "client disconnected: {reason}"),
            (false, false, false) => slog!(debug, self, "connection closed before INIT: {reason}"),
        }
        if !reason.server_going_down() {
            self.arbiter.record_disconnect(Disconnect {
                address: self.addr.clone(),
                cluster: display_name(self.cluster_name.as_deref().unwrap_or_default()),
                node: self.node_id(),
                reason: reason.clone(),
                at_unix_ms: self.arbiter.unix_ms(now),
            });
        }
        self.leave(reason.server_going_down(), now);
        // Anything still queued for a session that is gone is dropped.
        let _ = self.mailbox.take();
        self.close = Some(reason);
    }

    fn leave(&mut self, server_going_down: bool, now: Instant) {
        if let Some(joined) = self.joined.take() {
            let name = self.cluster_name.clone().unwrap_or_default();
            self.arbiter.table.leave(
                &name,
                &joined.cluster,
                joined.node,
                server_going_down,
                self.arbiter.ms_since_origin(now),
            );
        }
    }

    fn reset_dead_peer(&mut self, now: Instant) {
        if self.arbiter.settings.dpd_enabled {
            self.deadlines.dead_peer =
                Some(now + Duration::from_millis(self.dead_peer_interval_ms()));
        }
    }

    /// A message the framing layer skipped (unknown type or too long): the
    /// reference answers with an error without a sequence number and keeps
    /// the connection.
    fn on_skipped(&mut self, msg_type: u16, length: u32, reason: SkipReason, now: Instant) {
        let limit = self.arbiter.settings.max_client_receive_size;
        // A claimed body length beyond which the message is not skipped
        // but the connection closed: four times the receive limit. Up to
        // that, the body is read and discarded as the reference does, so a
        // client that is slightly over the limit keeps its connection.
        let absurd = 4 * limit as u64;
        match reason {
            SkipReason::UnknownType => {
                slog!(
                    warn,
                    self,
                    msg_type,
                    "message of unknown type received; sending error 4 (unsupported message)"
                );
                self.error(None, ErrorCode::UNSUPPORTED_MESSAGE, now);
            }
            SkipReason::TooLong if u64::from(length) > absurd => {
                slog!(warn, self,
                    msg_type,
                    length,
                    limit,
                    "message claims a length far above max_client_receive_size; sending error 5 (message too long) and closing the connection instead of reading it"
                );
                self.close(CloseReason::MessageTooLong { length, limit });
                self.error(None, ErrorCode::MESSAGE_TOO_LONG, now);
            }
            SkipReason::TooLong => {
                slog!(warn, self,
                    msg_type,
                    length,
                    limit,
                    "message longer than max_client_receive_size; sending error 5 (message too long)"
                );
                self.error(None, ErrorCode::MESSAGE_TOO_LONG, now);
            }
        }
    }
}

impl Drop for Session {
    /// A session dropped without [`Session::finish`] (its task was aborted)
    /// still leaves its cluster, so that the others are re-decided.
    fn drop(&mut self) {
        if self.joined.is_some() {
            let now = self.arbiter.origin()
                + Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
            self.leave(false, now);
        }
    }
}

fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

//! The session's output: queueing encoded messages (and counting them
//! against the send-buffer limit), replies and SERVER_ERRORs, and the
//! write-ahead of high availability (an ACK may go out only under a valid
//! lease, and waits, with everything after it, until its cluster's vote
//! holder is durable).

use std::time::Instant;

use qnetd_algorithms::Vote;

use super::{display_name, HeldOutput, Session, MAX_PROTOCOL_ERRORS};
use crate::close::CloseReason;
use crate::telemetry;
use crate::wire::{ErrorCode, Message, ServerError};

impl Session {
    /// High availability: an ACK may only go out while this instance's
    /// lease is certainly valid; otherwise the connection closes instead.
    /// With write-ahead, an ACK whose cluster's holder is not durable yet
    /// is held back (with everything after it) until it is.
    pub(super) fn may_send_vote(&mut self, vote: Vote, now: Instant) -> bool {
        if vote != Vote::Ack {
            return true;
        }
        if !self.arbiter.may_grant(now) {
            self.close(CloseReason::LeaseExpired);
            return false;
        }
        let memory = self.arbiter.memory();
        let pending = self
            .cluster_name
            .as_deref()
            .and_then(|c| memory.pending_version(c));
        if let Some(v) = pending {
            let held = self.held.get_or_insert_with(|| HeldOutput {
                version: 0,
                bytes: Vec::new(),
                count: 0,
                has_ack: false,
            });
            held.version = held.version.max(v);
            memory.wait_durable(v, &self.mailbox);
        }
        if let Some(held) = &mut self.held {
            held.has_ack = true;
        }
        true
    }

    /// Moves held output to the transmit buffer once the memory version it
    /// waits for is durable; an ACK among it is checked against the lease
    /// again (the connection closes instead of sending it late).
    pub(super) fn release_held(&mut self, now: Instant) {
        let Some(held) = &self.held else {
            return;
        };
        if !self.arbiter.memory().is_durable(held.version) {
            return;
        }
        let held = self.held.take().expect("checked above");
        if held.has_ack && !self.arbiter.may_grant(now) {
            self.close(CloseReason::LeaseExpired);
            return;
        }
        self.transmit.extend_from_slice(&held.bytes);
        for _ in 0..held.count {
            self.queued_one();
        }
    }

    pub(super) fn count_vote(&self, vote: Vote) {
        let cluster = display_name(self.cluster_name.as_deref().unwrap_or_default());
        metrics::counter!(telemetry::VOTES_SENT, "cluster" => cluster, "vote" => vote.label())
            .increment(1);
    }

    /// Queues one encoded message (the caller drained the mailbox first:
    /// mailbox order is decision order).
    pub(super) fn push(&mut self, msg: &Message) {
        let buf = match &mut self.held {
            Some(h) => &mut h.bytes,
            None => &mut self.transmit,
        };
        let before = buf.len();
        if let Err(e) = crate::wire::try_encode(msg, buf) {
            buf.truncate(before);
            slog!(warn, self, error = %e, "cannot encode a reply; not sent");
            return;
        }
        self.queued_one();
    }

    /// Queues one message that is already encoded.
    pub(super) fn push_raw(&mut self, bytes: &[u8]) {
        match &mut self.held {
            Some(h) => h.bytes.extend_from_slice(bytes),
            None => self.transmit.extend_from_slice(bytes),
        }
        self.queued_one();
    }

    /// Counts a queued message; more than `max_client_send_buffers` not yet
    /// taken by the driver means the client does not read.
    pub(super) fn queued_one(&mut self) {
        let count = match &mut self.held {
            Some(h) => {
                h.count += 1;
                h.count + self.transmit_count
            }
            None => {
                self.transmit_count += 1;
                self.transmit_count
            }
        };
        if count > self.arbiter.settings.max_client_send_buffers {
            self.close(CloseReason::SendQueueFull);
        }
    }

    /// Drains the mailbox, then queues `msg`.
    pub(super) fn reply(&mut self, msg: &Message, now: Instant) {
        self.handle_mailbox(now);
        self.push(msg);
    }

    /// Queues a SERVER_ERROR; the 16th closes the connection.
    pub(super) fn error(&mut self, seq: Option<u32>, code: ErrorCode, now: Instant) {
        metrics::counter!(telemetry::ERRORS_SENT, "error" => code.name()).increment(1);
        self.errors_sent += 1;
        self.reply(
            &Message::ServerError(ServerError {
                seq,
                error_code: Some(code),
            }),
            now,
        );
        if self.errors_sent >= MAX_PROTOCOL_ERRORS {
            self.close(CloseReason::TooManyErrors {
                count: self.errors_sent,
            });
        }
    }
}

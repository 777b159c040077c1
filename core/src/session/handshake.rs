//! The session's way in: decoding a message and dispatching it by type,
//! PREINIT, STARTTLS, the TLS gates (TLS required, the client certificate
//! naming the cluster) and INIT with its error-code precedence.

use std::sync::Arc;
use std::time::Instant;

use qnetd_algorithms::AlgorithmKind;
use tracing::{debug, info, warn};

use super::{clamp_u32, display_name, Joined, Session};
use crate::close::CloseReason;
use crate::config::{TlsMode, MAX_TIMER_MS};
use crate::table::{ClientMeta, JoinRequest};
use crate::wire::{
    self, ErrorCode, Header, Init, InitReply, Message, MsgType, PreinitReply, TlsSupported,
    HEADER_LEN,
};

impl Session {
    /// Handles one whole message (header and body) of a known type.
    pub(super) fn on_message(&mut self, raw: &[u8], now: Instant) {
        if raw.len() < HEADER_LEN {
            warn!("internal error: a frame shorter than a header; sending error 10");
            self.error(None, ErrorCode::INTERNAL_ERROR, now);
            return;
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&raw[..HEADER_LEN]);
        let header = Header::parse(&h);
        let Some(msg_type) = MsgType::from_u16(header.msg_type) else {
            return self.error(None, ErrorCode::UNSUPPORTED_MESSAGE, now);
        };
        let msg = match wire::decode(msg_type, &raw[HEADER_LEN..]) {
            Ok(m) => m,
            Err(e) => {
                warn!(msg = msg_type.name(), error = %e, "cannot decode message; sending error 9 (error decoding message)");
                return self.error(e.seq, ErrorCode::ERROR_DECODING_MSG, now);
            }
        };
        if !msg_type.is_client_to_server() {
            warn!(
                msg = msg_type.name(),
                "client sent a server-to-client message; sending error 8 (unexpected message)"
            );
            return self.error(msg.seq(), ErrorCode::UNEXPECTED_MESSAGE, now);
        }
        match msg {
            Message::Preinit(m) => self.on_preinit(m, now),
            Message::StartTls(m) => self.on_starttls(m.seq, now),
            Message::Init(m) => self.on_init(m, now),
            other => {
                let seq = other.seq();
                if !self.tls_gate(seq, now) {
                    return;
                }
                if self.joined.is_none() {
                    warn!(
                        msg = msg_type.name(),
                        "message before a successful INIT; sending error 11 (init required)"
                    );
                    return self.error(seq, ErrorCode::INIT_REQUIRED, now);
                }
                self.on_cluster_message(other, raw, now);
            }
        }
    }

    pub(super) fn missing_option(
        &mut self,
        t: MsgType,
        seq: Option<u32>,
        what: &str,
        now: Instant,
    ) {
        warn!(
            msg = t.name(),
            "message lacks its {what}; sending error 7 (required option missing)"
        );
        self.error(seq, ErrorCode::DOESNT_CONTAIN_REQUIRED_OPTION, now);
    }

    fn on_preinit(&mut self, m: wire::Preinit, now: Instant) {
        if self.cluster_name.is_some() {
            warn!("second PREINIT on one connection refused with error 8; cluster name kept");
            return self.error(m.seq, ErrorCode::UNEXPECTED_MESSAGE, now);
        }
        let Some(name) = m.cluster_name else {
            return self.missing_option(MsgType::Preinit, m.seq, "cluster name", now);
        };
        tracing::Span::current().record("cluster", tracing::field::display(display_name(&name)));
        debug!("PREINIT received");
        self.cluster_name = Some(name);
        let s = &self.arbiter.settings;
        let tls_supported = match s.tls {
            TlsMode::Off => TlsSupported::Unsupported,
            TlsMode::On => TlsSupported::Supported,
            TlsMode::Required => TlsSupported::Required,
        };
        let reply = Message::PreinitReply(PreinitReply {
            seq: m.seq,
            tls_supported: Some(tls_supported),
            tls_client_cert_required: Some(s.client_cert_required),
        });
        self.reply(&reply, now);
    }

    fn on_starttls(&mut self, seq: Option<u32>, now: Instant) {
        if self.cluster_name.is_none() {
            warn!("STARTTLS before PREINIT; sending error 6 (preinit required)");
            return self.error(seq, ErrorCode::PREINIT_REQUIRED, now);
        }
        if self.tls.started {
            return self.close(CloseReason::StartTlsInsideTls);
        }
        if self.arbiter.settings.tls == TlsMode::Off {
            return self.close(CloseReason::TlsOff);
        }
        let within = u64::from(self.arbiter.settings.tls_handshake_timeout);
        self.deadlines.handshake = Some(now + std::time::Duration::from_millis(within));
        self.start_tls = true;
    }

    /// The reference's TLS gate for post-PREINIT messages: false when the
    /// message must not be processed (an error was queued or the
    /// connection is closing).
    fn tls_gate(&mut self, seq: Option<u32>, now: Instant) -> bool {
        let s = Arc::clone(&self.arbiter.settings);
        match s.tls {
            TlsMode::Off => return true,
            TlsMode::Required if !self.tls.started => {
                warn!(
                    "message before STARTTLS while TLS is required; sending error 3 (TLS required)"
                );
                self.error(seq, ErrorCode::TLS_REQUIRED, now);
                return false;
            }
            _ => {}
        }
        if !self.tls.started || !s.client_cert_required || self.cert_checked {
            return true;
        }
        let cluster = display_name(self.cluster_name.as_deref().unwrap_or_default());
        match &self.tls.peer_names {
            None => {
                self.close(CloseReason::NoClientCertificate);
                false
            }
            Some(names) if names.iter().any(|n| n.eq_ignore_ascii_case(&cluster)) => {
                self.cert_checked = true;
                true
            }
            Some(names) => {
                let names = names.clone();
                self.close(CloseReason::CertificateMismatch { names, cluster });
                false
            }
        }
    }

    fn on_init(&mut self, m: Init, now: Instant) {
        if !self.tls_gate(m.seq, now) {
            return;
        }
        if self.joined.is_some() {
            warn!("second INIT on an initialised connection refused with error 8; state kept");
            return self.init_reply(&m, ErrorCode::UNEXPECTED_MESSAGE, now);
        }
        let code = self.init_error_code(&m);
        if code != ErrorCode::NO_ERROR {
            warn!(error = %code, node = ?m.node_id, "INIT refused");
            return self.init_reply(&m, code, now);
        }
        // init_error_code() vouches that every field below is present/valid.
        let (Some(node), Some(ring), Some(hb), Some(tb), Some(algorithm)) = (
            m.node_id,
            m.ring_id,
            m.heartbeat_interval,
            m.tie_breaker,
            m.decision_algorithm.and_then(AlgorithmKind::from_u16),
        ) else {
            return self.init_reply(&m, ErrorCode::INTERNAL_ERROR, now);
        };
        let name = self.cluster_name.clone().unwrap_or_default();
        let now_ms = self.arbiter.ms_since_origin(now);
        let req = JoinRequest {
            node,
            algorithm,
            tie_breaker: tb,
            ring,
            heartbeat_ms: hb,
            kap: self.arbiter.settings.keep_active_partition_tie_breaker,
            meta: ClientMeta {
                addr: self.addr.clone(),
                tls_active: self.tls.started,
                cert_verified: self.cert_checked,
                joined_ms: now_ms,
                last_seen_ms: Arc::clone(&self.last_seen_ms),
            },
        };
        let arbiter = Arc::clone(&self.arbiter);
        match arbiter
            .table
            .join(&name, req, Arc::clone(&self.mailbox), now_ms)
        {
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
                // Nothing can be in the mailbox yet that was decided before
                // the join: the reply goes out first.
                let reply = self.init_reply_message(&m, ErrorCode::NO_ERROR);
                self.push(&reply);
            }
            Err(e) => {
                let code = ErrorCode(e.code());
                warn!(error = %code, node, "INIT refused: {e:?} (another client of this cluster disagrees or uses this node id)");
                self.init_reply(&m, code, now)
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
    pub(super) fn heartbeat_acceptable(&self, hb: u32) -> bool {
        let s = &self.arbiter.settings;
        (s.heartbeat_interval_min..=s.heartbeat_interval_max).contains(&hb)
            && !(s.dpd_enabled && s.dpd_ms(hb) > MAX_TIMER_MS)
    }

    fn init_reply_message(&self, m: &Init, code: ErrorCode) -> Message {
        let s = &self.arbiter.settings;
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
            server_max_request_size: Some(clamp_u32(s.max_client_receive_size)),
            server_max_reply_size: Some(clamp_u32(s.max_client_send_size)),
            supported_algorithms: Some(AlgorithmKind::ALL.iter().map(|a| *a as u16).collect()),
        })
    }

    fn init_reply(&mut self, m: &Init, code: ErrorCode, now: Instant) {
        if code != ErrorCode::NO_ERROR {
            metrics::counter!(crate::telemetry::ERRORS_SENT, "error" => code.name()).increment(1);
        }
        let reply = self.init_reply_message(m, code);
        self.reply(&reply, now);
    }
}

//! The legitimate clusters of the flood suite: 2-node ffsplit clusters that
//! join, hold ACK and heartbeat while the attacks run, recording echo round
//! trips, vote changes and drops per phase.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::types::FloodError;
use crate::client::{Client, ClientError, NodeParams};
use qnetd_core::wire::{AlgorithmKind, Echo, Heuristics, Message, RingId, TieBreaker, Vote};

/// Shared state of the legitimate clients.
pub(super) struct Legit {
    pub(super) stop: AtomicBool,
    /// Round trips in microseconds, by phase index (usize::MAX = none).
    pub(super) rtts: Mutex<Vec<Vec<u32>>>,
    pub(super) phase: AtomicUsize,
    pub(super) dropped: AtomicU64,
    pub(super) vote_changes: AtomicU64,
    pub(super) echo_timeouts: AtomicU64,
}

pub(super) fn params(cluster: &str, node_id: u32, heartbeat_ms: u32, ring: RingId) -> NodeParams {
    NodeParams {
        cluster: cluster.to_string(),
        node_id,
        algorithm: AlgorithmKind::Ffsplit,
        tie_breaker: TieBreaker::Lowest,
        heartbeat_ms,
        ring,
    }
}

/// Connects a node of a 2-node ffsplit cluster the way qdevice does (no
/// TLS) and sends its lists. Returns the client and the votes received so
/// far (acknowledged).
pub(super) async fn join_pair_node(
    server: SocketAddr,
    source: IpAddr,
    cluster: &str,
    node: u32,
    heartbeat_ms: u32,
) -> Result<(Client, Option<Vote>), ClientError> {
    let ring = RingId::new(1, 4);
    let mut c = Client::connect_from(server, source).await?;
    let r = c
        .handshake(&params(cluster, node, heartbeat_ms, ring))
        .await?;
    if r.error_code != Some(qnetd_core::wire::ErrorCode::NO_ERROR) {
        return Err(ClientError::Unexpected(format!(
            "INIT refused with error {:?}",
            r.error_code
        )));
    }
    let mut vote = None;
    let mut apply = |infos: Vec<qnetd_core::wire::VoteInfo>, reply_vote: Option<Vote>| {
        for v in infos.iter().map(|i| i.vote).chain([reply_vote]) {
            if let Some(v @ (Vote::Ack | Vote::Nack)) = v {
                vote = Some(v);
            }
        }
    };
    c.send_config(&[1, 2], true).await?;
    let (infos, r) = c.recv_node_list_reply().await?;
    apply(infos, r.vote);
    c.send_membership(ring, &[1, 2], Heuristics::Undefined)
        .await?;
    let (infos, r) = c.recv_node_list_reply().await?;
    apply(infos, r.vote);
    c.send_quorum(true, &[1, 2]).await?;
    let (infos, r) = c.recv_node_list_reply().await?;
    apply(infos, r.vote);
    Ok((c, vote))
}

/// Waits (bounded) until `c` holds ACK, acknowledging VOTE_INFOs.
pub(super) async fn wait_ack(c: &mut Client, mut vote: Option<Vote>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while vote != Some(Vote::Ack) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, c.recv_vote_info()).await {
            Ok(Ok(v)) => {
                if let Some(v @ (Vote::Ack | Vote::Nack)) = v.vote {
                    vote = Some(v);
                }
            }
            _ => return false,
        }
    }
    true
}

/// Sets up one legitimate cluster: both nodes hold ACK.
pub(super) async fn legit_pair(
    server: SocketAddr,
    name: &str,
    heartbeat_ms: u32,
) -> Result<[Client; 2], FloodError> {
    let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let join_error = |node, error| FloodError::Join {
        cluster: name.to_string(),
        node,
        error,
    };
    let (mut a, va) = join_pair_node(server, src, name, 1, heartbeat_ms)
        .await
        .map_err(|e| join_error(1, e))?;
    let (mut b, vb) = join_pair_node(server, src, name, 2, heartbeat_ms)
        .await
        .map_err(|e| join_error(2, e))?;
    let limit = Duration::from_secs(10);
    if !wait_ack(&mut b, vb, limit).await || !wait_ack(&mut a, va, limit).await {
        return Err(FloodError::NoAck {
            cluster: name.to_string(),
        });
    }
    Ok([a, b])
}

/// The heartbeat loop of one legitimate node: an echo every heartbeat,
/// round trips recorded under the current phase; any VOTE_INFO other than
/// ACK counts as a vote change; a closed connection as a drop.
pub(super) async fn legit_node(mut c: Client, heartbeat_ms: u32, legit: Arc<Legit>) {
    let hb = Duration::from_millis(u64::from(heartbeat_ms));
    let mut seq = 1000u32;
    let mut next = tokio::time::Instant::now() + hb;
    while !legit.stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next).await;
        next += hb;
        seq = seq.wrapping_add(1);
        let sent = Instant::now();
        if c.send(&Message::EchoRequest(Echo { seq: Some(seq) }))
            .await
            .is_err()
        {
            legit.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let deadline = sent + 3 * hb;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                legit.echo_timeouts.fetch_add(1, Ordering::Relaxed);
                break;
            }
            match tokio::time::timeout(left, c.recv()).await {
                Err(_) | Ok(Err(ClientError::Timeout)) => {
                    legit.echo_timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Err(_)) => {
                    if !legit.stop.load(Ordering::Relaxed) {
                        legit.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Ok(Ok(Message::EchoReply(e))) if e.seq == Some(seq) => {
                    let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    let phase = legit.phase.load(Ordering::Relaxed);
                    if let Ok(mut r) = legit.rtts.lock() {
                        if let Some(v) = r.get_mut(phase) {
                            v.push(us);
                        }
                    }
                    break;
                }
                Ok(Ok(Message::VoteInfo(v))) => {
                    if let Some(s) = v.seq {
                        let _ = c.reply_vote_info(s).await;
                    }
                    if v.vote != Some(Vote::Ack) {
                        legit.vote_changes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

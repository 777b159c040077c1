//! The attacks of the flood suite: idle and slow sockets, garbage,
//! connect/close churn, clients that never read, and absurd length claims,
//! each from its own loopback source addresses.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::legit::join_pair_node;
use super::types::{attack_source, AttackStats, Phase};
use crate::client::tcp_connect;
use qnetd_core::wire::{Echo, Message, RingId};

/// Random bytes (xorshift; reproducible, no dependency).
pub(super) struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// Waits until the server closes `s` (or `until`), discarding input.
/// Returns true if the server closed it.
pub(super) async fn until_closed(s: &mut TcpStream, until: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One attack socket's life, repeated until the phase ends.
pub(super) async fn attacker(
    phase: Phase,
    i: usize,
    server: SocketAddr,
    until: tokio::time::Instant,
    stats: Arc<AttackStats>,
) {
    let source = attack_source(i);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
    let mut round = 0u32;
    while tokio::time::Instant::now() < until {
        round += 1;
        if phase == Phase::NoRead {
            no_read_pair(i, round, server, until, &stats).await;
            continue;
        }
        let mut s = match tcp_connect(server, Some(source), Duration::from_secs(2)).await {
            Ok(s) => s,
            Err(_) => {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stats.connected.fetch_add(1, Ordering::Relaxed);
        let closed = match phase {
            Phase::Idle => until_closed(&mut s, until).await,
            Phase::Churn => {
                drop(s);
                tokio::task::yield_now().await;
                false
            }
            Phase::Slow => {
                // A valid PREINIT, one byte every 200 ms.
                let mut msg = Vec::new();
                qnetd_core::wire::try_encode(
                    &Message::Preinit(qnetd_core::wire::Preinit {
                        seq: Some(1),
                        cluster_name: Some(format!("slow-{i}").into_bytes()),
                    }),
                    &mut msg,
                )
                .unwrap_or_default();
                let mut closed = false;
                for b in msg.iter().cycle() {
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    if s.write_all(&[*b]).await.is_err() {
                        closed = true;
                        break;
                    }
                    let mut probe = [0u8; 64];
                    match tokio::time::timeout(Duration::from_millis(200), s.read(&mut probe)).await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                closed
            }
            Phase::Garbage => {
                // Known type (PREINIT), maximum accepted length, random body;
                // replies are read and discarded so the stream keeps flowing.
                let (mut rd, mut wr) = s.into_split();
                let reader = tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = rd.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
                // Four different messages, made once: the attack's CPU goes
                // into sending, not into making noise.
                let msgs: Vec<Vec<u8>> = (0..4)
                    .map(|_| {
                        let mut msg = vec![0u8; 32768];
                        msg[..2].copy_from_slice(&0u16.to_be_bytes());
                        msg[2..6].copy_from_slice(&(32768u32 - 6).to_be_bytes());
                        noise.fill(&mut msg[6..]);
                        msg
                    })
                    .collect();
                let mut closed = false;
                for msg in msgs.iter().cycle() {
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    match tokio::time::timeout_at(until, wr.write_all(msg)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            closed = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                reader.abort();
                closed
            }
            Phase::Oversize => {
                let mut hdr = vec![0x00, 0x0a, 0x7f, 0xff, 0xff, 0xff];
                hdr.extend_from_slice(&[0u8; 1024]);
                let mut closed = s.write_all(&hdr).await.is_err();
                let chunk = [0u8; 1024];
                while !closed && tokio::time::Instant::now() < until {
                    let mut probe = [0u8; 256];
                    match tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => closed = true,
                        _ => closed = s.write_all(&chunk).await.is_err(),
                    }
                }
                closed
            }
            Phase::NoRead => unreachable!("handled above"),
        };
        if closed {
            stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A 2-node cluster whose nodes complete INIT and their lists, then never
/// read again: node 1 keeps sending new membership lists (each causes
/// VOTE_INFOs to both) and echo requests, until the server drops it.
pub(super) async fn no_read_pair(
    i: usize,
    round: u32,
    server: SocketAddr,
    until: tokio::time::Instant,
    stats: &AttackStats,
) {
    let name = format!("noread-{i}-{round}");
    let source = attack_source(i);
    let hb = 1000;
    let (a, b) = match (
        join_pair_node(server, source, &name, 1, hb).await,
        join_pair_node(server, source, &name, 2, hb).await,
    ) {
        (Ok((a, _)), Ok((b, _))) => (a, b),
        _ => {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
    };
    stats.connected.fetch_add(2, Ordering::Relaxed);
    // Both nodes report the same new ring each round (a stable membership
    // change): every round makes the server send both a VOTE_INFO, a
    // NODE_LIST_REPLY and an ECHO_REPLY, none of which is ever read.
    let mut nodes = [a, b];
    let mut seq = 100u32;
    let mut ring_seq = 10u64;
    let mut closed = false;
    'rounds: while tokio::time::Instant::now() < until {
        ring_seq += 4;
        seq += 1;
        let mut out = Vec::new();
        let lists = [
            Message::NodeList(qnetd_core::wire::NodeList {
                seq: Some(seq),
                list_type: Some(qnetd_core::wire::NodeListType::Membership),
                ring_id: Some(RingId::new(1, ring_seq)),
                nodes: vec![
                    qnetd_core::wire::NodeInfo::new(1),
                    qnetd_core::wire::NodeInfo::new(2),
                ],
                ..Default::default()
            }),
            Message::EchoRequest(Echo { seq: Some(seq) }),
        ];
        for m in &lists {
            let _ = qnetd_core::wire::try_encode(m, &mut out);
        }
        // Plus a burst of echo requests, whose replies fill the socket
        // buffers and then the server's send queue for this client.
        for k in 0..200u32 {
            let echo = Message::EchoRequest(Echo {
                seq: Some(seq.wrapping_mul(1000).wrapping_add(k)),
            });
            let _ = qnetd_core::wire::try_encode(&echo, &mut out);
        }
        for c in nodes.iter_mut() {
            match tokio::time::timeout(Duration::from_secs(2), c.send_raw(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    closed = true;
                    break 'rounds;
                }
                // The server stopped reading us (it is dropping us, or the
                // socket buffers are full): keep the socket, try again.
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if closed {
        stats.closed_by_server.fetch_add(2, Ordering::Relaxed);
    }
}

//! `storm`: the reconnect storm after a failover (issue 14, item 7).
//!
//! N two-node clusters of simulated corosync-qdevice 3.0.x nodes connect
//! over TLS (a client certificate per cluster, from the CA in --tls-dir) to
//! the group's address, vote, and heartbeat. Then `--failover CMD` runs
//! (e.g. SIGTERM or kill -9 of the leader): every node loses its
//! connection, sleeps as qdevice does (2386 ms after a lost connection:
//! qdevice never seeds random(), so every node sleeps the same time) and
//! reconnects to whichever instance now serves the address, all at once.
//! Reported: time from the failover until every node votes ACK again, the
//! per-node distribution, and the heartbeat (echo) round trips of the nodes
//! that had already reconnected while the others were still reconnecting.
//!
//! Usage: storm --server ADDR:PORT --clusters N --tls-dir DIR --failover CMD
//!        [--heartbeat-ms MS] [--reconnect-ms MS] [--timeout S]
//! Runs on loopback (one 127.x.y.z source address per cluster).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qnetd_core::wire::{AlgorithmKind, Echo, ErrorCode, Message, RingId, TieBreaker, Vote};
use qnetd_tools::client::{tcp_connect, tls_client_config, Client, NodeParams};
use rustls::ClientConfig;
use tokio::sync::{watch, Semaphore};

struct Args {
    server: SocketAddr,
    clusters: usize,
    tls_dir: std::path::PathBuf,
    failover: String,
    heartbeat_ms: u32,
    reconnect_ms: u64,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        server: "127.0.0.1:5403".parse().unwrap(),
        clusters: 5000,
        tls_dir: "/etc/qnetd/tls".into(),
        failover: String::new(),
        heartbeat_ms: 8000,
        reconnect_ms: 2386,
        timeout: Duration::from_secs(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--server" => a.server = v()?.parse().map_err(|_| "--server ADDR:PORT")?,
            "--clusters" => a.clusters = v()?.parse().map_err(|_| "--clusters N")?,
            "--tls-dir" => a.tls_dir = v()?.into(),
            "--failover" => a.failover = v()?,
            "--heartbeat-ms" => a.heartbeat_ms = v()?.parse().map_err(|_| "--heartbeat-ms MS")?,
            "--reconnect-ms" => a.reconnect_ms = v()?.parse().map_err(|_| "--reconnect-ms MS")?,
            "--timeout" => {
                a.timeout = Duration::from_secs(v()?.parse().map_err(|_| "--timeout S")?)
            }
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.failover.is_empty() {
        return Err(
            "--failover CMD is required (the command that makes the group fail over)".into(),
        );
    }
    Ok(a)
}

/// What one node records.
#[derive(Default)]
struct NodeState {
    /// Successful INITs.
    generation: AtomicU32,
    /// Nanoseconds (since the epoch) of the first ACK of each generation.
    acks: Mutex<Vec<(u32, u64)>>,
    /// (send time ns, round trip µs, generation)
    rtts: Mutex<Vec<(u64, u32, u32)>>,
    errors: AtomicU64,
}

fn source(i: usize) -> IpAddr {
    let a = 1 + i / (254 * 256);
    let b = (i / 254) % 256;
    let c = 1 + i % 254;
    IpAddr::V4(Ipv4Addr::new(127, (a % 256) as u8, b as u8, c as u8))
}

struct Node {
    cluster: String,
    id: u32,
    src: IpAddr,
    tls: Arc<ClientConfig>,
}

async fn run_node(
    n: Node,
    st: Arc<NodeState>,
    a: Arc<Args>,
    epoch: Instant,
    first: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let ns = || epoch.elapsed().as_nanos() as u64;
    let ring = RingId::new(1, 4);
    let mut permit = Some(first.acquire_owned().await.expect("semaphore"));
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = async {
            let s = tcp_connect(a.server, Some(n.src), Duration::from_secs(8))
                .await
                .ok()?;
            let mut c = Client::from_tcp(s).ok()?;
            c.timeout = Duration::from_secs(8);
            let p = NodeParams {
                cluster: n.cluster.clone(),
                node_id: n.id,
                algorithm: AlgorithmKind::Ffsplit,
                tie_breaker: TieBreaker::Lowest,
                heartbeat_ms: a.heartbeat_ms,
                ring,
            };
            let r = c.handshake_tls(&p, Arc::clone(&n.tls)).await.ok()?;
            (r.error_code == Some(ErrorCode::NO_ERROR)).then_some(c)
        };
        let Some(mut c) = attempt.await else {
            st.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        permit.take();
        let generation = st.generation.fetch_add(1, Ordering::Relaxed) + 1;
        c.timeout = Duration::from_secs(3600);
        let ok = async {
            c.send_config(&[1, 2], true).await.ok()?;
            c.send_membership(ring, &[1, 2], qnetd_core::wire::Heuristics::Undefined)
                .await
                .ok()?;
            c.send_quorum(true, &[1, 2]).await.ok()
        }
        .await
        .is_some();
        if !ok {
            st.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(u64::from(a.heartbeat_ms)));
        tick.tick().await;
        let mut pending: Option<(u32, u64)> = None;
        let mut seq = 0u32;
        let mut acked = false;
        let lost = loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    if pending.is_some() {
                        break true; // no echo reply within a heartbeat
                    }
                    seq += 1;
                    pending = Some((seq, ns()));
                    if c.send(&Message::EchoRequest(Echo { seq: Some(seq) })).await.is_err() {
                        break true;
                    }
                }
                m = c.recv() => match m {
                    Err(_) => break true,
                    Ok(Message::EchoReply(e)) => {
                        if let Some((s, t)) = pending {
                            if e.seq == Some(s) {
                                let rtt = ((ns() - t) / 1000) as u32;
                                st.rtts.lock().unwrap().push((t, rtt, generation));
                                pending = None;
                            }
                        }
                    }
                    Ok(Message::VoteInfo(v)) => {
                        if v.vote == Some(Vote::Ack) && !acked {
                            acked = true;
                            st.acks.lock().unwrap().push((generation, ns()));
                        }
                        if let Some(s) = v.seq {
                            if c.reply_vote_info(s).await.is_err() {
                                break true;
                            }
                        }
                    }
                    Ok(Message::NodeListReply(r)) => {
                        if r.vote == Some(Vote::Ack) && !acked {
                            acked = true;
                            st.acks.lock().unwrap().push((generation, ns()));
                        }
                    }
                    Ok(_) => {}
                },
            }
        };
        if lost {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(a.reconnect_ms)) => {}
            }
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(v: &mut [f64], unit: &str) -> String {
    let n = v.len();
    format!(
        "p50 {:.1}{unit}, p99 {:.1}{unit}, max {:.1}{unit} (n={n})",
        pct(v, 0.5),
        pct(v, 0.99),
        v.last().copied().unwrap_or(0.0)
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("storm: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    qnetd_tools::bench::proc::raise_nofile(1 << 20);
    let t_setup = Instant::now();
    let pki = qnetd_certs::Pki::new(&a.tls_dir);
    let ca = match std::fs::read(pki.path(qnetd_certs::Pki::CA_CERT)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("storm: cannot read the CA of {}: {e}", a.tls_dir.display());
            return std::process::ExitCode::from(2);
        }
    };
    // one client certificate per cluster, made on every core
    let names: Vec<String> = (0..a.clusters).map(|i| format!("storm{i:05}")).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = names.len().div_ceil(threads).max(1);
    let configs: Vec<Arc<ClientConfig>> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let (pki, ca) = (&pki, &ca);
                s.spawn(move || {
                    part.iter()
                        .map(|n| {
                            let b = pki.issue_client(n, 2).expect("client certificate");
                            let cfg = tls_client_config(
                                ca,
                                Some((b.cert_pem.as_bytes(), b.key_pem.as_bytes())),
                            )
                            .expect("TLS config");
                            let mut cfg = (*cfg).clone();
                            cfg.resumption = rustls::client::Resumption::disabled();
                            Arc::new(cfg)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let setup_s = t_setup.elapsed().as_secs_f64();
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let first = Arc::new(Semaphore::new(200));
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    for (i, (name, tls)) in names.iter().zip(&configs).enumerate() {
        for id in 1..=2 {
            let st = Arc::new(NodeState::default());
            states.push(Arc::clone(&st));
            tasks.push(tokio::spawn(run_node(
                Node {
                    cluster: name.clone(),
                    id,
                    src: source(i),
                    tls: Arc::clone(tls),
                },
                st,
                Arc::clone(&a),
                epoch,
                Arc::clone(&first),
                stop_rx.clone(),
            )));
        }
    }
    let total = states.len();
    let voted = |g: u32| {
        states
            .iter()
            .filter(|s| s.acks.lock().unwrap().iter().any(|(gen, _)| *gen >= g))
            .count()
    };
    let deadline = Instant::now() + a.timeout;
    while voted(1) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_s = epoch.elapsed().as_secs_f64();
    if voted(1) < total {
        eprintln!(
            "storm: only {} of {total} nodes voted before the failover",
            voted(1)
        );
        return std::process::ExitCode::FAILURE;
    }
    eprintln!("storm: {total} nodes connected over TLS and voting ({connect_s:.1} s); settling");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let errors_before: u64 = states
        .iter()
        .map(|s| s.errors.load(Ordering::Relaxed))
        .sum();
    let t_f = epoch.elapsed().as_nanos() as u64;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&a.failover)
        .status();
    eprintln!("storm: failover command: {status:?}");
    let deadline = Instant::now() + a.timeout;
    // every node has a generation-2 ACK, i.e. voted again on a new connection
    while voted(2) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t_done = epoch.elapsed().as_nanos() as u64;
    let done = voted(2);
    // a few more heartbeats after the storm
    tokio::time::sleep(Duration::from_millis(u64::from(a.heartbeat_ms) + 500)).await;
    stop_tx.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let mut reack: Vec<f64> = states
        .iter()
        .filter_map(|s| {
            s.acks
                .lock()
                .unwrap()
                .iter()
                .find(|(g, t)| *g >= 2 && *t > t_f)
                .map(|(_, t)| (t - t_f) as f64 / 1e9)
        })
        .collect();
    // echoes sent during the storm by nodes already back (generation >= 2)
    let mut during: Vec<f64> = Vec::new();
    let mut before: Vec<f64> = Vec::new();
    for s in &states {
        for (t, rtt, g) in s.rtts.lock().unwrap().iter() {
            if *g >= 2 && *t >= t_f && *t <= t_done {
                during.push(f64::from(*rtt) / 1000.0);
            } else if *g == 1 && *t < t_f {
                before.push(f64::from(*rtt) / 1000.0);
            }
        }
    }
    let errors: u64 = states
        .iter()
        .map(|s| s.errors.load(Ordering::Relaxed))
        .sum::<u64>()
        - errors_before;
    println!(
        "storm: {} two-node TLS clusters ({total} nodes) on {}; certificates {setup_s:.1} s, first connect until all voted {connect_s:.1} s",
        a.clusters, a.server
    );
    println!(
        "storm: after the failover ({}): {done} of {total} nodes voting ACK again after {:.2} s; per node: {}",
        a.failover,
        (t_done - t_f) as f64 / 1e9,
        summary(&mut reack, " s")
    );
    println!(
        "storm: heartbeat round trip of nodes already reconnected, during the storm: {}",
        summary(&mut during, " ms")
    );
    println!(
        "storm: heartbeat round trip before the failover: {}",
        summary(&mut before, " ms")
    );
    println!("storm: failed connection attempts after the failover: {errors} (qdevice reconnects {} ms after a lost connection)", a.reconnect_ms);
    if done == total {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

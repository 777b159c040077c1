//! `chaos`: randomised fault schedules against real qnetd HA groups on a
//! real etcd, checked by the history checker (issue 14, acceptance).
//!
//! Each schedule starts three `qnetd serve` instances of a fresh group on
//! three loopback addresses (127.79.G.1-3, port 5403), each reaching etcd
//! through a TCP proxy of its own in this process (so an "etcd partition"
//! of one instance is a proxy that goes silent), and three simulated
//! clusters (ffsplit 4 nodes, lms 4 nodes, 2nodelms 2 nodes) whose nodes
//! behave like corosync-qdevice 3.0.x: they try the instances in turn
//! (a name listing every instance, each node in its own rotation),
//! heartbeat, answer VOTE_INFO, drop a kept vote as qdevice does (ffsplit
//! and lms on disconnect, 2nodelms only when its membership changes or it
//! reconnects; see `keeps_vote`) and send new lists when the schedule
//! splits or heals their cluster.
//! Then it applies random faults: `kill -9` of an instance (restarted
//! later), SIGSTOP of an instance for a while, an etcd partition of an
//! instance, and cluster splits/heals. Every vote a node receives (reply or
//! VOTE_INFO, with the instance that sent it) and every drop is an event on
//! this process's monotonic clock; `qnetd_ha::history::check` reports any
//! moment at which ACKs in force cover two partitions of one cluster.
//!
//! Usage: chaos --qnetd PATH --etcd URL[,URL...] [--schedules N]
//!        [--parallel P] [--seed S] [--secs S] [--dir DIR] [--ttl S]
//!        [--control]
//! Exit status 0 only when no schedule has a violation and every schedule
//! saw votes. Needs no root (loopback only) and a running etcd.
//!
//! `--control` is the negative control: each instance in a group of its
//! own (three leaders, no shared vote memory). The checker must then find
//! violations (exit status 0 only if it does), which shows that it can.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qnetd_core::wire::{AlgorithmKind, Echo, Message, RingId, TieBreaker, Vote};
use qnetd_ha::history::{self, Event, Kind, Ring};
use qnetd_tools::client::{tcp_connect, Client, NodeParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PORT: u16 = 5403;
const HEARTBEAT_MS: u32 = 500;

// ---------------------------------------------------------------- random

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

// ---------------------------------------------------------------- args

struct Args {
    qnetd: PathBuf,
    etcd: Vec<SocketAddr>,
    schedules: usize,
    parallel: usize,
    seed: u64,
    secs: u64,
    dir: PathBuf,
    ttl: u32,
    control: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        qnetd: PathBuf::from("target/release/qnetd"),
        etcd: Vec::new(),
        schedules: 200,
        parallel: 8,
        seed: 1,
        secs: 9,
        dir: PathBuf::from("/tmp/ha-chaos"),
        ttl: 2,
        control: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--qnetd" => a.qnetd = PathBuf::from(v()?),
            "--etcd" => {
                for e in v()?.split(',') {
                    let hostport = e
                        .trim_start_matches("http://")
                        .trim_start_matches("https://");
                    a.etcd.push(
                        hostport
                            .parse()
                            .map_err(|_| format!("--etcd: {e} is not http://IP:PORT"))?,
                    );
                }
            }
            "--schedules" => a.schedules = v()?.parse().map_err(|_| "--schedules N")?,
            "--parallel" => a.parallel = v()?.parse().map_err(|_| "--parallel N")?,
            "--seed" => a.seed = v()?.parse().map_err(|_| "--seed N")?,
            "--secs" => a.secs = v()?.parse().map_err(|_| "--secs N")?,
            "--dir" => a.dir = PathBuf::from(v()?),
            "--ttl" => a.ttl = v()?.parse().map_err(|_| "--ttl N")?,
            "--control" => a.control = true,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.etcd.is_empty() {
        return Err("--etcd URL[,URL...] is required (plain http)".into());
    }
    if !a.qnetd.exists() {
        return Err(format!(
            "{} does not exist: cargo build --release (or give --qnetd)",
            a.qnetd.display()
        ));
    }
    a.parallel = a.parallel.clamp(1, 64);
    Ok(a)
}

// ---------------------------------------------------------------- history

/// Every event of one schedule, on one clock.
struct Log {
    epoch: Instant,
    events: Mutex<Vec<Event>>,
}

impl Log {
    fn t(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
    fn push(&self, instance: &str, cluster: &str, node: u32, kind: Kind) {
        let e = Event {
            time: self.t(),
            instance: instance.into(),
            cluster: cluster.as_bytes().to_vec(),
            node,
            kind,
        };
        self.events.lock().unwrap().push(e);
    }
}

fn ring(r: RingId) -> Ring {
    Ring {
        node_id: r.node_id,
        seq: r.seq,
    }
}

fn hvote(v: Vote) -> history::Vote {
    match v {
        Vote::Ack => history::Vote::Ack,
        Vote::Nack => history::Vote::Nack,
        Vote::AskLater => history::Vote::AskLater,
        Vote::WaitForReply => history::Vote::WaitForReply,
        Vote::NoChange => history::Vote::NoChange,
    }
}

// ---------------------------------------------------------------- etcd proxy

/// One instance's way to etcd; `cut` makes it silent (a partition).
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

async fn start_proxy(upstreams: Arc<Vec<SocketAddr>>) -> std::io::Result<Proxy> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let (cut, cut_rx) = watch::channel(false);
    let next = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let ups = Arc::clone(&upstreams);
            let mut cut = cut_rx.clone();
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let is_cut = *cut.borrow();
                if is_cut {
                    // partitioned: accept, never answer, drop at the heal
                    let healed = cut.wait_for(|c| !*c).await.is_ok();
                    let _ = healed;
                    drop(client);
                    return;
                }
                let mut up = None;
                for _ in 0..ups.len() {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize % ups.len();
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(ups[i]))
                            .await
                    {
                        up = Some(s);
                        break;
                    }
                }
                let Some(mut up) = up else { return };
                let mut client = client;
                let was_cut = tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut up) => false,
                    r = cut.wait_for(|c| *c) => r.is_ok(),
                };
                if was_cut {
                    drop(up);
                    let healed = cut.wait_for(|c| !*c).await.is_ok();
                    let _ = healed;
                }
            });
        }
    });
    Ok(Proxy { addr, cut })
}

// ---------------------------------------------------------------- instances

struct Instance {
    name: String,
    addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    proxy: Proxy,
}

impl Instance {
    fn command(&self, qnetd: &Path, group: &str, ttl: u32) -> Command {
        let mut c = Command::new(qnetd);
        c.args([
            "serve",
            "-s",
            "off",
            "-l",
            &self.addr.ip().to_string(),
            "-p",
            &PORT.to_string(),
            "--metrics-listen",
            "off",
            "-S",
        ]);
        c.arg(format!(
            "lock_file={d}/lock,local_socket_file={d}/sock,state_dir=off,restart_vote_hold=20000,heartbeat_interval_min=100",
            d = self.dir.display()
        ));
        for kv in [
            format!("endpoints=http://{}", self.proxy.addr),
            format!("group={group}"),
            format!("name={}", self.name),
            format!("lease_ttl={ttl}"),
            "margin=500".into(),
            "keepalive_interval=300".into(),
            "request_timeout=400".into(),
            "poll_interval=150".into(),
        ] {
            c.arg("--ha").arg(kv);
        }
        c.env(
            "QNETD_LOG",
            std::env::var("CHAOS_QNETD_LOG").unwrap_or_else(|_| "info".into()),
        );
        c
    }

    fn start(&mut self, qnetd: &Path, group: &str, ttl: u32) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = self
            .command(qnetd, group, ttl)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("qnetd starts");
        self.child = Some(child);
        self.paused = false;
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the PID of a child we started and have not reaped.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    fn kill9(&mut self) {
        self.signal(libc::SIGCONT);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it cleanly (SIGTERM, resign), kill -9 after 5 s.
    fn stop(&mut self) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        if let Some(mut c) = self.child.take() {
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether an instance says it serves (its admin socket, bounded).
async fn serving(dir: &Path) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::net::UnixStream::connect(dir.join("sock")),
    )
    .await
    else {
        return false;
    };
    let read = async {
        s.write_all(b"json\n").await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(out)
    };
    match tokio::time::timeout(Duration::from_millis(300), read).await {
        Ok(Some(out)) => String::from_utf8_lossy(&out).contains("\"serving\": true"),
        _ => false,
    }
}

// ---------------------------------------------------------------- nodes

/// A node's view of its cluster: its ring and members.
#[derive(Clone, Debug, PartialEq)]
struct View {
    ring: RingId,
    members: Vec<u32>,
}

struct NodeCfg {
    cluster: String,
    algorithm: AlgorithmKind,
    id: u32,
    config: Vec<u32>,
    servers: Vec<(String, SocketAddr)>,
}

/// What qdevice does with its vote when it loses the server: 2nodelms
/// keeps it (until its membership changes or it reconnects), ffsplit drops
/// it, lms drops it unless the node was quorate with wait_for_all. lms
/// nodes are modelled without wait_for_all: with it, a departure during
/// normal operation can give two partitions ACK on one server
/// (docs/safety-testing.md, finding 2, an open limitation of the lms
/// algorithm, not of high availability); across a failover every
/// remembered lms holder is treated as still voting all the same.
fn keeps_vote(a: AlgorithmKind) -> bool {
    a == AlgorithmKind::TwoNodeLms
}

async fn run_node(
    cfg: NodeCfg,
    log: Arc<Log>,
    mut view: watch::Receiver<View>,
    mut stop: watch::Receiver<bool>,
) {
    // the instance whose ACK this node may hold while disconnected
    let mut holding_from: Option<String> = None;
    let mut last_view = view.borrow().clone();
    loop {
        if *stop.borrow() {
            return;
        }
        // a kept vote ends when the membership changes while disconnected
        let v = view.borrow_and_update().clone();
        if v != last_view {
            if holding_from.take().is_some() {
                log.push("node", &cfg.cluster, cfg.id, vote_kind(Vote::Nack, &v));
            }
            last_view = v.clone();
        }
        // find the server: each instance in turn, a bounded attempt each
        let mut conn = None;
        for (name, addr) in &cfg.servers {
            let attempt = async {
                let s = tcp_connect(*addr, None, Duration::from_millis(300))
                    .await
                    .ok()?;
                let mut c = Client::from_tcp(s).ok()?;
                c.timeout = Duration::from_millis(600);
                let p = NodeParams {
                    cluster: cfg.cluster.clone(),
                    node_id: cfg.id,
                    algorithm: cfg.algorithm,
                    tie_breaker: TieBreaker::Lowest,
                    heartbeat_ms: HEARTBEAT_MS,
                    ring: v.ring,
                };
                let r = c.handshake(&p).await.ok()?;
                (r.error_code == Some(qnetd_core::wire::ErrorCode::NO_ERROR)).then_some(c)
            };
            if let Some(c) = attempt.await {
                conn = Some((name.clone(), c));
                break;
            }
        }
        let Some((inst, mut c)) = conn else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        // a new connection stops a kept vote until the server answers
        if holding_from.take().is_some() {
            log.push(
                "node",
                &cfg.cluster,
                cfg.id,
                vote_kind(Vote::WaitForReply, &v),
            );
        }
        c.timeout = Duration::from_secs(3600);
        let ended = serve_connection(
            &cfg,
            &inst,
            &mut c,
            &log,
            &mut view,
            &mut last_view,
            &mut stop,
        )
        .await;
        // the connection is over: ffsplit drops its vote, lms keeps it
        log.push(
            &inst,
            &cfg.cluster,
            cfg.id,
            Kind::Disconnected {
                keeps_vote: keeps_vote(cfg.algorithm),
            },
        );
        if keeps_vote(cfg.algorithm) {
            holding_from = Some(inst);
        }
        if ended {
            return;
        }
        // qdevice sleeps a little before reconnecting
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn vote_kind(v: Vote, view: &View) -> Kind {
    Kind::Vote {
        vote: hvote(v),
        ring: ring(view.ring),
        members: view.members.clone(),
    }
}

/// Drives one connection; returns true when told to stop.
async fn serve_connection(
    cfg: &NodeCfg,
    inst: &str,
    c: &mut Client,
    log: &Log,
    view: &mut watch::Receiver<View>,
    current: &mut View,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let v = view.borrow_and_update().clone();
    if v != *current {
        *current = v;
    }
    if c.send_config(&cfg.config, true).await.is_err() {
        return false;
    }
    if send_view(c, current).await.is_err() {
        return false;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(HEARTBEAT_MS)));
    let mut echo_seq = 0u32;
    let mut last_reply = Instant::now();
    loop {
        enum Ev {
            Msg(Result<Message, qnetd_tools::client::ClientError>),
            Tick,
            View,
            Stop,
        }
        let ev = tokio::select! {
            m = c.recv() => Ev::Msg(m),
            _ = tick.tick() => Ev::Tick,
            _ = view.changed() => Ev::View,
            _ = stop.changed() => Ev::Stop,
        };
        match ev {
            Ev::Stop => return true,
            Ev::Tick => {
                // qdevice: no echo reply by the next heartbeat = dead server
                if last_reply.elapsed() > Duration::from_millis(2 * u64::from(HEARTBEAT_MS)) {
                    return false;
                }
                echo_seq += 1;
                if c.send(&Message::EchoRequest(Echo {
                    seq: Some(echo_seq),
                }))
                .await
                .is_err()
                {
                    return false;
                }
            }
            Ev::View => {
                let v = view.borrow_and_update().clone();
                if v != *current {
                    *current = v;
                    // the node stops voting until the server answers for the new ring
                    log.push(
                        "node",
                        &cfg.cluster,
                        cfg.id,
                        vote_kind(Vote::WaitForReply, current),
                    );
                    if send_view(c, current).await.is_err() {
                        return false;
                    }
                }
            }
            Ev::Msg(Err(_)) => return false,
            Ev::Msg(Ok(m)) => {
                last_reply = Instant::now();
                let (vote, r, ack_seq) = match m {
                    Message::VoteInfo(vi) => (vi.vote, vi.ring_id, vi.seq),
                    Message::NodeListReply(r) => (r.vote, r.ring_id, None),
                    _ => (None, None, None),
                };
                // qdevice applies a vote (only for its current ring) before
                // it acknowledges it: the server may act on the reply at once
                if let (Some(vote), Some(r)) = (vote, r) {
                    if r == current.ring {
                        log.push(inst, &cfg.cluster, cfg.id, vote_kind(vote, current));
                    }
                }
                if let Some(seq) = ack_seq {
                    if c.reply_vote_info(seq).await.is_err() {
                        return false;
                    }
                }
            }
        }
    }
}

async fn send_view(c: &mut Client, v: &View) -> Result<(), qnetd_tools::client::ClientError> {
    c.send_membership(v.ring, &v.members, qnetd_core::wire::Heuristics::Undefined)
        .await?;
    c.send_quorum(true, &v.members).await?;
    Ok(())
}

// ---------------------------------------------------------------- schedules

struct SimCluster {
    size: u32,
    /// per node: its view channel
    views: Vec<watch::Sender<View>>,
    seq: u64,
    split: bool,
}

impl SimCluster {
    fn set(&mut self, split: bool) {
        self.seq += 4;
        self.split = split;
        let all: Vec<u32> = (1..=self.size).collect();
        let half = self.size / 2;
        for (i, tx) in self.views.iter().enumerate() {
            let id = i as u32 + 1;
            let members: Vec<u32> = if !split {
                all.clone()
            } else if id <= half {
                (1..=half).collect()
            } else {
                (half + 1..=self.size).collect()
            };
            let ring = RingId::new(members[0], self.seq);
            tx.send_replace(View { ring, members });
        }
    }
}

#[derive(Default)]
struct Outcome {
    violations: Vec<String>,
    votes: usize,
    acks: usize,
    faults: HashMap<&'static str, usize>,
    /// time from a kill/pause/cut of the serving leader to the first ACK
    /// sent by another instance (ms)
    failovers_ms: Vec<u64>,
}

async fn schedule(args: Arc<Args>, index: usize) -> Outcome {
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((index as u64 + 1) * 7919));
    rng.next();
    let group = format!("chaos-{}-{index}", args.seed);
    let dir = args.dir.join(format!("s{index:04}"));
    let _ = std::fs::remove_dir_all(&dir);
    let upstreams = Arc::new(args.etcd.clone());
    let mut instances = Vec::new();
    for i in 0..3u8 {
        let idir = dir.join(format!("q{}", i + 1));
        std::fs::create_dir_all(&idir).expect("schedule dir");
        instances.push(Instance {
            name: format!("q{}", i + 1),
            addr: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 79, (index % 250) as u8, i + 1)),
                PORT,
            ),
            dir: idir,
            child: None,
            paused: false,
            proxy: start_proxy(Arc::clone(&upstreams)).await.expect("proxy"),
        });
    }
    // the negative control: three groups of one instance each
    let groups: Vec<String> = (1..=3)
        .map(|i| {
            if args.control {
                format!("{group}-alone{i}")
            } else {
                group.clone()
            }
        })
        .collect();
    for (inst, g) in instances.iter_mut().zip(&groups) {
        inst.start(&args.qnetd, g, args.ttl);
    }
    let log = Arc::new(Log {
        epoch: Instant::now(),
        events: Mutex::new(Vec::new()),
    });
    let servers: Vec<(String, SocketAddr)> =
        instances.iter().map(|i| (i.name.clone(), i.addr)).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clusters = Vec::new();
    let mut tasks = Vec::new();
    for (name, alg, size) in [
        ("f", AlgorithmKind::Ffsplit, 4u32),
        ("l", AlgorithmKind::Lms, 4),
        ("t", AlgorithmKind::TwoNodeLms, 2),
    ] {
        let all: Vec<u32> = (1..=size).collect();
        let mut views = Vec::new();
        for id in 1..=size {
            let (tx, rx) = watch::channel(View {
                ring: RingId::new(1, 4),
                members: all.clone(),
            });
            views.push(tx);
            // every node tries the instances in its own order (a resolver
            // that rotates its answers): the nodes of one cluster may
            // start on different instances
            let mut order = servers.clone();
            let n = order.len();
            order.rotate_left(id as usize % n);
            tasks.push(tokio::spawn(run_node(
                NodeCfg {
                    cluster: name.into(),
                    algorithm: alg,
                    id,
                    config: all.clone(),
                    servers: order,
                },
                Arc::clone(&log),
                rx,
                stop_rx.clone(),
            )));
        }
        clusters.push(SimCluster {
            size,
            views,
            seq: 4,
            split: false,
        });
    }
    let mut out = Outcome::default();
    // warm-up: a leader serves and the clusters vote
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if args.control {
        // three leaders: split every cluster at once
        for c in &mut clusters {
            c.set(true);
        }
    }
    let end = Instant::now() + Duration::from_secs(args.secs);
    let mut pending: Vec<(Instant, usize, &'static str)> = Vec::new();
    while Instant::now() < end {
        // undo faults whose time has come
        let now = Instant::now();
        let due: Vec<_> = pending
            .iter()
            .copied()
            .filter(|(t, _, _)| *t <= now)
            .collect();
        pending.retain(|(t, _, _)| *t > now);
        for (_, i, what) in due {
            match what {
                "restart" => instances[i].start(&args.qnetd, &groups[i], args.ttl),
                "resume" => {
                    instances[i].signal(libc::SIGCONT);
                    instances[i].paused = false;
                }
                "heal-etcd" => {
                    instances[i].proxy.cut.send_replace(false);
                }
                _ => {}
            }
        }
        // the next fault
        let mut leader = None;
        for (i, inst) in instances.iter().enumerate() {
            if inst.child.is_some() && !inst.paused && serving(&inst.dir).await {
                leader = Some(i);
            }
        }
        // faults hit the leader most of the time
        let target = match leader {
            Some(l) if rng.below(4) != 0 => l,
            _ => rng.below(3) as usize,
        };
        let busy = pending.iter().any(|(_, i, _)| *i == target);
        let kind = rng.below(10);
        let t_fault = log.t();
        let was_leader = leader == Some(target);
        let fault: &'static str = match kind {
            0..=2 if !busy && instances[target].child.is_some() => {
                instances[target].kill9();
                pending.push((now + rng.ms(300, 2500), target, "restart"));
                "kill"
            }
            3..=5 if !busy && instances[target].child.is_some() => {
                instances[target].signal(libc::SIGSTOP);
                instances[target].paused = true;
                pending.push((now + rng.ms(300, 4000), target, "resume"));
                "pause"
            }
            6..=7 if !busy => {
                instances[target].proxy.cut.send_replace(true);
                pending.push((now + rng.ms(500, 4000), target, "heal-etcd"));
                "etcd-partition"
            }
            _ => {
                let c = &mut clusters[rng.below(3) as usize];
                let split = !c.split;
                c.set(split);
                if split {
                    "split"
                } else {
                    "heal"
                }
            }
        };
        *out.faults.entry(fault).or_default() += 1;
        if was_leader && matches!(fault, "kill" | "pause" | "etcd-partition") {
            // the failover time is measured after the schedule, from the events
            out.failovers_ms.push(t_fault);
        }
        tokio::time::sleep(rng.ms(700, 2500)).await;
    }
    // undo everything, let the history settle, stop
    for (_, i, what) in pending.drain(..) {
        match what {
            "restart" => instances[i].start(&args.qnetd, &groups[i], args.ttl),
            "resume" => instances[i].signal(libc::SIGCONT),
            _ => {
                instances[i].proxy.cut.send_replace(false);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_tx.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    for inst in &mut instances {
        let mut inst_stop = std::mem::replace(
            inst,
            Instance {
                name: String::new(),
                addr: inst.addr,
                dir: inst.dir.clone(),
                child: None,
                paused: false,
                proxy: Proxy {
                    addr: inst.proxy.addr,
                    cut: watch::channel(false).0,
                },
            },
        );
        tokio::task::spawn_blocking(move || inst_stop.stop())
            .await
            .ok();
    }
    let events = std::mem::take(&mut *log.events.lock().unwrap());
    out.votes = events
        .iter()
        .filter(|e| matches!(e.kind, Kind::Vote { .. }) && e.instance != "node")
        .count();
    out.acks = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                Kind::Vote {
                    vote: history::Vote::Ack,
                    ..
                }
            ) && e.instance != "node"
        })
        .count();
    // failover: first ACK after the fault from an instance other than the
    // one that sent the last ACK before it
    let fault_times = std::mem::take(&mut out.failovers_ms);
    for t in fault_times {
        let before = events
            .iter()
            .rev()
            .find(|e| {
                e.time <= t
                    && e.instance != "node"
                    && matches!(
                        e.kind,
                        Kind::Vote {
                            vote: history::Vote::Ack,
                            ..
                        }
                    )
            })
            .map(|e| e.instance.clone());
        if let Some(old) = before {
            if let Some(e) = events.iter().find(|e| {
                e.time > t
                    && e.instance != "node"
                    && e.instance != old
                    && matches!(
                        e.kind,
                        Kind::Vote {
                            vote: history::Vote::Ack,
                            ..
                        }
                    )
            }) {
                out.failovers_ms.push((e.time - t) / 1000);
            }
        }
    }
    let violations = history::check(&events);
    for v in &violations {
        out.violations.push(format!("schedule {index}: {v}"));
    }
    if violations.is_empty() && out.votes > 0 {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        let text: String = events.iter().map(|e| format!("{e:?}\n")).collect();
        let _ = std::fs::write(dir.join("events.txt"), text);
    }
    out
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("chaos: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let _ = std::fs::create_dir_all(&args.dir);
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.parallel));
    let mut handles = Vec::new();
    for i in 0..args.schedules {
        let permit = Arc::clone(&sem).acquire_owned().await.expect("semaphore");
        let a = Arc::clone(&args);
        handles.push(tokio::spawn(async move {
            let o = schedule(a, i).await;
            drop(permit);
            o
        }));
    }
    let mut total = Outcome::default();
    let mut silent = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        let o = h.await.expect("schedule task");
        if o.votes == 0 {
            silent.push(i);
        }
        total.votes += o.votes;
        total.acks += o.acks;
        total.violations.extend(o.violations);
        total.failovers_ms.extend(o.failovers_ms);
        for (k, n) in o.faults {
            *total.faults.entry(k).or_default() += n;
        }
    }
    let mut faults: Vec<_> = total.faults.iter().collect();
    faults.sort();
    let mut f = total.failovers_ms.clone();
    println!(
        "chaos: {} schedules in {:.0} s (seed {}, {} in parallel, {} s of faults each, lease TTL {} s)",
        args.schedules,
        started.elapsed().as_secs_f64(),
        args.seed,
        args.parallel,
        args.secs,
        args.ttl
    );
    println!(
        "chaos: faults {}",
        faults
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "chaos: {} votes received by the nodes ({} ACK); leader faults followed by an ACK from another instance: {} (p50 {} ms, p90 {} ms, max {} ms)",
        total.votes,
        total.acks,
        f.len(),
        pct(&mut f, 0.5),
        pct(&mut f, 0.9),
        f.last().copied().unwrap_or(0)
    );
    println!("chaos: violations: {}", total.violations.len());
    for v in total.violations.iter().take(20) {
        println!("  {v}");
    }
    if !silent.is_empty() {
        println!("chaos: schedules without any vote (the harness is broken): {silent:?}");
    }
    if args.control {
        return if total.violations.is_empty() {
            println!("chaos: CONTROL FAILED: three independent leaders and no violation found: the checker or the client model cannot see double votes");
            std::process::ExitCode::FAILURE
        } else {
            println!("chaos: control: the checker found the double votes of three independent leaders, as it must");
            std::process::ExitCode::SUCCESS
        };
    }
    if total.violations.is_empty() && silent.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        println!(
            "chaos: events of the failing schedules are in {}",
            args.dir.display()
        );
        std::process::ExitCode::FAILURE
    }
}

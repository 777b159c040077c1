//! Second-tier tests of qnetd-ha against a real 3-member etcd started by
//! tests/ha/etcd-cluster.sh (run them with tests/ha/run.sh). Not part of
//! plain `cargo test` (`test = false` in ha/Cargo.toml). Without the
//! cluster's environment (QNETD_HA_ETCD=...) every test fails and says
//! how to start it.
//!
//! Each instance reaches etcd through an in-test TCP proxy per member, so
//! a test can cut one instance off from etcd without a reset (the proxy
//! stops forwarding) while the others keep their access. Member faults
//! (kill -9, restart) go through the script. Every test uses a group of
//! its own.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_ha::{EtcdConfig, Ha, HaConfig, HaError, HaHandle, HeldVote, Role, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The members' client URLs; panics with instructions when missing.
fn members() -> Vec<String> {
    let v = env("QNETD_HA_ETCD").unwrap_or_else(|| {
        panic!(
            "QNETD_HA_ETCD is not set: these tests need a real etcd. Run tests/ha/run.sh \
             (as root, with etcd-server installed: apt-get install etcd-server etcd-client), \
             or tests/ha/etcd-cluster.sh start and eval \"$(tests/ha/etcd-cluster.sh env)\""
        )
    });
    v.split(',').map(str::to_string).collect()
}

fn script(args: &[&str]) {
    let s = env("QNETD_HA_ETCD_SCRIPT").expect("QNETD_HA_ETCD_SCRIPT (from etcd-cluster.sh env)");
    let st = Command::new(&s)
        .args(args)
        .status()
        .expect("run etcd-cluster.sh");
    assert!(st.success(), "etcd-cluster.sh {args:?} failed");
}

/// A TCP proxy to one etcd member that can be cut (black hole: data is
/// no longer forwarded in either direction, nothing is reset).
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    // a cut proxy accepts but never connects: a black hole
                    while c.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let Ok(t) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (sr, sw) = s.into_split();
                    let (tr, tw) = t.into_split();
                    tokio::spawn(pipe(sr, tw, c.clone()));
                    tokio::spawn(pipe(tr, sw, c));
                });
            }
        });
        Proxy { addr, cut }
    }
}

struct Instance {
    name: String,
    handle: HaHandle,
    role: watch::Receiver<Role>,
    proxies: Vec<Proxy>,
}

impl Instance {
    fn cut(&self, on: bool) {
        for p in &self.proxies {
            p.cut.store(on, Ordering::SeqCst);
        }
    }
}

fn target_of(url: &str) -> SocketAddr {
    let hostport = url.split("://").nth(1).unwrap().trim_end_matches('/');
    hostport.parse().expect("member URL with an IP address")
}

fn scheme() -> &'static str {
    if members()[0].starts_with("https") {
        "https"
    } else {
        "http"
    }
}

fn etcd_config(endpoints: Vec<String>) -> EtcdConfig {
    EtcdConfig {
        endpoints,
        tls: TlsFiles {
            ca: env("QNETD_HA_ETCD_CA").map(Into::into),
            cert: env("QNETD_HA_ETCD_CERT").map(Into::into),
            key: env("QNETD_HA_ETCD_KEY").map(Into::into),
        },
        user: env("QNETD_HA_ETCD_USER"),
        password: env("QNETD_HA_ETCD_PASSWORD"),
        request_timeout: Duration::from_millis(800),
    }
}

fn group(test: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("t-{test}-{}-{t}", std::process::id())
}

const FP: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn config(group: &str, name: &str, endpoints: Vec<String>, ttl_s: u64) -> HaConfig {
    let mut c = HaConfig::new(etcd_config(endpoints), group, name, FP);
    c.lease_ttl = Duration::from_secs(ttl_s);
    c.margin = Duration::from_secs(1);
    c.keepalive_interval = Duration::from_millis(500);
    c.poll_interval = Duration::from_millis(200);
    c
}

async fn instance(group: &str, name: &str, ttl_s: u64) -> Instance {
    let mut proxies = Vec::new();
    for m in members() {
        proxies.push(Proxy::start(target_of(&m)).await);
    }
    let eps: Vec<String> = proxies
        .iter()
        .map(|p| format!("{}://{}", scheme(), p.addr))
        .collect();
    // a test that killed or cut members before may leave etcd recovering
    // for a few seconds: retry while it does not answer (bounded)
    let deadline = Instant::now() + Duration::from_secs(20);
    let (handle, role) = loop {
        match Ha::start(config(group, name, eps.clone(), ttl_s)).await {
            Ok(x) => break x,
            Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("start {name}: {e}"),
        }
    };
    Instance {
        name: name.into(),
        handle,
        role,
        proxies,
    }
}

/// Waits until `pred` holds for the instance's role; returns the role and
/// when it was seen.
async fn wait_role(
    i: &mut Instance,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Role) -> bool,
) -> (Role, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        {
            let r = i.role.borrow_and_update().clone();
            if pred(&r) {
                return (r, Instant::now());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, i.role.changed()).await.is_err() {
            panic!(
                "{}: not {what} within {limit:?}; role {:?}",
                i.name,
                i.role.borrow().clone()
            );
        }
    }
}

fn is_leader(r: &Role) -> bool {
    matches!(r, Role::Leader { .. })
}

fn vote(name: &str, ring_seq: u64) -> HeldVote {
    HeldVote {
        cluster_name: name.as_bytes().to_vec(),
        algorithm: "ffsplit".into(),
        ring_node_id: 1,
        ring_seq,
        members: vec![1, 2],
        since_unix_ms: 1,
        seen_unix_ms: 2,
    }
}

/// Records every role change of an instance with its time, until
/// finished.
struct Recorder {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(Instant, Role)>>,
}

impl Recorder {
    async fn finish(self) -> Vec<(Instant, Role)> {
        let _ = self.stop.send(());
        self.task.await.expect("recorder")
    }
}

fn record(i: &Instance) -> Recorder {
    let mut rx = i.role.clone();
    let (stop, mut stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut log = vec![(Instant::now(), rx.borrow_and_update().clone())];
        loop {
            tokio::select! {
                _ = &mut stop_rx => return log,
                r = rx.changed() => {
                    if r.is_err() {
                        return log;
                    }
                    log.push((Instant::now(), rx.borrow_and_update().clone()));
                }
            }
        }
    });
    Recorder { stop, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_elects_one_and_the_standby_names_it() {
    let g = group("elect");
    let mut a = instance(&g, "alpha", 3).await;
    wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let mut b = instance(&g, "beta", 3).await;
    wait_role(
        &mut b,
        "standby naming alpha",
        Duration::from_secs(10),
        |r| {
            *r == Role::Standby {
                leader: Some("alpha".into()),
            }
        },
    )
    .await;
    // a stays leader for several lease periods (keep-alives work)
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(a.handle.may_serve(Instant::now()), "{:?}", a.handle.role());
    assert!(!b.handle.may_serve(Instant::now()));
    a.handle.resign().await.unwrap();
    b.handle.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resign_hands_over_without_the_takeover_wait() {
    let g = group("resign");
    let mut a = instance(&g, "alpha", 5).await;
    wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let mut b = instance(&g, "beta", 5).await;
    wait_role(&mut b, "standby", Duration::from_secs(10), |r| {
        matches!(r, Role::Standby { leader: Some(_) })
    })
    .await;
    let t0 = Instant::now();
    a.handle.resign().await.unwrap();
    let (_, at) = wait_role(&mut b, "leader", Duration::from_secs(10), is_leader).await;
    let took = at - t0;
    println!("resign -> new leader serving after {took:?}");
    // a clean resign needs no wait of the old TTL (5 s)
    assert!(took < Duration::from_secs(5), "{took:?}");
    b.handle.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_leader_stops_before_the_next_one_starts_and_cannot_write() {
    let g = group("cut");
    let mut a = instance(&g, "alpha", 5).await;
    let (r, _) = wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let Role::Leader { term: old_term, .. } = r else {
        unreachable!()
    };
    a.handle
        .store()
        .save(old_term, &vote("web", 5))
        .await
        .unwrap();
    let mut b = instance(&g, "beta", 5).await;
    wait_role(&mut b, "standby", Duration::from_secs(10), |r| {
        matches!(r, Role::Standby { leader: Some(_) })
    })
    .await;
    let a_log = record(&a);
    let b_log = record(&b);

    // cut alpha off from etcd without a reset: its keep-alives go nowhere
    let t0 = Instant::now();
    a.cut(true);
    let (_, a_stopped) = wait_role(&mut a, "not leader", Duration::from_secs(10), |r| {
        !is_leader(r)
    })
    .await;
    let (r, b_started) = wait_role(&mut b, "leader", Duration::from_secs(30), is_leader).await;
    let Role::Leader { term: new_term, .. } = r else {
        unreachable!()
    };
    println!(
        "cut at 0: alpha stopped serving at {:?}, beta serving at {:?} (TTL 5 s, margin 1 s, takeover waits the old TTL)",
        a_stopped - t0,
        b_started - t0
    );
    assert!(new_term.revision > old_term.revision);

    // fencing on the recorded timelines: every deadline alpha published
    // ends before the moment from which beta may serve
    let a_log = a_log.finish().await;
    let b_log = b_log.finish().await;
    let a_end = a_log
        .iter()
        .filter_map(|(_, r)| match r {
            Role::Leader { serve_until, .. } => Some(*serve_until),
            _ => None,
        })
        .max()
        .expect("alpha led");
    let b_from = b_log
        .iter()
        .find_map(|(_, r)| match r {
            Role::TakingOver { serve_from, .. } => Some(*serve_from),
            _ => None,
        })
        .expect("beta waited for the vanished leader's TTL");
    assert!(
        a_end <= b_from,
        "alpha could serve until {:?} after the cut, beta from {:?}",
        a_end - t0,
        b_from - t0
    );
    assert!(b_log.iter().all(|(at, r)| !is_leader(r) || *at >= b_from));
    a.cut(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.handle.may_serve(Instant::now()));

    // the deposed leader's write is refused by etcd, the new one's is kept
    let e = a
        .handle
        .store()
        .save(old_term, &vote("web", 99))
        .await
        .unwrap_err();
    assert!(matches!(e, HaError::NotLeader { .. }), "{e}");
    b.handle
        .store()
        .save(new_term, &vote("web", 6))
        .await
        .unwrap();
    let loaded = a.handle.store().load_all().await.unwrap();
    assert_eq!(loaded.votes.len(), 1);
    assert_eq!(loaded.votes[0].ring_seq, 6);
    b.handle.resign().await.unwrap();
    a.handle.resign().await.unwrap();
}

/// The example `instance` built next to this test (tests/ha/run.sh builds
/// the examples).
fn instance_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/instance");
    assert!(
        p.exists(),
        "{} missing: cargo build -p qnetd-ha --examples",
        p.display()
    );
    p
}

async fn kill_9_failover(policy: &str, takeover: qnetd_ha::TakeoverPolicy, ttl_s: u64) -> Duration {
    use tokio::io::AsyncBufReadExt;
    let g = group(&format!("kill9-{policy}"));
    let mut child = tokio::process::Command::new(instance_bin())
        .args([
            &members().join(","),
            &g,
            "alpha",
            &ttl_s.to_string(),
            policy,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let led = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l == "role leader" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(led, Ok(true), "the child instance did not lead");
    let mut c = config(&g, "beta", members(), ttl_s);
    c.takeover = takeover;
    let (handle, role) = Ha::start(c).await.unwrap();
    let mut b = Instance {
        name: "beta".into(),
        handle,
        role,
        proxies: vec![],
    };
    wait_role(&mut b, "standby", Duration::from_secs(10), |r| {
        *r == Role::Standby {
            leader: Some("alpha".into()),
        }
    })
    .await;
    let t0 = Instant::now();
    child.start_kill().unwrap(); // SIGKILL
    let _ = child.wait().await;
    let (_, at) = wait_role(&mut b, "leader", Duration::from_secs(20), is_leader).await;
    b.handle.resign().await.unwrap();
    at - t0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_process_fails_over() {
    // TTL 5 s, keep-alive every 0.5 s: the key vanishes about 4.5-5 s after
    // the kill (plus etcd's expiry check); the default policy then waits
    // the old TTL again, TrustExpiry does not
    let wait = kill_9_failover("wait", qnetd_ha::TakeoverPolicy::WaitPreviousTtl, 5).await;
    let trust = kill_9_failover("trust", qnetd_ha::TakeoverPolicy::TrustExpiry, 5).await;
    let wait3 = kill_9_failover("wait", qnetd_ha::TakeoverPolicy::WaitPreviousTtl, 3).await;
    println!("kill -9 of the leader -> standby serving after {wait:?} (wait previous TTL), {trust:?} (trust expiry) with TTL 5 s; {wait3:?} (wait previous TTL) with TTL 3 s");
    assert!(trust < wait, "{trust:?} {wait:?}");
    assert!(
        wait >= Duration::from_secs(5),
        "the default waits at least the old TTL: {wait:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_store_round_trip_in_batches() {
    let g = group("store");
    let mut a = instance(&g, "alpha", 3).await;
    let (r, _) = wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let Role::Leader { term, .. } = r else {
        unreachable!()
    };
    let votes: Vec<HeldVote> = (0..250).map(|i| vote(&format!("c{i:03}"), i)).collect();
    a.handle.store().save_many(term, &votes).await.unwrap();
    let mut loaded = a.handle.store().load_all().await.unwrap().votes;
    loaded.sort_by(|x, y| x.cluster_name.cmp(&y.cluster_name));
    assert_eq!(loaded, votes);
    a.handle.store().remove(term, b"c007").await.unwrap();
    assert_eq!(a.handle.store().load_all().await.unwrap().votes.len(), 249);
    a.handle.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_is_refused() {
    let g = group("ca");
    let a = instance(&g, "alpha", 3).await;
    let mut c = config(&g, "beta", members(), 3);
    c.ca_sha256 = "2".repeat(64);
    let e = Ha::start(c).await.err().expect("refused");
    assert!(matches!(e, HaError::CaMismatch { .. }), "{e}");
    assert!(e.to_string().contains("same CA"));
    a.handle.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_the_etcd_leader_keeps_the_qnetd_leader() {
    // TTL 5 s, margin 1 s: an etcd leader election (election timeout 1 s)
    // fits in the 4 s the lease allows between keep-alives
    let g = group("member");
    let mut a = instance(&g, "alpha", 5).await;
    wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let log = record(&a);
    let s = env("QNETD_HA_ETCD_SCRIPT").expect("QNETD_HA_ETCD_SCRIPT");
    let out = Command::new(&s)
        .arg("leader")
        .output()
        .expect("etcd-cluster.sh leader");
    let leader = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        ["1", "2", "3"].contains(&leader.as_str()),
        "etcd leader: {leader:?}"
    );
    script(&["kill", &leader]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(a.handle.may_serve(Instant::now()), "{:?}", a.handle.role());
    script(&["start-member", &leader]);
    script(&["wait-healthy", "30"]);
    let l = log.finish().await;
    let lapses: Vec<_> = l.iter().filter(|(_, r)| !is_leader(r)).collect();
    assert!(
        lapses.is_empty(),
        "the qnetd leader stopped serving: {lapses:?}"
    );
    a.handle.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_of_the_first_etcd_member_keeps_the_leader() {
    // member 1 (the instance's first endpoint) loses its link: requests to
    // it hang without a reset until the request timeout, then the client
    // moves on to the next member
    let g = group("partition");
    let mut a = instance(&g, "alpha", 5).await;
    wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let log = record(&a);
    script(&["partition", "1"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let still = a.handle.may_serve(Instant::now());
    script(&["heal", "1"]);
    script(&["wait-healthy", "30"]);
    assert!(still, "{:?}", a.handle.role());
    let l = log.finish().await;
    let lapses: Vec<_> = l.iter().filter(|(_, r)| !is_leader(r)).collect();
    assert!(
        lapses.is_empty(),
        "the qnetd leader stopped serving: {lapses:?}"
    );
    a.handle.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_means_no_leader_and_recovers() {
    let g = group("quorum");
    let mut a = instance(&g, "alpha", 3).await;
    wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let mut b = instance(&g, "beta", 3).await;
    wait_role(&mut b, "standby", Duration::from_secs(10), |r| {
        matches!(r, Role::Standby { leader: Some(_) })
    })
    .await;
    script(&["kill", "2"]);
    script(&["kill", "3"]);
    let t0 = Instant::now();
    let (_, stop) = wait_role(&mut a, "not leader", Duration::from_secs(10), |r| {
        !is_leader(r)
    })
    .await;
    println!("quorum lost: leader stopped serving after {:?}", stop - t0);
    wait_role(&mut a, "no quorum", Duration::from_secs(10), |r| {
        matches!(r, Role::NoQuorum { .. })
    })
    .await;
    wait_role(&mut b, "no quorum", Duration::from_secs(10), |r| {
        matches!(r, Role::NoQuorum { .. })
    })
    .await;
    script(&["start-member", "2"]);
    script(&["start-member", "3"]);
    script(&["wait-healthy", "30"]);
    let t1 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ra, rb) = (a.handle.role(), b.handle.role());
        if is_leader(&ra) || is_leader(&rb) {
            assert!(!(is_leader(&ra) && is_leader(&rb)));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no leader after recovery: {ra:?} {rb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "recovered: a leader serves {:?} after etcd was healthy",
        t1.elapsed()
    );
    a.handle.resign().await.unwrap();
    b.handle.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_auth_are_used() {
    // run by tests/ha/run.sh against the cluster started with --tls --auth
    assert!(
        members()[0].starts_with("https://") && env("QNETD_HA_ETCD_USER").is_some(),
        "this test needs the cluster started with --tls --auth (tests/ha/run.sh does it)"
    );
    let g = group("tls");
    let mut a = instance(&g, "alpha", 3).await;
    let (r, _) = wait_role(&mut a, "leader", Duration::from_secs(10), is_leader).await;
    let Role::Leader { term, .. } = r else {
        unreachable!()
    };
    a.handle.store().save(term, &vote("web", 1)).await.unwrap();
    // a wrong password is an authentication error that names the user
    let mut c = config(&g, "beta", members(), 3);
    c.etcd.password = Some("wrong".into());
    let e = Ha::start(c).await.err().expect("refused");
    assert!(matches!(e, HaError::Auth { .. }), "{e}");
    // a client without the CA fails the handshake
    let mut c = config(&g, "gamma", members(), 3);
    c.etcd.tls.ca = None;
    let e = Ha::start(c).await.err().expect("refused");
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
    a.handle.resign().await.unwrap();
}

//! `instance ENDPOINTS GROUP NAME TTL_S wait|trust`: one HA instance on its
//! own (a process the etcd tests can kill -9). Prints `role ROLE` on every
//! change (leader, taking-over, standby, no-quorum, starting).

use std::time::Duration;

use qnetd_ha::{EtcdConfig, Ha, HaConfig, Role, TakeoverPolicy};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [eps, group, name, ttl, policy] = args.as_slice() else {
        eprintln!("usage: instance ENDPOINTS GROUP NAME TTL_S wait|trust");
        std::process::exit(2);
    };
    let etcd = EtcdConfig {
        endpoints: eps.split(',').map(str::to_string).collect(),
        request_timeout: Duration::from_millis(800),
        ..Default::default()
    };
    let mut c = HaConfig::new(etcd, group, name, &"1".repeat(64));
    c.lease_ttl = Duration::from_secs(ttl.parse().expect("TTL_S"));
    c.keepalive_interval = Duration::from_millis(500);
    c.poll_interval = Duration::from_millis(200);
    c.takeover = if policy == "trust" {
        TakeoverPolicy::TrustExpiry
    } else {
        TakeoverPolicy::WaitPreviousTtl
    };
    let (_ha, mut role) = match Ha::start(c).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("instance: {e}");
            std::process::exit(1);
        }
    };
    loop {
        let r = match &*role.borrow_and_update() {
            Role::Leader { .. } => "leader",
            Role::TakingOver { .. } => "taking-over",
            Role::Standby { .. } => "standby",
            Role::NoQuorum { .. } => "no-quorum",
            Role::Starting => "starting",
        };
        println!("role {r}");
        if role.changed().await.is_err() {
            return;
        }
    }
}

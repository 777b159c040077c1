//! `instance ENDPOINTS GROUP NAME TTL_S wait|trust [CIDR DEV]`: one HA
//! instance on its own (a process the etcd tests can kill -9, and the
//! controller of the end-to-end publishing experiment). Prints
//! `role ROLE` on every change (leader, taking-over, standby, no-quorum,
//! starting), prefixed with the wall-clock time in ms on stderr. With
//! CIDR and DEV it holds that floating address while it is leader: taken
//! and announced when it becomes leader, released when it stops being
//! leader or at its serve_until deadline, whichever comes first.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qnetd_ha::{EtcdConfig, FloatingAddress, Ha, HaConfig, Role, TakeoverPolicy};

fn ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (eps, group, name, ttl, policy, float) = match args.as_slice() {
        [e, g, n, t, p] => (e, g, n, t, p, None),
        [e, g, n, t, p, cidr, dev] => (
            e,
            g,
            n,
            t,
            p,
            Some(FloatingAddress::parse(cidr, dev).unwrap_or_else(|e| {
                eprintln!("instance: {e}");
                std::process::exit(2)
            })),
        ),
        _ => {
            eprintln!("usage: instance ENDPOINTS GROUP NAME TTL_S wait|trust [CIDR DEV]");
            std::process::exit(2);
        }
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
    if let Some(f) = &float {
        let _ = f.release();
    }
    let mut holding = false;
    let mut last = "";
    loop {
        let r = role.borrow_and_update().clone();
        let label = match &r {
            Role::Leader { .. } => "leader",
            Role::TakingOver { .. } => "taking-over",
            Role::Standby { .. } => "standby",
            Role::NoQuorum { .. } => "no-quorum",
            Role::Starting => "starting",
        };
        if label != last {
            println!("role {label}");
            eprintln!("{} role {label}", ms());
            last = label;
        }
        if let Some(f) = &float {
            let lead = matches!(r, Role::Leader { .. });
            if lead && !holding {
                match f.take() {
                    Ok(()) => eprintln!("{} took {}", ms(), f.addr),
                    Err(e) => eprintln!("{} {e}", ms()),
                }
                holding = true;
            } else if !lead && holding {
                let _ = f.release();
                eprintln!("{} released {}", ms(), f.addr);
                holding = false;
            }
        }
        // wait for a change, or for the deadline of the current term
        let deadline = match r {
            Role::Leader { serve_until, .. } => Some(serve_until),
            _ => None,
        };
        let changed = match deadline {
            Some(d) => {
                let d = d.max(Instant::now());
                match tokio::time::timeout_at(d.into(), role.changed()).await {
                    Ok(res) => res.is_ok(),
                    Err(_) => {
                        // deadline passed without an extension: stop holding
                        if let (Some(f), true) = (&float, holding) {
                            let _ = f.release();
                            eprintln!("{} released {} at serve_until", ms(), f.addr);
                            holding = false;
                        }
                        role.changed().await.is_ok()
                    }
                }
            }
            None => role.changed().await.is_ok(),
        };
        if !changed {
            return;
        }
    }
}

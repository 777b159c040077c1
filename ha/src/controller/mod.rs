//! The HA controller: one task per instance that checks the group's CA,
//! campaigns for the group's leader key on an etcd lease, keeps the lease
//! alive, observes the leader while standby, and publishes this instance's
//! [`Role`] on a watch channel. The [`VoteStore`] writes each cluster's
//! vote holder under the group prefix in transactions conditioned on the
//! leader key's create revision (the term), so a deposed leader's writes
//! are refused by etcd.
//!
//! etcd layout of group G (docs/ha.md):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `/qnetd/G/leader` | JSON `{"name", "ttl_ms"}` of the leader | the leader's |
//! | `/qnetd/G/term` | JSON `{"revision", "name", "ttl_ms"}` of the last leader that won | none |
//! | `/qnetd/G/resigned` | JSON `{"revision"}` of the last leader that resigned cleanly | none |
//! | `/qnetd/G/ca-sha256` | hex SHA-256 of the group's CA certificate (DER) | none |
//! | `/qnetd/G/votes/<hex of cluster name>` | protobuf `qnetd.state.HeldVote` | none |

mod election;

use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_proto::state::HeldVote;
use qnetd_proto::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use crate::error::{HaError, Result};
use crate::etcd::{prefix_end, Compare, Etcd, EtcdConfig, TxnOp};
use crate::lease::TakeoverPolicy;
use election::{check_ca, Controller};

/// Configuration of one instance of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    pub etcd: EtcdConfig,
    /// The group's name (every instance of a group uses the same).
    pub group: String,
    /// This instance's name, shown to the others (e.g. its host name).
    pub name: String,
    /// The leader lease's TTL (whole seconds, at least 2).
    pub lease_ttl: Duration,
    /// Subtracted from every lease deadline: covers clock rate differences
    /// over one TTL and the time from a check to the write of an ACK.
    pub margin: Duration,
    /// How often the leader refreshes its lease.
    pub keepalive_interval: Duration,
    /// How often a standby reads the leader key.
    pub poll_interval: Duration,
    /// How a new leader treats a previous leader whose key vanished.
    pub takeover: TakeoverPolicy,
    /// Hex SHA-256 of this instance's CA certificate (DER); see
    /// [`ca_fingerprint`].
    pub ca_sha256: String,
}

impl HaConfig {
    /// A configuration with the defaults: TTL 5 s, margin 1 s, keep-alive
    /// every second, standby reads every 250 ms, wait the previous TTL.
    pub fn new(etcd: EtcdConfig, group: &str, name: &str, ca_sha256: &str) -> HaConfig {
        HaConfig {
            etcd,
            group: group.into(),
            name: name.into(),
            lease_ttl: Duration::from_secs(5),
            margin: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            takeover: TakeoverPolicy::WaitPreviousTtl,
            ca_sha256: ca_sha256.into(),
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, problem: &str| {
            Err(HaError::InvalidConfig {
                field,
                problem: problem.into(),
            })
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !name_ok(&self.group) {
            return bad("group", "must be 1-128 characters of A-Z a-z 0-9 - _ .");
        }
        if !name_ok(&self.name) {
            return bad("name", "must be 1-128 characters of A-Z a-z 0-9 - _ .");
        }
        if self.lease_ttl < Duration::from_secs(2) || self.lease_ttl.subsec_nanos() != 0 {
            return bad(
                "lease_ttl",
                "must be whole seconds, at least 2 (etcd grants whole seconds)",
            );
        }
        if self.margin.is_zero() || self.margin >= self.lease_ttl {
            return bad("margin", "must be above zero and below lease_ttl");
        }
        if self.keepalive_interval.is_zero()
            || self.keepalive_interval + self.etcd.request_timeout > self.lease_ttl - self.margin
        {
            return bad(
                "keepalive_interval",
                "plus the request timeout must fit in lease_ttl - margin, or the lease lapses between keep-alives",
            );
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval", "must be above zero");
        }
        if self.ca_sha256.len() != 64 || !self.ca_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(
                "ca_sha256",
                "must be 64 hex digits (SHA-256 of the CA certificate)",
            );
        }
        Ok(())
    }
}

/// Hex SHA-256 of a certificate in DER form.
pub fn ca_fingerprint(der: &[u8]) -> String {
    openssl::sha::sha256(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A leadership term: the leader key's create revision (unique and
/// increasing across terms) and its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaderTerm {
    pub revision: i64,
    pub lease: i64,
}

/// This instance's role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Starting: the first etcd read has not been answered yet.
    Starting,
    /// Leading and allowed to serve until `serve_until` (exclusive) unless
    /// a later update extends it. The server must stop voting, close every
    /// client and stop listening at `serve_until` by its own timer, and
    /// check `Instant::now() < serve_until` before every ACK it sends.
    Leader {
        term: LeaderTerm,
        serve_until: Instant,
    },
    /// Won the election; the previous leader may still serve until
    /// `serve_from`. Do not serve yet.
    TakingOver {
        term: LeaderTerm,
        serve_from: Instant,
    },
    /// Another instance leads (its name, if known), or nobody does and
    /// this instance is about to campaign.
    Standby { leader: Option<String> },
    /// etcd does not answer (no quorum, unreachable) since `since`.
    NoQuorum { since: Instant },
}

impl Role {
    /// Whether a server in this role may serve at `now`.
    pub fn may_serve(&self, now: Instant) -> bool {
        matches!(self, Role::Leader { serve_until, .. } if now < *serve_until)
    }
}

#[derive(Serialize, Deserialize)]
struct LeaderValue {
    name: String,
    ttl_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct TermValue {
    revision: i64,
    name: String,
    ttl_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct ResignedValue {
    revision: i64,
}

/// The etcd keys of one group.
#[derive(Clone, Debug)]
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    pub fn new(group: &str) -> Keys {
        Keys {
            prefix: format!("/qnetd/{group}/"),
        }
    }
    pub fn leader(&self) -> Vec<u8> {
        format!("{}leader", self.prefix).into_bytes()
    }
    pub fn term(&self) -> Vec<u8> {
        format!("{}term", self.prefix).into_bytes()
    }
    pub fn resigned(&self) -> Vec<u8> {
        format!("{}resigned", self.prefix).into_bytes()
    }
    pub fn ca(&self) -> Vec<u8> {
        format!("{}ca-sha256", self.prefix).into_bytes()
    }
    pub fn votes_prefix(&self) -> Vec<u8> {
        format!("{}votes/", self.prefix).into_bytes()
    }
    pub fn vote(&self, cluster_name: &[u8]) -> Vec<u8> {
        let mut k = self.votes_prefix();
        for b in cluster_name {
            k.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        k
    }
}

/// Reads and writes the vote holders of a group.
#[derive(Clone)]
pub struct VoteStore {
    etcd: Arc<Etcd>,
    keys: Keys,
}

/// The vote holders read by [`VoteStore::load_all`].
#[derive(Debug, Default)]
pub struct LoadedVotes {
    pub votes: Vec<HeldVote>,
    /// Records that could not be decoded (logged, skipped).
    pub skipped: Vec<HaError>,
}

/// Most operations per transaction (etcd's default `--max-txn-ops` is 128;
/// one is the leadership comparison's).
const TXN_BATCH: usize = 100;
/// Keys per page of [`VoteStore::load_all`].
const LOAD_PAGE: i64 = 1000;

impl VoteStore {
    /// Saves one cluster's vote holder, if `term` still leads.
    pub async fn save(&self, term: LeaderTerm, vote: &HeldVote) -> Result<()> {
        self.save_many(term, std::slice::from_ref(vote)).await
    }

    /// Saves several holders, in transactions of at most 100, each
    /// conditioned on `term` still leading. On [`HaError::NotLeader`] the
    /// batches before the refused one were written.
    pub async fn save_many(&self, term: LeaderTerm, votes: &[HeldVote]) -> Result<()> {
        for chunk in votes.chunks(TXN_BATCH) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|v| TxnOp::Put {
                    key: self.keys.vote(&v.cluster_name),
                    value: v.encode_to_vec(),
                    lease: 0,
                })
                .collect();
            self.conditioned(term, ops).await?;
        }
        Ok(())
    }

    /// Forgets one cluster's holder, if `term` still leads.
    pub async fn remove(&self, term: LeaderTerm, cluster_name: &[u8]) -> Result<()> {
        self.conditioned(
            term,
            vec![TxnOp::Delete {
                key: self.keys.vote(cluster_name),
            }],
        )
        .await
    }

    async fn conditioned(&self, term: LeaderTerm, ops: Vec<TxnOp>) -> Result<()> {
        let r = self
            .etcd
            .txn(
                &[Compare::CreateRevision(self.keys.leader(), term.revision)],
                &ops,
                &[],
            )
            .await?;
        if r.succeeded {
            Ok(())
        } else {
            Err(HaError::NotLeader {
                revision: term.revision,
            })
        }
    }

    /// Reads every stored holder (linearizable, in pages).
    pub async fn load_all(&self) -> Result<LoadedVotes> {
        let prefix = self.keys.votes_prefix();
        let end = prefix_end(&prefix);
        let mut from = prefix.clone();
        let mut out = LoadedVotes::default();
        loop {
            let r = self.etcd.range(&from, Some(&end), LOAD_PAGE).await?;
            for kv in &r.kvs {
                match HeldVote::decode(kv.value.as_slice()) {
                    Ok(v) => out.votes.push(v),
                    Err(e) => {
                        let err = HaError::BadRecord {
                            key: String::from_utf8_lossy(&kv.key).into_owned(),
                            reason: e.to_string(),
                        };
                        warn!("{err}");
                        out.skipped.push(err);
                    }
                }
            }
            match (r.more, r.kvs.last()) {
                (true, Some(last)) => {
                    from = last.key.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

enum Command {
    Resign(oneshot::Sender<Result<()>>),
}

/// The server's handle on the controller.
#[derive(Clone)]
pub struct HaHandle {
    role: watch::Receiver<Role>,
    commands: mpsc::Sender<Command>,
    store: VoteStore,
}

impl HaHandle {
    /// The current role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Whether this instance may serve at `now` (the check before an ACK).
    pub fn may_serve(&self, now: Instant) -> bool {
        self.role.borrow().may_serve(now)
    }

    /// The vote store.
    pub fn store(&self) -> &VoteStore {
        &self.store
    }

    /// etcd requests that failed since the start.
    pub fn etcd_errors(&self) -> u64 {
        self.store.etcd.errors()
    }

    /// Gives up leadership and stops the controller (shutdown). The caller
    /// must have stopped serving first (closed every client connection and
    /// the listener): the next leader starts at once after a resign.
    /// Without leadership it just stops.
    pub async fn resign(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Resign(tx))
            .await
            .map_err(|_| HaError::Stopped)?;
        rx.await.map_err(|_| HaError::Stopped)?
    }
}

/// Starting the controller.
pub struct Ha;

impl Ha {
    /// Validates the configuration, checks the group's CA fingerprint in
    /// etcd (recording it when the group is new) and starts the controller
    /// task on the current tokio runtime. Fails when etcd cannot be reached
    /// or the group uses another CA.
    pub async fn start(config: HaConfig) -> Result<(HaHandle, watch::Receiver<Role>)> {
        config.validate()?;
        let etcd = Arc::new(Etcd::new(&config.etcd)?);
        let keys = Keys::new(&config.group);
        check_ca(&etcd, &keys, &config).await?;
        let (role_tx, role_rx) = watch::channel(Role::Starting);
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let store = VoteStore {
            etcd: etcd.clone(),
            keys: keys.clone(),
        };
        let ctl = Controller {
            etcd,
            keys,
            config,
            role: role_tx,
            commands: cmd_rx,
            failing_since: None,
        };
        tokio::spawn(ctl.run());
        Ok((
            HaHandle {
                role: role_rx.clone(),
                commands: cmd_tx,
                store,
            },
            role_rx,
        ))
    }
}

#[cfg(test)]
mod tests;

//! The controller task: the CA check at start, then campaigning for the
//! group's leader key, keeping the lease alive while leading, observing the
//! leader while standby, and resigning on request; it publishes the
//! instance's [`Role`] on the watch channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{Command, HaConfig, Keys, LeaderTerm, LeaderValue, ResignedValue, Role, TermValue};
use crate::error::{HaError, Result};
use crate::etcd::{Compare, Etcd, TxnOp, TxnResult};
use crate::lease::{takeover_at, LeaseClock, Previous};

pub(super) async fn check_ca(etcd: &Etcd, keys: &Keys, config: &HaConfig) -> Result<()> {
    let ours = config.ca_sha256.to_ascii_lowercase();
    let r = etcd
        .txn(
            &[Compare::CreateRevision(keys.ca(), 0)],
            &[TxnOp::Put {
                key: keys.ca(),
                value: ours.clone().into_bytes(),
                lease: 0,
            }],
            &[TxnOp::Get { key: keys.ca() }],
        )
        .await?;
    if r.succeeded {
        info!(group = %config.group, "new HA group: recorded the CA fingerprint {ours}");
        return Ok(());
    }
    let theirs = match r.results.first() {
        Some(TxnResult::Get(kvs)) => kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).to_ascii_lowercase())
            .unwrap_or_default(),
        _ => String::new(),
    };
    if theirs != ours {
        return Err(HaError::CaMismatch {
            group: config.group.clone(),
            ours,
            theirs,
        });
    }
    Ok(())
}

/// Why the leader phase ended.
enum LeadEnd {
    /// Lease lost or expired, key gone: campaign again.
    Lost,
    /// Resigned on request: stop.
    Resigned,
}

pub(super) struct Controller {
    pub(super) etcd: Arc<Etcd>,
    pub(super) keys: Keys,
    pub(super) config: HaConfig,
    pub(super) role: watch::Sender<Role>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) failing_since: Option<Instant>,
}

impl Controller {
    fn set_role(&self, role: Role) {
        self.role.send_if_modified(|r| {
            if *r != role {
                *r = role;
                true
            } else {
                false
            }
        });
    }

    fn etcd_failed(&mut self, e: &HaError) {
        // the first failure of a streak is logged as a warning, the rest
        // (every poll interval) at debug level
        if self.failing_since.is_none() {
            warn!(group = %self.config.group, "etcd: {e}");
        } else {
            debug!(group = %self.config.group, "etcd: {e}");
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if e.is_unavailable() {
            self.set_role(Role::NoQuorum { since });
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            // standby: observe until the key is free, then campaign
            match self.standby_until_free().await {
                Some(Command::Resign(done)) => {
                    let _ = done.send(Ok(()));
                    return;
                }
                None => {}
            }
            match self.campaign().await {
                Ok(Some((term, clock, previous))) => match self.lead(term, clock, previous).await {
                    LeadEnd::Lost => continue,
                    LeadEnd::Resigned => return,
                },
                Ok(None) => {}
                Err(e) => {
                    self.etcd_failed(&e);
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
        }
    }

    /// Polls the leader key while it exists; returns when it is absent
    /// (None) or when a command asks to stop.
    async fn standby_until_free(&mut self) -> Option<Command> {
        loop {
            match self.etcd.range(&self.keys.leader(), None, 0).await {
                Ok(r) => {
                    self.failing_since = None;
                    match r.kvs.first() {
                        None => return None,
                        Some(kv) => {
                            let name = serde_json::from_slice::<LeaderValue>(&kv.value)
                                .map(|v| v.name)
                                .ok();
                            self.set_role(Role::Standby { leader: name });
                        }
                    }
                }
                Err(e) => self.etcd_failed(&e),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                c = self.commands.recv() => {
                    // a closed channel (every handle dropped) stops too
                    let (tx, _rx) = oneshot::channel();
                    return Some(c.unwrap_or(Command::Resign(tx)));
                }
            }
        }
    }

    /// One campaign: a new lease, then the leader key if it is free.
    async fn campaign(&mut self) -> Result<Option<(LeaderTerm, LeaseClock, Previous)>> {
        let sent = Instant::now();
        let (lease, ttl) = self.etcd.lease_grant(self.config.lease_ttl).await?;
        let mut clock = LeaseClock::new(self.config.margin);
        clock.granted(sent, ttl);
        let value = serde_json::to_vec(&LeaderValue {
            name: self.config.name.clone(),
            ttl_ms: ttl.as_millis() as u64,
        })
        .expect("serialisable");
        let r = self
            .etcd
            .txn(
                &[Compare::CreateRevision(self.keys.leader(), 0)],
                &[
                    TxnOp::Put {
                        key: self.keys.leader(),
                        value,
                        lease,
                    },
                    TxnOp::Get {
                        key: self.keys.term(),
                    },
                    TxnOp::Get {
                        key: self.keys.resigned(),
                    },
                ],
                &[TxnOp::Get {
                    key: self.keys.leader(),
                }],
            )
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = self.etcd.lease_revoke(lease).await;
                return Err(e);
            }
        };
        self.failing_since = None;
        if !r.succeeded {
            let _ = self.etcd.lease_revoke(lease).await;
            return Ok(None);
        }
        let term = LeaderTerm {
            revision: r.revision,
            lease,
        };
        let get = |i: usize| match r.results.get(i) {
            Some(TxnResult::Get(kvs)) => kvs.first().map(|kv| kv.value.clone()),
            _ => None,
        };
        let last_term = get(1).and_then(|v| serde_json::from_slice::<TermValue>(&v).ok());
        let resigned = get(2).and_then(|v| serde_json::from_slice::<ResignedValue>(&v).ok());
        let previous = match (last_term, resigned) {
            (None, _) => Previous::Nobody,
            (Some(t), Some(res)) if res.revision == t.revision => Previous::Resigned,
            (Some(t), _) => Previous::Vanished {
                ttl: Duration::from_millis(t.ttl_ms),
            },
        };
        // record this term before serving, conditioned on still leading
        let tv = serde_json::to_vec(&TermValue {
            revision: term.revision,
            name: self.config.name.clone(),
            ttl_ms: ttl.as_millis() as u64,
        })
        .expect("serialisable");
        let w = self
            .etcd
            .txn(
                &[Compare::CreateRevision(self.keys.leader(), term.revision)],
                &[TxnOp::Put {
                    key: self.keys.term(),
                    value: tv,
                    lease: 0,
                }],
                &[],
            )
            .await?;
        if !w.succeeded {
            return Ok(None);
        }
        info!(
            group = %self.config.group,
            revision = term.revision,
            ?previous,
            "won the HA election"
        );
        Ok(Some((term, clock, previous)))
    }

    /// Leads until the lease is lost or a resign is requested. A lease
    /// that was not renewed in time (etcd slow or unreachable) stops the
    /// serving (role `NoQuorum`) but is kept trying: when etcd answers
    /// again and the lease and key are still ours, no other leader can
    /// exist and serving resumes from that keep-alive's send time; when
    /// they are gone, this instance campaigns again.
    async fn lead(
        &mut self,
        term: LeaderTerm,
        mut clock: LeaseClock,
        previous: Previous,
    ) -> LeadEnd {
        let serve_from = takeover_at(Instant::now(), previous, self.config.takeover);
        let mut next_keepalive = Instant::now() + self.config.keepalive_interval;
        let mut lapsed = false;
        loop {
            let now = Instant::now();
            if clock.is_lost() {
                warn!(
                    group = %self.config.group,
                    revision = term.revision,
                    "leader lease lost (revoked, expired or key gone): stopped serving"
                );
                self.set_role(Role::Standby { leader: None });
                let _ = self.etcd.lease_revoke(term.lease).await;
                return LeadEnd::Lost;
            }
            let valid = clock.may_serve(now);
            if !valid {
                if !lapsed {
                    warn!(
                        group = %self.config.group,
                        revision = term.revision,
                        "leader lease not renewed in time (etcd slow or unreachable): stopped serving"
                    );
                    lapsed = true;
                }
                let since = *self.failing_since.get_or_insert(now);
                self.set_role(Role::NoQuorum { since });
            } else {
                if lapsed {
                    info!(revision = term.revision, "leader lease renewed again");
                    lapsed = false;
                }
                let until = clock.serve_until().expect("valid lease");
                if now >= serve_from {
                    self.set_role(Role::Leader {
                        term,
                        serve_until: until,
                    });
                } else {
                    self.set_role(Role::TakingOver { term, serve_from });
                }
            }
            // wake at the next keep-alive, the takeover time or the deadline
            let mut wake = next_keepalive;
            if let Some(until) = clock.serve_until().filter(|_| valid) {
                wake = wake.min(until);
            }
            if now < serve_from {
                wake = wake.min(serve_from);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                c = self.commands.recv() => {
                    let done = c.map(|Command::Resign(done)| done);
                    let r = self.resign(term).await;
                    if let Some(done) = done {
                        let _ = done.send(r);
                    }
                    return LeadEnd::Resigned;
                }
            }
            if Instant::now() < next_keepalive {
                continue;
            }
            next_keepalive = Instant::now() + self.config.keepalive_interval;
            let sent = Instant::now();
            // the keep-alive and a check that the key is still ours
            let round = async {
                let ttl = self.etcd.lease_keepalive(term.lease).await?;
                let key = self.etcd.range(&self.keys.leader(), None, 0).await?;
                let ours = key
                    .kvs
                    .first()
                    .is_some_and(|kv| kv.create_revision == term.revision);
                Ok::<_, HaError>((ttl, ours))
            };
            // bounded by the deadline while valid (the role must change on
            // time), by a few request timeouts otherwise
            let bound = match clock.serve_until().filter(|_| valid) {
                Some(until) => until,
                None => Instant::now() + self.config.keepalive_interval + 2 * self.etcd.timeout(),
            };
            match tokio::time::timeout_at(bound.into(), round).await {
                Ok(Ok((ttl, true))) => {
                    self.failing_since = None;
                    clock.renewed(sent, ttl);
                }
                Ok(Ok((_, false))) => {
                    warn!(revision = term.revision, "the leader key is no longer ours");
                    clock.lost();
                }
                Ok(Err(e)) => {
                    warn!(revision = term.revision, "lease keep-alive failed: {e}");
                    self.failing_since.get_or_insert_with(Instant::now);
                }
                Err(_) => {
                    self.etcd.count_error();
                    self.failing_since.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    async fn resign(&mut self, term: LeaderTerm) -> Result<()> {
        self.set_role(Role::Standby { leader: None });
        let v = serde_json::to_vec(&ResignedValue {
            revision: term.revision,
        })
        .expect("serialisable");
        let r = self
            .etcd
            .txn(
                &[Compare::CreateRevision(self.keys.leader(), term.revision)],
                &[
                    TxnOp::Put {
                        key: self.keys.resigned(),
                        value: v,
                        lease: 0,
                    },
                    TxnOp::Delete {
                        key: self.keys.leader(),
                    },
                ],
                &[],
            )
            .await;
        let _ = self.etcd.lease_revoke(term.lease).await;
        info!(group = %self.config.group, revision = term.revision, "resigned the HA leadership");
        r.map(|_| ())
    }
}

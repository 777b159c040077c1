//! What the rest of the server knows of this instance's place in its HA
//! group: the role, the leader, serving or not, for status, the admin
//! socket and /metrics ([`HaShared`]); and what the follower needs from
//! the group ([`Backend`]). A leaf: the server's context holds it without
//! depending on the follower.

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use qnetd_core::status::HaStatus;
use qnetd_ha::{HaError, HaHandle, HeldVote, LeaderTerm, Role};

/// What the follower needs from the group: the vote store and resigning.
/// [`HaHandle`] is the real one (etcd); tests use one in memory.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Every stored vote holder.
    fn load(&self) -> impl Future<Output = Result<Vec<HeldVote>, HaError>> + Send;
    /// Stores holders, if `term` still leads.
    fn save(
        &self,
        term: LeaderTerm,
        votes: Vec<HeldVote>,
    ) -> impl Future<Output = Result<(), HaError>> + Send;
    /// Gives up leadership (after the server stopped serving).
    fn resign(&self) -> impl Future<Output = Result<(), HaError>> + Send;
    /// etcd requests that failed so far.
    fn errors(&self) -> u64 {
        0
    }
}

impl Backend for HaHandle {
    async fn load(&self) -> Result<Vec<HeldVote>, HaError> {
        Ok(self.store().load_all().await?.votes)
    }
    async fn save(&self, term: LeaderTerm, votes: Vec<HeldVote>) -> Result<(), HaError> {
        self.store().save_many(term, &votes).await
    }
    async fn resign(&self) -> Result<(), HaError> {
        HaHandle::resign(self).await
    }
    fn errors(&self) -> u64 {
        self.etcd_errors()
    }
}

/// What status shows of the group (shared with the admin socket and
/// /metrics).
pub struct HaShared {
    pub group: String,
    pub name: String,
    pub endpoints: Vec<String>,
    floating: Vec<String>,
    view: Mutex<View>,
    errors: OnceLock<ErrorCount>,
}

/// Reads the number of failed etcd requests.
type ErrorCount = Box<dyn Fn() -> u64 + Send + Sync>;

#[derive(Clone, Debug)]
struct View {
    role: Role,
    serving: bool,
    leader_changes: u64,
    last_leader: Option<String>,
}

pub(crate) fn role_label(r: &Role) -> &'static str {
    match r {
        Role::Starting => "starting",
        Role::Standby { .. } => "standby",
        Role::TakingOver { .. } => "taking_over",
        Role::Leader { .. } => "leader",
        Role::NoQuorum { .. } => "no_quorum",
    }
}

impl HaShared {
    pub fn new(group: &str, name: &str, endpoints: Vec<String>, floating: Vec<String>) -> Self {
        HaShared {
            group: group.into(),
            name: name.into(),
            endpoints,
            floating,
            view: Mutex::new(View {
                role: Role::Starting,
                serving: false,
                leader_changes: 0,
                last_leader: None,
            }),
            errors: OnceLock::new(),
        }
    }

    /// Where the count of failed etcd requests comes from (set once).
    pub(crate) fn set_error_count(&self, f: ErrorCount) {
        let _ = self.errors.set(f);
    }

    pub(crate) fn last_leader(&self) -> Option<String> {
        self.view().last_leader.clone()
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_role(&self, role: &Role) {
        let mut v = self.view();
        if let Role::Standby {
            leader: Some(name), ..
        } = role
        {
            v.last_leader = Some(name.clone());
        }
        v.role = role.clone();
    }

    pub(crate) fn set_serving(&self, serving: bool) {
        let mut v = self.view();
        if serving && !v.serving {
            v.leader_changes += 1;
        }
        v.serving = serving;
    }

    /// Whether this instance serves clients now.
    pub fn serving(&self) -> bool {
        self.view().serving
    }

    /// The role's label (`leader`, `standby`, ...).
    pub fn role(&self) -> &'static str {
        role_label(&self.view().role)
    }

    /// The status at `now`.
    pub fn status(&self, now: Instant) -> HaStatus {
        let v = self.view().clone();
        let ms = |d: Duration| d.as_millis() as u64;
        let (leader, term, lease, takeover, no_quorum) = match &v.role {
            Role::Leader { term, serve_until } => (
                self.name.clone(),
                term.revision,
                ms(serve_until.saturating_duration_since(now)),
                0,
                0,
            ),
            Role::TakingOver { term, serve_from } => (
                self.name.clone(),
                term.revision,
                0,
                ms(serve_from.saturating_duration_since(now)),
                0,
            ),
            Role::Standby { leader } => (leader.clone().unwrap_or_default(), 0, 0, 0, 0),
            Role::NoQuorum { since } => (
                String::new(),
                0,
                0,
                0,
                now.saturating_duration_since(*since).as_secs(),
            ),
            Role::Starting => (String::new(), 0, 0, 0, 0),
        };
        HaStatus {
            group: self.group.clone(),
            name: self.name.clone(),
            role: role_label(&v.role).into(),
            leader,
            term,
            lease_remaining_ms: lease,
            takeover_remaining_ms: takeover,
            serving: v.serving,
            no_quorum_seconds: no_quorum,
            floating_addresses: if v.serving {
                self.floating.clone()
            } else {
                Vec::new()
            },
            leader_changes: v.leader_changes,
            etcd_errors: self.errors.get().map_or(0, |f| f()),
            endpoints: self.endpoints.clone(),
        }
    }
}

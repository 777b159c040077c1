//! A test and tool backend: the group's vote store kept in memory.

use std::sync::{Arc, Mutex};

use qnetd_ha::{HaError, HeldVote, LeaderTerm};

use super::shared::Backend;

/// A vote store in memory, for tests and tools: `save` is refused with
/// `NotLeader` for any term but the one set with [`MemoryBackend::lead`].
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    votes: std::collections::BTreeMap<Vec<u8>, HeldVote>,
    term: Option<i64>,
    resigned: bool,
    saves: u64,
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Writes for this term (revision) are accepted from now on.
    pub fn lead(&self, revision: i64) {
        self.lock().term = Some(revision);
    }
    /// The stored holders.
    pub fn votes(&self) -> Vec<HeldVote> {
        self.lock().votes.values().cloned().collect()
    }
    /// Stores a holder directly (a previous leader's record).
    pub fn put(&self, v: HeldVote) {
        self.lock().votes.insert(v.cluster_name.clone(), v);
    }
    pub fn resigned(&self) -> bool {
        self.lock().resigned
    }
    pub fn saves(&self) -> u64 {
        self.lock().saves
    }
}

impl Backend for MemoryBackend {
    async fn load(&self) -> Result<Vec<HeldVote>, HaError> {
        Ok(self.votes())
    }
    async fn save(&self, term: LeaderTerm, votes: Vec<HeldVote>) -> Result<(), HaError> {
        let mut i = self.lock();
        if i.term != Some(term.revision) {
            return Err(HaError::NotLeader {
                revision: term.revision,
            });
        }
        i.saves += 1;
        for v in votes {
            i.votes.insert(v.cluster_name.clone(), v);
        }
        Ok(())
    }
    async fn resign(&self) -> Result<(), HaError> {
        self.lock().resigned = true;
        Ok(())
    }
}

//! Vote memory: which partition of each cluster last held the vote, so
//! that a restart (or, with high availability, a failover) keeps each
//! cluster's vote where it was.
//!
//! Pure: the cluster table reports every decision's winner with the time
//! (`record` returns whether anything changed and marks the memory dirty);
//! whoever persists it (qnetd-server's state file writer, or the etcd store
//! of an HA group) waits for [`VoteMemory::poll_changed`], encodes the
//! snapshot with [`VoteMemory::encode`] and writes it. A cluster's first
//! client after a restart seeds the algorithm from [`VoteMemory::seed`].
//! The snapshot format is the protobuf `qnetd/state.proto`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use qnetd_algorithms::{AlgorithmKind, NodeId, RestoredVote, RingId};
use qnetd_proto::state::{DecisionSnapshot, HeldVote};
use qnetd_proto::Message as _;

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Largest snapshot read at start; a larger one is ignored.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;
/// Most clusters remembered; beyond it, the least recently seen are dropped.
pub const MAX_CLUSTERS: usize = 200_000;
/// Most members kept per remembered partition.
pub const MAX_MEMBERS: usize = 4096;

/// One cluster's remembered holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub algorithm: AlgorithmKind,
    pub ring: RingId,
    pub members: Vec<NodeId>,
    pub since_unix_ms: u64,
    pub seen_unix_ms: u64,
}

/// Remembered holders by exact cluster-name bytes.
pub type Holders = HashMap<Vec<u8>, Holder>;

/// Why a snapshot was not used.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes are not a protobuf `DecisionSnapshot`.
    Malformed(String),
    /// A snapshot of another format version.
    Version(u32),
    /// Larger than [`MAX_SNAPSHOT_BYTES`].
    TooLarge(u64),
    /// The file could not be read.
    Unreadable(std::io::ErrorKind, String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Malformed(e) => write!(f, "not a valid snapshot ({e})"),
            SnapshotError::Version(v) => write!(
                f,
                "snapshot version {v} is not the supported version {SNAPSHOT_VERSION}"
            ),
            SnapshotError::TooLarge(n) => write!(
                f,
                "it is {n} bytes, more than the {MAX_SNAPSHOT_BYTES} bytes a snapshot may have"
            ),
            SnapshotError::Unreadable(_, e) => write!(f, "cannot read it: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

fn kind_from_label(label: &str) -> Option<AlgorithmKind> {
    AlgorithmKind::ALL.into_iter().find(|k| k.label() == label)
}

/// Decodes a snapshot, dropping entries older than `max_age` (by when
/// their cluster was last seen) and malformed ones.
pub fn decode_snapshot(
    bytes: &[u8],
    now_unix_ms: u64,
    max_age: Duration,
) -> Result<Holders, SnapshotError> {
    let snap =
        DecisionSnapshot::decode(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    if snap.version != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version(snap.version));
    }
    let oldest = now_unix_ms.saturating_sub(max_age.as_millis() as u64);
    Ok(snap
        .clusters
        .into_iter()
        .take(MAX_CLUSTERS)
        .filter(|h| h.seen_unix_ms >= oldest)
        .filter_map(holder_from_proto)
        .collect())
}

/// One protobuf entry as a holder, or `None` when it is malformed.
pub fn holder_from_proto(h: HeldVote) -> Option<(Vec<u8>, Holder)> {
    let algorithm = kind_from_label(&h.algorithm)?;
    if h.cluster_name.is_empty() || h.members.is_empty() {
        return None;
    }
    let mut members = h.members;
    members.truncate(MAX_MEMBERS);
    Some((
        h.cluster_name,
        Holder {
            algorithm,
            ring: RingId::new(h.ring_node_id, h.ring_seq),
            members,
            since_unix_ms: h.since_unix_ms,
            seen_unix_ms: h.seen_unix_ms,
        },
    ))
}

/// One holder as its protobuf entry.
pub fn holder_to_proto(name: &[u8], h: &Holder) -> HeldVote {
    HeldVote {
        cluster_name: name.to_vec(),
        algorithm: h.algorithm.label().to_string(),
        ring_node_id: h.ring.node_id,
        ring_seq: h.ring.seq,
        members: h.members.clone(),
        since_unix_ms: h.since_unix_ms,
        seen_unix_ms: h.seen_unix_ms,
    }
}

/// Encodes the holders as a snapshot (entries sorted by cluster name).
pub fn encode_snapshot(holders: &Holders, now_unix_ms: u64) -> Vec<u8> {
    let mut clusters: Vec<HeldVote> = holders
        .iter()
        .map(|(name, h)| holder_to_proto(name, h))
        .collect();
    clusters.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    DecisionSnapshot {
        version: SNAPSHOT_VERSION,
        written_unix_ms: now_unix_ms,
        clusters,
    }
    .encode_to_vec()
}

#[derive(Debug, Default)]
struct Inner {
    holders: Holders,
    waker: Option<Waker>,
}

/// The remembered vote holders of every cluster (see the module
/// documentation).
#[derive(Debug)]
pub struct VoteMemory {
    inner: Mutex<Inner>,
    /// Until when (server clock, ms) the restart hold applies.
    hold_until_ms: u64,
    /// Where the memory is kept, for status output (`None`: RAM only).
    location: Option<String>,
    dirty: AtomicBool,
}

impl Default for VoteMemory {
    fn default() -> Self {
        VoteMemory::in_memory()
    }
}

impl VoteMemory {
    /// A memory kept in RAM only (tests, `state_dir = off`).
    pub fn in_memory() -> Self {
        VoteMemory::new(Holders::new(), 0, None)
    }

    /// A memory that starts with `holders` (read back from a snapshot),
    /// applies the restart hold until `hold_until_ms` (server clock), and is
    /// kept at `location` (shown by status).
    pub fn new(holders: Holders, hold_until_ms: u64, location: Option<String>) -> Self {
        VoteMemory {
            inner: Mutex::new(Inner {
                holders,
                waker: None,
            }),
            hold_until_ms,
            location,
            dirty: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remembered holder of a cluster.
    pub fn holder(&self, cluster: &[u8]) -> Option<Holder> {
        self.lock().holders.get(cluster).cloned()
    }

    /// Number of remembered clusters.
    pub fn len(&self) -> usize {
        self.lock().holders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a newly created cluster of `algorithm` starts with, if anything
    /// is remembered for it.
    pub fn seed(&self, cluster: &[u8], algorithm: AlgorithmKind) -> Option<RestoredVote> {
        let h = self.holder(cluster)?;
        (h.algorithm == algorithm).then_some(RestoredVote {
            members: h.members,
            hold_until_ms: self.hold_until_ms,
        })
    }

    /// A decision gave the vote to `ring` with `members` at `now_unix_ms`.
    /// Returns whether the memory changed (it is then dirty until saved).
    pub fn record(
        &self,
        cluster: &[u8],
        algorithm: AlgorithmKind,
        ring: RingId,
        members: &[NodeId],
        now_unix_ms: u64,
    ) -> bool {
        let waker = {
            let mut inner = self.lock();
            let same = inner.holders.get(cluster).is_some_and(|h| {
                h.algorithm == algorithm && h.ring == ring && h.members == members
            });
            if same {
                return false;
            }
            if !inner.holders.contains_key(cluster) && inner.holders.len() >= MAX_CLUSTERS {
                // Make room: forget the cluster seen least recently.
                if let Some(oldest) = inner
                    .holders
                    .iter()
                    .min_by_key(|(_, h)| h.seen_unix_ms)
                    .map(|(k, _)| k.clone())
                {
                    inner.holders.remove(&oldest);
                }
            }
            let mut members = members.to_vec();
            members.truncate(MAX_MEMBERS);
            inner.holders.insert(
                cluster.to_vec(),
                Holder {
                    algorithm,
                    ring,
                    members,
                    since_unix_ms: now_unix_ms,
                    seen_unix_ms: now_unix_ms,
                },
            );
            self.dirty.store(true, Ordering::Release);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Ready once a holder changed since the last [`VoteMemory::encode`]
    /// (or [`VoteMemory::mark_dirty`]); else registers the waker.
    pub fn poll_changed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if self.dirty.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        inner.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Whether a holder changed since the last encode.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Marks the memory dirty again (a save failed: try again later).
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Marks the `present` clusters as seen at `now_unix_ms`, clears the
    /// dirty mark and returns the snapshot to write.
    pub fn encode(&self, present: &[Vec<u8>], now_unix_ms: u64) -> Vec<u8> {
        let mut inner = self.lock();
        self.dirty.store(false, Ordering::Release);
        for name in present {
            if let Some(h) = inner.holders.get_mut(name) {
                h.seen_unix_ms = now_unix_ms;
            }
        }
        encode_snapshot(&inner.holders, now_unix_ms)
    }

    /// Where the memory is kept (status), if anywhere but RAM.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// Until when (server clock, ms) the restart hold applies.
    pub fn hold_until_ms(&self) -> u64 {
        self.hold_until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(members: &[NodeId], seen: u64) -> Holder {
        Holder {
            algorithm: AlgorithmKind::Ffsplit,
            ring: RingId::new(3, 8),
            members: members.to_vec(),
            since_unix_ms: seen,
            seen_unix_ms: seen,
        }
    }

    #[test]
    fn snapshot_round_trips_and_drops_stale_entries() {
        let mut h = Holders::new();
        h.insert(b"fresh".to_vec(), holder(&[3, 4], 1_000_000));
        h.insert(b"stale".to_vec(), holder(&[1], 10));
        let bytes = encode_snapshot(&h, 1_000_000);
        let back = decode_snapshot(&bytes, 1_000_500, Duration::from_secs(100)).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[b"fresh".as_slice()], h[b"fresh".as_slice()]);
    }

    #[test]
    fn garbage_and_unknown_versions_are_refused() {
        assert!(matches!(
            decode_snapshot(&[0xff, 0xff, 0xff], 0, Duration::from_secs(1)),
            Err(SnapshotError::Malformed(_))
        ));
        let other = DecisionSnapshot {
            version: 99,
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            decode_snapshot(&other, 0, Duration::from_secs(1)),
            Err(SnapshotError::Version(99))
        );
    }

    #[test]
    fn record_reports_changes_and_seeds_the_same_algorithm_only() {
        let m = VoteMemory::new(Holders::new(), 7000, None);
        assert!(m.record(b"c", AlgorithmKind::Ffsplit, RingId::new(3, 8), &[3, 4], 10));
        assert!(m.is_dirty());
        assert!(
            !m.record(b"c", AlgorithmKind::Ffsplit, RingId::new(3, 8), &[3, 4], 20),
            "the same holder again is no change"
        );
        let bytes = m.encode(&[b"c".to_vec()], 30);
        assert!(!m.is_dirty());
        let back = decode_snapshot(&bytes, 30, Duration::from_secs(10)).unwrap();
        assert_eq!(back[b"c".as_slice()].seen_unix_ms, 30);
        assert_eq!(
            m.seed(b"c", AlgorithmKind::Ffsplit),
            Some(RestoredVote {
                members: vec![3, 4],
                hold_until_ms: 7000
            })
        );
        assert_eq!(m.seed(b"c", AlgorithmKind::Lms), None);
        assert_eq!(m.seed(b"other", AlgorithmKind::Ffsplit), None);
    }
}

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
//!
//! Write-ahead (high availability, [`VoteMemory::set_write_ahead`]): a
//! failover must never lose a holder that already got its ACK, so each
//! changed holder gets a version, the store's writer takes the changes
//! ([`VoteMemory::take_changed`]) and reports them durable
//! ([`VoteMemory::mark_durable`]); until then a session holds back every
//! ACK of that cluster ([`VoteMemory::pending_version`],
//! [`VoteMemory::wait_durable`]: its mailbox is nudged once the version is
//! durable). Without write-ahead (a single server and its state file)
//! nothing waits.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use qnetd_algorithms::{AlgorithmKind, NodeId, RestoredVote, RingId};
use qnetd_proto::state::{DecisionSnapshot, HeldVote};
use qnetd_proto::Message as _;

use crate::mailbox::Mailbox;

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
    /// Write-ahead: the last version given to a change.
    version: u64,
    /// Write-ahead: clusters changed since the last `take_changed`.
    changed: HashSet<Vec<u8>>,
    /// Write-ahead: each cluster's newest change not yet durable.
    pending: HashMap<Vec<u8>, u64>,
    /// Write-ahead: sessions waiting for a version to be durable.
    waiters: Vec<(u64, Arc<Mailbox>)>,
}

/// The remembered vote holders of every cluster (see the module
/// documentation).
#[derive(Debug)]
pub struct VoteMemory {
    inner: Mutex<Inner>,
    /// Until when (server clock, ms) the restart hold applies.
    hold_until_ms: AtomicU64,
    /// Where the memory is kept, for status output (`None`: RAM only).
    location: Mutex<Option<String>>,
    dirty: AtomicBool,
    /// Whether ACKs wait until their cluster's holder is durable.
    write_ahead: AtomicBool,
    /// Every version up to this one is durable.
    durable: AtomicU64,
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
                ..Inner::default()
            }),
            hold_until_ms: AtomicU64::new(hold_until_ms),
            location: Mutex::new(location),
            dirty: AtomicBool::new(false),
            write_ahead: AtomicBool::new(false),
            durable: AtomicU64::new(0),
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
            hold_until_ms: self.hold_until_ms(),
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
            if self.write_ahead.load(Ordering::Acquire) {
                inner.version += 1;
                let v = inner.version;
                inner.pending.insert(cluster.to_vec(), v);
                inner.changed.insert(cluster.to_vec());
            }
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
    pub fn location(&self) -> Option<String> {
        self.location
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Until when (server clock, ms) the restart hold applies.
    pub fn hold_until_ms(&self) -> u64 {
        self.hold_until_ms.load(Ordering::Acquire)
    }

    /// Turns write-ahead on or off (see the module documentation), and
    /// names where the memory is kept (status).
    pub fn set_write_ahead(&self, on: bool, location: Option<String>) {
        self.write_ahead.store(on, Ordering::Release);
        *self.location.lock().unwrap_or_else(|e| e.into_inner()) = location;
    }

    /// Replaces every holder (a new leadership term read them from the
    /// group's store) and restarts the hold until `hold_until_ms` (server
    /// clock). Forgets changes not yet durable (they belonged to an earlier
    /// term, whose clients are gone) and wakes their waiters.
    pub fn reset(&self, holders: Holders, hold_until_ms: u64) {
        let waiters = {
            let mut inner = self.lock();
            inner.holders = holders;
            inner.changed.clear();
            inner.pending.clear();
            self.durable.store(inner.version, Ordering::Release);
            self.dirty.store(false, Ordering::Release);
            std::mem::take(&mut inner.waiters)
        };
        self.hold_until_ms.store(hold_until_ms, Ordering::Release);
        for (_, m) in waiters {
            m.nudge();
        }
    }

    /// Write-ahead: the holders changed since the last call (as their
    /// protobuf records, their cluster names) and the version they reach.
    /// Clears the dirty mark. Nothing without write-ahead.
    pub fn take_changed(&self) -> (Vec<HeldVote>, Vec<Vec<u8>>, u64) {
        let mut inner = self.lock();
        self.dirty.store(false, Ordering::Release);
        let names: Vec<Vec<u8>> = inner.changed.drain().collect();
        let records = names
            .iter()
            .filter_map(|n| inner.holders.get(n).map(|h| holder_to_proto(n, h)))
            .collect();
        (records, names, inner.version)
    }

    /// Write-ahead: a save of `names` failed; they are taken again next time.
    pub fn requeue(&self, names: Vec<Vec<u8>>) {
        let mut inner = self.lock();
        inner.changed.extend(names);
        self.dirty.store(true, Ordering::Release);
    }

    /// Write-ahead: every change up to `version` is durable; wakes the
    /// sessions that waited for it.
    pub fn mark_durable(&self, version: u64) {
        let ready: Vec<Arc<Mailbox>> = {
            let mut inner = self.lock();
            if self.durable.load(Ordering::Acquire) < version {
                self.durable.store(version, Ordering::Release);
            }
            inner.pending.retain(|_, v| *v > version);
            let (ready, waiting): (Vec<_>, Vec<_>) =
                inner.waiters.drain(..).partition(|(v, _)| *v <= version);
            inner.waiters = waiting;
            ready.into_iter().map(|(_, m)| m).collect()
        };
        for m in ready {
            m.nudge();
        }
    }

    /// Write-ahead: the version of `cluster`'s holder change that is not
    /// durable yet (`None`: nothing to wait for).
    pub fn pending_version(&self, cluster: &[u8]) -> Option<u64> {
        if !self.write_ahead.load(Ordering::Acquire) {
            return None;
        }
        let v = *self.lock().pending.get(cluster)?;
        (v > self.durable.load(Ordering::Acquire)).then_some(v)
    }

    /// Whether every change up to `version` is durable.
    pub fn is_durable(&self, version: u64) -> bool {
        self.durable.load(Ordering::Acquire) >= version
    }

    /// Nudges `mailbox` once `version` is durable (at once if it already is).
    pub fn wait_durable(&self, version: u64, mailbox: &Arc<Mailbox>) {
        {
            let mut inner = self.lock();
            if !self.is_durable(version) {
                inner.waiters.push((version, Arc::clone(mailbox)));
                return;
            }
        }
        mailbox.nudge();
    }

    /// Every holder as its protobuf record, marking the `present` clusters
    /// as seen at `now_unix_ms` (the store's periodic refresh).
    pub fn records(&self, present: &[Vec<u8>], now_unix_ms: u64) -> Vec<HeldVote> {
        let mut inner = self.lock();
        for name in present {
            if let Some(h) = inner.holders.get_mut(name) {
                h.seen_unix_ms = now_unix_ms;
            }
        }
        present
            .iter()
            .filter_map(|n| inner.holders.get(n).map(|h| holder_to_proto(n, h)))
            .collect()
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

    #[test]
    fn write_ahead_versions_changes_until_they_are_durable() {
        let m = VoteMemory::in_memory();
        let mailbox = Arc::new(Mailbox::new(4));
        m.record(b"a", AlgorithmKind::Lms, RingId::new(1, 1), &[1], 10);
        assert_eq!(m.pending_version(b"a"), None, "no write-ahead: no wait");
        m.set_write_ahead(true, Some("etcd".into()));
        m.record(b"a", AlgorithmKind::Lms, RingId::new(1, 2), &[1, 2], 20);
        m.record(b"b", AlgorithmKind::Lms, RingId::new(3, 2), &[3], 20);
        let va = m.pending_version(b"a").expect("a waits");
        m.wait_durable(va, &mailbox);
        let (records, names, version) = m.take_changed();
        assert_eq!(records.len(), 2);
        assert_eq!(names.len(), 2);
        assert!(!m.is_dirty());
        // a change after the take is not covered by its version
        m.record(b"a", AlgorithmKind::Lms, RingId::new(1, 3), &[1], 30);
        m.mark_durable(version);
        assert!(!mailbox.is_empty() || mailbox_ready(&mailbox), "nudged");
        assert_eq!(m.pending_version(b"b"), None);
        assert!(m.pending_version(b"a").is_some(), "the newer change waits");
        let (records, _, v2) = m.take_changed();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].ring_seq, 3);
        m.mark_durable(v2);
        assert_eq!(m.pending_version(b"a"), None);
        // a new term replaces everything and restarts the hold
        let mut h = Holders::new();
        h.insert(b"z".to_vec(), holder(&[9], 5));
        m.reset(h, 12_345);
        assert_eq!(m.len(), 1);
        assert_eq!(m.hold_until_ms(), 12_345);
        assert_eq!(m.location().as_deref(), Some("etcd"));
    }

    fn mailbox_ready(m: &Mailbox) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        m.poll_ready(&mut cx).is_ready()
    }
}

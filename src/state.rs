//! Restart-safe decisions: which partition of each cluster last held the
//! vote, kept in memory and persisted as a small protobuf snapshot
//! (`qnetd/state.proto`) in the state directory.
//!
//! The cluster table reports every decision's winner here; a writer task
//! saves the snapshot soon after a holder changes (atomic rename, fsync'ed)
//! and once a minute, refreshing when each present cluster was last seen.
//! At start the snapshot is read back; a cluster's first client then seeds
//! the algorithm with the remembered holder and the restart hold
//! ([`qnetd_algorithms::RestoredVote`]). A snapshot that cannot be read or
//! decoded is logged and ignored: it never stops the server.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qnetd_algorithms::{AlgorithmKind, NodeId, RestoredVote, RingId};
use qnetd_proto::state::{DecisionSnapshot, HeldVote};
use qnetd_proto::Message as _;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The snapshot's file name inside the state directory.
pub const SNAPSHOT_FILE: &str = "decisions.pb";
/// Largest snapshot read at start; a larger file is ignored.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;
/// Most clusters remembered; beyond it, the least recently seen are dropped.
pub const MAX_CLUSTERS: usize = 200_000;
/// Most members kept per remembered partition.
pub const MAX_MEMBERS: usize = 4096;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One cluster's remembered holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub algorithm: AlgorithmKind,
    pub ring: RingId,
    pub members: Vec<NodeId>,
    pub since_unix_ms: u64,
    pub seen_unix_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    holders: HashMap<Vec<u8>, Holder>,
}

/// The remembered vote holders of every cluster.
#[derive(Debug)]
pub struct VoteMemory {
    inner: Mutex<Inner>,
    /// Where the snapshot is saved; `None` keeps the memory in RAM only.
    path: Option<PathBuf>,
    /// Until when (server clock, ms) the restart hold applies.
    hold_until_ms: u64,
    dirty: AtomicBool,
    changed: Notify,
}

impl Default for VoteMemory {
    fn default() -> Self {
        VoteMemory::in_memory()
    }
}

fn kind_from_label(label: &str) -> Option<AlgorithmKind> {
    [
        AlgorithmKind::Test,
        AlgorithmKind::Ffsplit,
        AlgorithmKind::TwoNodeLms,
        AlgorithmKind::Lms,
    ]
    .into_iter()
    .find(|k| k.label() == label)
}

/// Why a snapshot was not used.
#[derive(Debug)]
pub struct SnapshotError(pub String);

/// Decodes a snapshot, dropping entries older than `max_age` (by when
/// their cluster was last seen) and malformed ones.
pub fn decode_snapshot(
    bytes: &[u8],
    now_unix_ms: u64,
    max_age: Duration,
) -> Result<HashMap<Vec<u8>, Holder>, SnapshotError> {
    let snap = DecisionSnapshot::decode(bytes)
        .map_err(|e| SnapshotError(format!("not a valid snapshot ({e})")))?;
    if snap.version != SNAPSHOT_VERSION {
        return Err(SnapshotError(format!(
            "snapshot version {} is not the supported version {SNAPSHOT_VERSION}",
            snap.version
        )));
    }
    let oldest = now_unix_ms.saturating_sub(max_age.as_millis() as u64);
    let mut out = HashMap::new();
    for h in snap.clusters.into_iter().take(MAX_CLUSTERS) {
        let Some(algorithm) = kind_from_label(&h.algorithm) else {
            continue;
        };
        if h.cluster_name.is_empty() || h.members.is_empty() || h.seen_unix_ms < oldest {
            continue;
        }
        let mut members = h.members;
        members.truncate(MAX_MEMBERS);
        out.insert(
            h.cluster_name,
            Holder {
                algorithm,
                ring: RingId::new(h.ring_node_id, h.ring_seq),
                members,
                since_unix_ms: h.since_unix_ms,
                seen_unix_ms: h.seen_unix_ms,
            },
        );
    }
    Ok(out)
}

/// Encodes the holders as a snapshot.
pub fn encode_snapshot(holders: &HashMap<Vec<u8>, Holder>, now_unix_ms: u64) -> Vec<u8> {
    let mut clusters: Vec<HeldVote> = holders
        .iter()
        .map(|(name, h)| HeldVote {
            cluster_name: name.clone(),
            algorithm: h.algorithm.label().to_string(),
            ring_node_id: h.ring.node_id,
            ring_seq: h.ring.seq,
            members: h.members.clone(),
            since_unix_ms: h.since_unix_ms,
            seen_unix_ms: h.seen_unix_ms,
        })
        .collect();
    clusters.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    DecisionSnapshot {
        version: SNAPSHOT_VERSION,
        written_unix_ms: now_unix_ms,
        clusters,
    }
    .encode_to_vec()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over the old file, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

impl VoteMemory {
    /// A memory that is never saved (tests, `state_dir = off`).
    pub fn in_memory() -> Self {
        VoteMemory {
            inner: Mutex::new(Inner::default()),
            path: None,
            hold_until_ms: 0,
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    /// Opens the state directory (creating it) and reads its snapshot.
    /// Problems are logged; the server then runs without (some of) it.
    /// `hold_ms` is the restart hold, from the server's start.
    pub fn open(state_dir: Option<&Path>, max_age: Duration, hold_ms: u64) -> Self {
        let mut memory = VoteMemory::in_memory();
        let Some(dir) = state_dir else {
            info!("state_dir is off: votes are not remembered across restarts");
            return memory;
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            warn!(
                "cannot create the state directory {}: {e}; votes will not be remembered across restarts (fix its permissions, or set -S state_dir=off)",
                dir.display()
            );
            return memory;
        }
        let path = dir.join(SNAPSHOT_FILE);
        memory.path = Some(path.clone());
        memory.hold_until_ms = hold_ms;
        let holders = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                info!(path = %path.display(), "no decision snapshot yet (first start)");
                return memory;
            }
            Err(e) => Err(SnapshotError(format!("cannot read it: {e}"))),
            Ok(m) if m.len() > MAX_SNAPSHOT_BYTES => Err(SnapshotError(format!(
                "it is {} bytes, more than the {MAX_SNAPSHOT_BYTES} bytes a snapshot may have",
                m.len()
            ))),
            Ok(_) => std::fs::read(&path)
                .map_err(|e| SnapshotError(format!("cannot read it: {e}")))
                .and_then(|bytes| decode_snapshot(&bytes, unix_ms(), max_age)),
        };
        match holders {
            Ok(h) => {
                info!(
                    path = %path.display(),
                    clusters = h.len(),
                    hold_ms,
                    "decision snapshot loaded: each cluster's vote stays with its last holder"
                );
                memory.lock().holders = h;
            }
            Err(SnapshotError(why)) => warn!(
                path = %path.display(),
                "ignoring the decision snapshot: {why}; starting without remembered votes (it is overwritten at the next decision)"
            ),
        }
        memory
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

    /// A decision gave the vote to `ring` with `members`.
    pub fn record(
        &self,
        cluster: &[u8],
        algorithm: AlgorithmKind,
        ring: RingId,
        members: &[NodeId],
    ) {
        let now = unix_ms();
        let mut inner = self.lock();
        let same = inner
            .holders
            .get(cluster)
            .is_some_and(|h| h.algorithm == algorithm && h.ring == ring && h.members == members);
        if same {
            return;
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
                since_unix_ms: now,
                seen_unix_ms: now,
            },
        );
        drop(inner);
        if self.path.is_some() {
            self.dirty.store(true, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// Saves the snapshot now if anything changed (or `force`), after
    /// marking the `present` clusters as seen. Returns whether it wrote.
    pub fn save(&self, present: &[Vec<u8>], force: bool) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let was_dirty = self.dirty.swap(false, Ordering::AcqRel);
        if !was_dirty && !force {
            return false;
        }
        let now = unix_ms();
        let bytes = {
            let mut inner = self.lock();
            for name in present {
                if let Some(h) = inner.holders.get_mut(name) {
                    h.seen_unix_ms = now;
                }
            }
            encode_snapshot(&inner.holders, now)
        };
        match write_atomically(path, &bytes) {
            Ok(()) => {
                metrics::counter!(crate::metrics::SNAPSHOT_SAVES, "result" => "ok").increment(1);
                debug!(path = %path.display(), bytes = bytes.len(), "decision snapshot saved");
                true
            }
            Err(e) => {
                metrics::counter!(crate::metrics::SNAPSHOT_SAVES, "result" => "failed")
                    .increment(1);
                // Try again at the next change or tick.
                self.dirty.store(true, Ordering::Release);
                warn!(
                    path = %path.display(),
                    "cannot save the decision snapshot: {e}; the previous one stays (check the state directory's disk and permissions)"
                );
                false
            }
        }
    }

    /// Whether a snapshot file is in use.
    pub fn is_persistent(&self) -> bool {
        self.path.is_some()
    }

    /// The snapshot file, if one is in use.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Until when (server clock, ms) the restart hold applies.
    pub fn hold_until_ms(&self) -> u64 {
        self.hold_until_ms
    }

    /// Waits until a holder changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
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
        let mut h = HashMap::new();
        h.insert(b"fresh".to_vec(), holder(&[3, 4], 1_000_000));
        h.insert(b"stale".to_vec(), holder(&[1], 10));
        let bytes = encode_snapshot(&h, 1_000_000);
        let back = decode_snapshot(&bytes, 1_000_500, Duration::from_secs(100)).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[b"fresh".as_slice()], h[b"fresh".as_slice()]);
    }

    #[test]
    fn garbage_and_unknown_versions_are_refused() {
        assert!(decode_snapshot(&[0xff, 0xff, 0xff], 0, Duration::from_secs(1)).is_err());
        let other = DecisionSnapshot {
            version: 99,
            ..Default::default()
        }
        .encode_to_vec();
        let e = decode_snapshot(&other, 0, Duration::from_secs(1)).unwrap_err();
        assert!(e.0.contains("version 99"), "{}", e.0);
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qnetd-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn saved_holders_are_loaded_again_and_seed_the_same_algorithm_only() {
        let dir = scratch("reload");
        let m = VoteMemory::open(Some(&dir), Duration::from_secs(3600), 7000);
        m.record(b"c", AlgorithmKind::Ffsplit, RingId::new(3, 8), &[3, 4]);
        assert!(m.save(&[b"c".to_vec()], false));
        assert!(!m.save(&[], false), "nothing changed: nothing written");
        let again = VoteMemory::open(Some(&dir), Duration::from_secs(3600), 7000);
        assert_eq!(
            again.seed(b"c", AlgorithmKind::Ffsplit),
            Some(RestoredVote {
                members: vec![3, 4],
                hold_until_ms: 7000
            })
        );
        assert_eq!(again.seed(b"c", AlgorithmKind::Lms), None);
        assert_eq!(again.seed(b"other", AlgorithmKind::Ffsplit), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_snapshot_is_ignored_not_fatal() {
        let dir = scratch("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SNAPSHOT_FILE), b"\x0a\xff\xff\xff\xff garbage").unwrap();
        let m = VoteMemory::open(Some(&dir), Duration::from_secs(3600), 1000);
        assert!(m.is_empty());
        assert!(m.is_persistent(), "a new snapshot replaces the corrupt one");
        m.record(b"c", AlgorithmKind::Ffsplit, RingId::new(1, 2), &[1]);
        assert!(m.save(&[], false));
        let again = VoteMemory::open(Some(&dir), Duration::from_secs(3600), 1000);
        assert_eq!(again.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unusable_state_dir_keeps_memory_in_ram() {
        let file = scratch("file");
        std::fs::write(&file, b"x").unwrap();
        let m = VoteMemory::open(Some(&file), Duration::from_secs(1), 0);
        assert!(!m.is_persistent());
        m.record(b"c", AlgorithmKind::Ffsplit, RingId::new(1, 2), &[1]);
        assert!(!m.save(&[], true));
        let _ = std::fs::remove_file(&file);
    }
}

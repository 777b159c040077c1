//! The state file: the vote memory (qnetd-core's `memory`) kept in
//! `state_dir/decisions.pb` across restarts.
//!
//! At start the snapshot is read back ([`open`]); a snapshot that cannot be
//! read or decoded is logged and ignored: it never stops the server. While
//! the server runs, [`run`] saves the snapshot soon after a holder changes
//! (changes within 100 ms are written together) and once a minute
//! (refreshing when each present cluster was last seen), off the async
//! workers: temporary file, fsync, rename, fsync of the directory.

use std::fs::File;
use std::future::poll_fn;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qnetd_core::arbiter::Arbiter;
use qnetd_core::memory::{decode_snapshot, Holders, SnapshotError, VoteMemory, MAX_SNAPSHOT_BYTES};
use qnetd_core::telemetry;
use tracing::{debug, info, warn};

use crate::shutdown::Shutdown;

/// The snapshot's file name inside the state directory.
pub const SNAPSHOT_FILE: &str = "decisions.pb";

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens the state directory (creating it) and reads its snapshot into a
/// vote memory whose restart hold lasts `hold_ms` from the server's start.
/// Problems are logged; the server then runs without (some of) it. Returns
/// the memory and the snapshot path to save to (`None`: RAM only).
pub fn open(
    state_dir: Option<&Path>,
    max_age: Duration,
    hold_ms: u64,
) -> (VoteMemory, Option<PathBuf>) {
    let Some(dir) = state_dir else {
        info!("state_dir is off: votes are not remembered across restarts");
        return (VoteMemory::in_memory(), None);
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        warn!(
            "cannot create the state directory {}: {e}; votes will not be remembered across restarts (fix its permissions, or set -S state_dir=off)",
            dir.display()
        );
        return (VoteMemory::in_memory(), None);
    }
    let path = dir.join(SNAPSHOT_FILE);
    let location = Some(path.display().to_string());
    let holders = match read_snapshot(&path, max_age) {
        Ok(None) => {
            info!(path = %path.display(), "no decision snapshot yet (first start)");
            Holders::new()
        }
        Ok(Some(h)) => {
            info!(
                path = %path.display(),
                clusters = h.len(),
                hold_ms,
                "decision snapshot loaded: each cluster's vote stays with its last holder"
            );
            h
        }
        Err(why) => {
            warn!(
                path = %path.display(),
                "ignoring the decision snapshot: {why}; starting without remembered votes (it is overwritten at the next decision)"
            );
            Holders::new()
        }
    };
    (VoteMemory::new(holders, hold_ms, location), Some(path))
}

/// Reads a snapshot file; `Ok(None)` when there is none yet.
fn read_snapshot(path: &Path, max_age: Duration) -> Result<Option<Holders>, SnapshotError> {
    let unreadable = |e: std::io::Error| SnapshotError::Unreadable(e.kind(), e.to_string());
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(e)),
        Ok(m) if m.len() > MAX_SNAPSHOT_BYTES => Err(SnapshotError::TooLarge(m.len())),
        Ok(_) => {
            let bytes = std::fs::read(path).map_err(unreadable)?;
            decode_snapshot(&bytes, unix_ms(), max_age).map(Some)
        }
    }
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

/// Saves the snapshot now if anything changed (or `force`). Returns
/// whether it wrote.
pub fn save(arbiter: &Arbiter, path: &Path, force: bool) -> bool {
    let memory = arbiter.memory();
    if !memory.is_dirty() && !force {
        return false;
    }
    let bytes = memory.encode(&arbiter.table.names(), unix_ms());
    match write_atomically(path, &bytes) {
        Ok(()) => {
            metrics::counter!(telemetry::SNAPSHOT_SAVES, "result" => "ok").increment(1);
            debug!(path = %path.display(), bytes = bytes.len(), "decision snapshot saved");
            true
        }
        Err(e) => {
            metrics::counter!(telemetry::SNAPSHOT_SAVES, "result" => "failed").increment(1);
            // Try again at the next change or tick.
            memory.mark_dirty();
            warn!(
                path = %path.display(),
                "cannot save the decision snapshot: {e}; the previous one stays (check the state directory's disk and permissions)"
            );
            false
        }
    }
}

/// Saves the snapshot shortly after a holder changes and once a minute,
/// until `shutdown` fires; then saves a last time.
pub async fn run(arbiter: Arc<Arbiter>, path: PathBuf, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = shutdown.triggered() => break,
            _ = poll_fn(|cx| arbiter.memory().poll_changed(cx)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                false
            }
            _ = tick.tick() => true,
        };
        save_off_thread(&arbiter, &path, force).await;
    }
    save_off_thread(&arbiter, &path, true).await;
}

async fn save_off_thread(arbiter: &Arc<Arbiter>, path: &Path, force: bool) {
    let arbiter = Arc::clone(arbiter);
    let path = path.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || save(&arbiter, &path, force)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use qnetd_algorithms::{AlgorithmKind, RestoredVote, RingId};
    use qnetd_core::config::Settings;
    use std::time::Instant;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qnetd-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn arbiter(memory: VoteMemory) -> Arbiter {
        Arbiter::new(
            Arc::new(Settings::default()),
            Arc::new(memory),
            Instant::now(),
            unix_ms(),
        )
    }

    #[test]
    fn saved_holders_are_loaded_again_and_seed_the_same_algorithm_only() {
        let dir = scratch("reload");
        let (m, path) = open(Some(&dir), Duration::from_secs(3600), 7000);
        let a = arbiter(m);
        a.memory().record(
            b"c",
            AlgorithmKind::Ffsplit,
            RingId::new(3, 8),
            &[3, 4],
            unix_ms(),
        );
        let path = path.unwrap();
        assert!(save(&a, &path, false));
        assert!(!save(&a, &path, false), "nothing changed: nothing written");
        let (again, _) = open(Some(&dir), Duration::from_secs(3600), 7000);
        assert_eq!(
            again.seed(b"c", AlgorithmKind::Ffsplit),
            Some(RestoredVote {
                members: vec![3, 4],
                hold_until_ms: 7000
            })
        );
        assert_eq!(again.seed(b"c", AlgorithmKind::Lms), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_snapshot_is_ignored_not_fatal() {
        let dir = scratch("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SNAPSHOT_FILE), b"\x0a\xff\xff\xff\xff garbage").unwrap();
        let (m, path) = open(Some(&dir), Duration::from_secs(3600), 1000);
        assert!(m.is_empty());
        let path = path.expect("a new snapshot replaces the corrupt one");
        let a = arbiter(m);
        a.memory().record(
            b"c",
            AlgorithmKind::Ffsplit,
            RingId::new(1, 2),
            &[1],
            unix_ms(),
        );
        assert!(save(&a, &path, false));
        let (again, _) = open(Some(&dir), Duration::from_secs(3600), 1000);
        assert_eq!(again.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unusable_state_dir_keeps_memory_in_ram() {
        let file = scratch("file");
        std::fs::write(&file, b"x").unwrap();
        let (m, path) = open(Some(&file), Duration::from_secs(1), 0);
        assert!(path.is_none());
        assert!(m.location().is_none());
        let _ = std::fs::remove_file(&file);
    }
}

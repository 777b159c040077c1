//! The committed corpus, replayed through the harnesses with the ordinary
//! test harness (`cargo test` in fuzz/, stable Rust, no libFuzzer), and the
//! generator of the seed corpus:
//!
//! ```sh
//! cd fuzz && cargo test --test corpus -- --ignored write_seed_corpus
//! ```

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Every file of `corpus/<target>/`.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        eprintln!("{}", path.display());
        run(&bytes);
    }
}

#[test]
fn codec_corpus() {
    replay("codec", qnetd_fuzz::codec::run);
}

#[test]
fn session_corpus() {
    replay("session", qnetd_fuzz::session::run);
}

#[test]
fn algorithms_corpus() {
    replay("algorithms", qnetd_fuzz::algorithms::run);
}

/// Writes the seed corpus (`qnetd_fuzz::seeds`) to `corpus/<target>/`,
/// named `seed-<name>`; other files (minimized inputs, regressions) are
/// left alone.
#[test]
#[ignore]
fn write_seed_corpus() {
    type Seeds = fn() -> Vec<(String, Vec<u8>)>;
    let targets: [(&str, Seeds); 3] = [
        ("codec", qnetd_fuzz::seeds::codec),
        ("session", qnetd_fuzz::seeds::session),
        ("algorithms", qnetd_fuzz::seeds::algorithms),
    ];
    for (target, seeds) in targets {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
        }
    }
}

#!/bin/bash
#
# Runs the cargo-fuzz targets of qnetd, one after the other, each for
# SECONDS, seeded with the committed corpus (fuzz/corpus/<target>/).
#
#   fuzz/run.sh SECONDS [TARGET...]      (default targets: codec session algorithms)
#
# Needs only the stable toolchain: cargo-fuzz's nightly flags are allowed
# with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz if it is missing.
#
# The committed corpus is copied to a scratch directory (FUZZ_WORK_DIR, a
# new temporary directory by default), so a run never dirties the repository;
# set FUZZ_WORK_DIR to a fixed path to keep the grown corpus between runs.
# One libFuzzer process at a time (no -jobs/-fork), niced (FUZZ_NICE,
# default 10). Limits: -rss_limit_mb=2048, -timeout=10 (an input running
# longer is a hang, reported as a finding).
#
# Every target runs even after a finding. Exit status 0 when no target
# found anything; otherwise 1, with each failing target and the path of its
# crash/timeout/oom artifact (reproduce it with
# `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -a TARGET ARTIFACT`).
#
set -euo pipefail

usage() { echo "usage: $0 SECONDS [TARGET...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
SECS=$1; shift
[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -gt 0 ] || usage
ALL_TARGETS=(codec session algorithms)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$FUZZ_DIR"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
NICE=${FUZZ_NICE:-10}
RSS_MB=2048
TIMEOUT_S=10

die() { echo "FUZZ FAILED: $*" >&2; exit 1; }

for t in "${TARGETS[@]}"; do
    [ -d "corpus/$t" ] || die "unknown target '$t' (no fuzz/corpus/$t); targets: ${ALL_TARGETS[*]}"
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "+ cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked || die "could not install cargo-fuzz"
fi
cargo fuzz --version

WORK=${FUZZ_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/qnetd-fuzz.XXXXXX")}
mkdir -p "$WORK"
echo "scratch directory: $WORK"

echo "+ cargo fuzz build -a (all targets)"
nice -n "$NICE" cargo fuzz build -a || die "cargo fuzz build failed"

FAILED=()
for t in "${TARGETS[@]}"; do
    corpus="$WORK/corpus/$t"
    artifacts="$WORK/artifacts/$t"
    log="$WORK/$t.log"
    mkdir -p "$corpus" "$artifacts"
    cp -n corpus/"$t"/* "$corpus"/
    echo
    echo "==== fuzz target $t: ${SECS}s, corpus $corpus ($(ls "$corpus" | wc -l) files), log $log"
    rc=0
    nice -n "$NICE" cargo fuzz run -a "$t" "$corpus" -- \
        -max_total_time="$SECS" -rss_limit_mb="$RSS_MB" -timeout="$TIMEOUT_S" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 \
        </dev/null >"$log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" || true
    found=$(find "$artifacts" -type f | head -n 5)
    if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
        tail -n 40 "$log" >&2
        echo "target $t: FINDING (exit status $rc); artifact(s): ${found:-none, see $log}" >&2
        FAILED+=("$t: ${found:-see $log}")
        continue
    fi
    echo "target $t: no findings ($(ls "$corpus" | wc -l) corpus files)"
done
echo
# Every target runs; the findings are listed together at the end.
[ ${#FAILED[@]} -eq 0 ] || die "${#FAILED[@]} target(s) found a problem: ${FAILED[*]}"
echo "fuzzing passed: ${TARGETS[*]}, ${SECS}s each"

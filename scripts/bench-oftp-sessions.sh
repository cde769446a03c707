#!/usr/bin/env bash
# OFTP memory with many sessions (not part of CI).
#
# Builds the `oftp` binary in release mode, then runs crates/oftp/benches/sessions.rs: 200 and
# then 1,000 concurrent sessions, each sending one 1 MiB file to a fresh `oftp serve` process
# and waiting for its EERP. Prints the deliveries, the server's peak RSS with its ratio to the
# 64 MiB limit and the peaks of its anonymous and file-backed parts, and its peak thread count. Needs about 1.2 GiB free in $TMPDIR and an open-file
# limit of at least 4096 (raised here when the hard limit allows).
#
#   scripts/bench-oftp-sessions.sh
#   OFTP_BENCH_SESSION_KIB=64 scripts/bench-oftp-sessions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p oftp-cli
target="${CARGO_TARGET_DIR:-target}"
OFTP_BIN="$(cd "$target/release" && pwd)/oftp" cargo bench -p oftp --bench sessions

#!/usr/bin/env bash
# OFTP throughput and footprint benchmark (not part of CI).
#
# Builds the `oftp` binary in release mode, then runs crates/oftp/benches/throughput.rs, which
# in one run measures raw loopback TCP, a 1 GiB U file with 99999-octet buffers / credit 999 and
# with the defaults (4096 / 64) against a separate `oftp serve` process, 200 concurrent sessions
# of 1 MiB each, and the server's peak RSS. Needs about 3 GiB of free space in $TMPDIR.
#
#   scripts/bench-oftp.sh              # 1 GiB
#   OFTP_BENCH_MIB=256 scripts/bench-oftp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p oftp-cli
target="${CARGO_TARGET_DIR:-target}"
OFTP_BIN="$(cd "$target/release" && pwd)/oftp" cargo bench -p oftp --bench throughput

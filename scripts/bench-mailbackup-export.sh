#!/usr/bin/env bash
# Benchmarks of `mailbackup export` and `mailbackup search` (not tests).
#
# 1. Export: a synthetic backup of $MESSAGES messages (default 20000, 2-12 KiB each, six folders;
#    made by the `synthetic_backup` example, index rows included) is exported to mbox (one file
#    per folder) and to Maildir, and copied with `cp -r`, all on the same disk under $WORK_DIR
#    (default: a temporary folder). Export writes durably by default (fsync per mbox file;
#    Maildir messages in batches made durable by `syncfs`), so the copy is timed twice: `cp -r`
#    alone, and `cp -r` followed by `sync`; `export --no-fsync` (no wait for the disk, like
#    `cp`) is timed too and compared with `cp -r`. The
#    ratio printed is copy time / export time (target >= 0.8: export at 80% of a plain copy's
#    speed or better). Caches are warm for all (the backup is read once just before each step).
#    The six steps run in turn $ROUNDS times (default 3): the disk's speed changes from minute
#    to minute, so each round's ratios compare steps measured side by side.
# 2. Search: $ROWS synthetic header rows (default 1000000) in an index, then typical queries,
#    each the median of 5: the whole answer of `mailbackup search` (the 50 newest hits and
#    their count, up to 10,000) with its ratio to the 100 ms limit (target < 1), and, apart,
#    the exact count of all hits (`search --count`).
#
# Usage: scripts/bench-mailbackup-export.sh   (env: PARTS ("export search", default both),
#                                              MESSAGES, ROUNDS, ROWS, WORK_DIR, CARGO_TARGET_DIR)
set -euo pipefail

PARTS=${PARTS:-export search}
MESSAGES=${MESSAGES:-20000}
ROUNDS=${ROUNDS:-3}
ROWS=${ROWS:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
cargo build --release -p mailbackup --example synthetic_backup >&2
if [[ " $PARTS " == *" export "* ]]; then cargo build --release -p mailbackup-cli >&2; fi
BIN=$TARGET/release

WORK=$(mktemp -d "${WORK_DIR:-${TMPDIR:-/tmp}}/mailbackup-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

if [[ " $PARTS " == *" export "* ]]; then
  "$BIN/examples/synthetic_backup" backup "$WORK/backup" "$MESSAGES"
  BYTES=$(du -sb --exclude=.meta "$WORK/backup" | cut -f1)
  # Every timed step reads the backup from memory: warmed just before it, since some machines
  # (this one, a VM) lose page cache within seconds, and a step then waits for reads from a
  # disk its own writes keep busy.
  warm() { find "$WORK/backup" -type f -exec cat {} + > /dev/null; }
  sync

  ratio() { awk -v c="$1" -v e="$2" 'BEGIN { printf "%.2f", c / e }'; }
  # timed NAME DIR COMMAND...: runs COMMAND (which writes DIR), sets NAME to its seconds, syncs.
  # Nothing is removed until the end: on ext4 without a journal (this machine's disk) creating
  # a file skips, one by one, the inodes deleted in the last 60 s, or 6 minutes while their
  # inode table block is dirty (`recently_deleted`), so the step after an `rm -rf` of 20,000
  # files took 5-14 s instead of 0.6-2 s, whichever it was. Do not run it within 6 minutes of
  # deleting many files on the same file system.
  timed() {
    local name=$1 dir=$2; shift 2
    local t0 t1
    warm
    t0=$(now); "$@" "$dir"; t1=$(now)
    printf -v "$name" '%s' "$(secs "$t0" "$t1")"
    sync
  }
  copy() { cp -r "$WORK/backup" "$1"; }
  copy_and_sync() { cp -r "$WORK/backup" "$1"; sync; }
  export_mbox() {
    "$BIN/mailbackup" export -d "$WORK/backup" --format mbox --no-progress -o "$1" > /dev/null
  }
  export_maildir() {
    "$BIN/mailbackup" export -d "$WORK/backup" --format maildir --no-progress -o "$1" > /dev/null
  }
  export_mbox_no_fsync() {
    "$BIN/mailbackup" export -d "$WORK/backup" --format mbox --no-fsync --no-progress -o "$1" \
      > /dev/null
  }
  export_maildir_no_fsync() {
    "$BIN/mailbackup" export -d "$WORK/backup" --format maildir --no-fsync --no-progress \
      -o "$1" > /dev/null
  }
  echo "export of $MESSAGES messages ($((BYTES / 1024 / 1024)) MiB), $ROUNDS rounds, the steps alternated:"
  for round in $(seq 1 "$ROUNDS"); do
    timed CP "$WORK/cp-$round" copy
    timed CPSYNC "$WORK/cp-sync-$round" copy_and_sync
    timed MBOX "$WORK/mbox-$round" export_mbox
    timed MAILDIR "$WORK/maildir-$round" export_maildir
    timed MBOXNF "$WORK/mbox-nf-$round" export_mbox_no_fsync
    timed MAILDIRNF "$WORK/maildir-nf-$round" export_maildir_no_fsync
    echo "round $round: cp -r ${CP}s, cp -r && sync ${CPSYNC}s"
    echo "  export mbox:    ${MBOX}s   ratio to cp -r $(ratio "$CP" "$MBOX"), to cp -r && sync $(ratio "$CPSYNC" "$MBOX")"
    echo "  export Maildir: ${MAILDIR}s   ratio to cp -r $(ratio "$CP" "$MAILDIR"), to cp -r && sync $(ratio "$CPSYNC" "$MAILDIR")"
    echo "  export mbox --no-fsync:    ${MBOXNF}s   ratio to cp -r $(ratio "$CP" "$MBOXNF")"
    echo "  export Maildir --no-fsync: ${MAILDIRNF}s   ratio to cp -r $(ratio "$CP" "$MAILDIRNF")"
  done
fi

if [[ " $PARTS " == *" search "* ]]; then
  echo "search over $ROWS indexed messages:"
  "$BIN/examples/synthetic_backup" search "$WORK/index" "$ROWS"
fi

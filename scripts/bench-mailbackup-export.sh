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
#    Each round runs the six steps in turn $REPEAT times (default 3) and compares each step's
#    fastest run; $ROUNDS rounds (default 3), then the median of each ratio over the rounds.
# 2. Search: $ROWS synthetic header rows (default 1000000) in an index, then typical queries,
#    each the median of 5: the whole answer of `mailbackup search` (the 50 newest hits and
#    their count, up to 10,000) with its ratio to the 100 ms limit (target < 1), and, apart,
#    the exact count of all hits (`search --count`).
#
# Usage: scripts/bench-mailbackup-export.sh   (env: PARTS ("export search", default both),
#                                              MESSAGES, ROUNDS, REPEAT, ROWS, WORK_DIR,
#                                              CARGO_TARGET_DIR)
set -euo pipefail

PARTS=${PARTS:-export search}
MESSAGES=${MESSAGES:-20000}
ROUNDS=${ROUNDS:-3}
REPEAT=${REPEAT:-3}
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
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

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
  # Each round runs every step $REPEAT times, interleaved, and keeps each step's fastest run:
  # on this VM one run of the same step takes 0.4 s or 1.2 s from one minute to the next (the
  # host's memory, not the disk), and the slower runs say nothing about the program.
  STEPS="CP:copy CPSYNC:copy_and_sync MBOX:export_mbox MAILDIR:export_maildir"
  STEPS="$STEPS MBOXNF:export_mbox_no_fsync MAILDIRNF:export_maildir_no_fsync"
  min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
  median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  declare -A RATIOS=()
  # keep KEY COPY EXPORT: sets R to COPY / EXPORT and adds it to KEY's list for the medians.
  keep() { R=$(ratio "$2" "$3"); RATIOS[$1]="${RATIOS[$1]:-} $R"; }
  echo "export of $MESSAGES messages ($((BYTES / 1024 / 1024)) MiB), $ROUNDS rounds of the" \
    "steps interleaved $REPEAT times, the fastest run of each step:"
  for round in $(seq 1 "$ROUNDS"); do
    declare -A BEST=()
    for rep in $(seq 1 "$REPEAT"); do
      for step in $STEPS; do
        name=${step%%:*}
        timed T "$WORK/$name-$round-$rep" "${step#*:}"
        BEST[$name]=$(min "${BEST[$name]:-}" "$T")
      done
    done
    CP=${BEST[CP]} CPSYNC=${BEST[CPSYNC]}
    echo "round $round: cp -r ${CP}s, cp -r && sync ${CPSYNC}s"
    keep mbox_cp "$CP" "${BEST[MBOX]}"; a=$R; keep mbox_sync "$CPSYNC" "${BEST[MBOX]}"; b=$R
    echo "  export mbox:    ${BEST[MBOX]}s   ratio to cp -r $a, to cp -r && sync $b"
    keep maildir_cp "$CP" "${BEST[MAILDIR]}"; a=$R
    keep maildir_sync "$CPSYNC" "${BEST[MAILDIR]}"; b=$R
    echo "  export Maildir: ${BEST[MAILDIR]}s   ratio to cp -r $a, to cp -r && sync $b"
    keep mboxnf_cp "$CP" "${BEST[MBOXNF]}"
    echo "  export mbox --no-fsync:    ${BEST[MBOXNF]}s   ratio to cp -r $R"
    keep maildirnf_cp "$CP" "${BEST[MAILDIRNF]}"
    echo "  export Maildir --no-fsync: ${BEST[MAILDIRNF]}s   ratio to cp -r $R"
    unset BEST
  done
  echo "medians over the rounds (target >= 0.8):"
  for key in mbox_cp mbox_sync maildir_cp maildir_sync mboxnf_cp maildirnf_cp; do
    echo "  $key: $(echo ${RATIOS[$key]} | median)   (rounds:${RATIOS[$key]})"
  done
fi

if [[ " $PARTS " == *" search "* ]]; then
  echo "search over $ROWS indexed messages:"
  "$BIN/examples/synthetic_backup" search "$WORK/index" "$ROWS"
fi

#!/usr/bin/env bash
# Deterministic before/after figures for benches/throughput.rs: instructions per MiB of the
# send side, the receive side and the memcpy yardstick, counted by callgrind.
#
#   crates/oftp-proto/benches/callgrind.sh [BENCH_BINARY]
#
# Without an argument the bench is built (`cargo bench --no-run`) and the newest binary used.
# OFTP_PROTO_BENCH_MIB (default 16) sets the volume per configuration.
set -euo pipefail
mib=${OFTP_PROTO_BENCH_MIB:-16}
bin=${1:-}
if [[ -z $bin ]]; then
  cargo bench -p oftp-proto --bench throughput --no-run >/dev/null 2>&1
  dir=${CARGO_TARGET_DIR:-target}/release/deps
  bin=$(ls -t "$dir"/throughput-* | grep -v '\.d$' | head -1)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-10s %14s %14s\n' config send_Ir/MiB recv_Ir/MiB
for cfg in memcpy 99999-off 99999-on 4096-off 4096-on; do
  OFTP_PROTO_BENCH_MIB=$mib OFTP_PROTO_BENCH_ONLY=$cfg \
    valgrind --tool=callgrind --callgrind-out-file="$out/$cfg.out" "$bin" >/dev/null 2>&1
  ann=$(callgrind_annotate --inclusive=yes "$out/$cfg.out" 2>/dev/null)
  # Inclusive Ir of a function: first column of its line, digits only.
  ir() { grep -E "throughput::$1[^_a-z]" <<<"$ann" | head -1 | awk '{gsub(",","",$1); print $1}'; }
  if [[ $cfg == memcpy ]]; then
    m=$(ir memcpy_phase)
    printf '%-10s %14d\n' "$cfg" $((m / mib))
  else
    s=$(( $(ir send_side) + $(ir send_side_input || echo 0) ))
    r=$(ir recv_side)
    printf '%-10s %14d %14d\n' "$cfg" $((s / mib)) $((r / mib))
  fi
done

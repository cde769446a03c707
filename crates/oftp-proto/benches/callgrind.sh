#!/usr/bin/env bash
# Deterministic before/after figures for benches/throughput.rs: instructions per MiB of the
# send side, the receive side (protocol core alone; with the socket read's copy through
# handle_input and through read_buffer) and the memcpy yardstick, counted by callgrind.
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
printf '%-10s %12s %12s %14s %14s\n' config send recv recv+read:hi recv+read:rb
for cfg in memcpy 99999-off 99999-on 4096-off 4096-on; do
  OFTP_PROTO_BENCH_MIB=$mib OFTP_PROTO_BENCH_ONLY=$cfg OFTP_PROTO_BENCH_REPEAT=1 \
    valgrind --tool=callgrind --callgrind-out-file="$out/$cfg.out" "$bin" >/dev/null 2>&1
  ann=$(callgrind_annotate --inclusive=yes "$out/$cfg.out" 2>/dev/null)
  # Inclusive Ir per MiB of a function ("-" when the binary has no such function).
  per_mib() {
    local v
    v=$(grep -E "throughput::$1 \[" <<<"$ann" | head -1 | awk '{gsub(",","",$1); print $1}')
    if [[ -z $v ]]; then echo -; else echo $((v / mib)); fi
  }
  if [[ $cfg == memcpy ]]; then
    printf '%-10s %12s\n' "$cfg" "$(per_mib memcpy_phase)"
  else
    s=$(per_mib send_side); si=$(per_mib send_side_input)
    [[ $si != - ]] && s=$((s + si))
    # Benches that also time the read copies run three transfers per configuration.
    [[ $(per_mib recv_side_direct) != - ]] && s=$((s / 3))
    printf '%-10s %12s %12s %14s %14s\n' "$cfg" "$s" "$(per_mib recv_side)" \
      "$(per_mib recv_side_read_copy)" "$(per_mib recv_side_direct)"
  fi
done

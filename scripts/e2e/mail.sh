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
  "milter: the stock submission services bypass a policy in main.cf (Postfix alone)|test_mail_milter.py::test_stock_submission_services_bypass_a_policy_in_main_cf"
  "milter: a honey login sends 10 on each of 25, 587, 465: 30 captured, 0 relayed; a user's mail goes out|test_mail_milter.py::test_honey_login_is_captured_on_every_service"
  "milter: no honey account while submission bypasses the milter; doctor names it|test_mail_milter.py::test_no_honey_account_while_a_sasl_service_bypasses_moat[milter-removed-from-submission]"
  "milter: no honey account with a policy-only wiring and the stock services|test_mail_milter.py::test_no_honey_account_while_a_sasl_service_bypasses_moat[policy-only-with-stock-submission]"
  "milter: doctor is happy with the documented wiring|test_mail_milter.py::test_doctor_is_happy_with_the_full_wiring"
  "milter: 100 probes from fresh networks and senders learn nothing|test_mail_milter.py::test_enumeration_from_fresh_networks_learns_nothing"
  "milter: a typo gets a DSN only when the sender passes SPF|test_mail_milter.py::test_a_typo_gets_a_dsn_only_when_the_sender_passes_spf"
  "milter: the owner gets in at once from his network during an attack|test_mail_milter.py::test_the_owner_gets_in_at_once_from_his_network_during_an_attack"
  "milter: with Moat killed users log in, mail flows, unknown recipients are refused honestly|test_mail_milter.py::test_mail_flows_when_moat_is_killed"
)
failed=0
for c in "${checks[@]}"; do
  name=${c%%|*}; node=${c#*|}
  log=$(mktemp)
  case "$node" in *.py::*) path="tests/e2e/$node" ;; *) path="tests/e2e/test_mail_shield.py::$node" ;; esac
  if python3 -m pytest -q "$path" >"$log" 2>&1; then
    echo "PASS $name"
  else
    echo "FAIL $name"; tail -25 "$log" | sed 's/^/     /'; failed=1
  fi
  rm -f "$log"
done
exit $failed

#!/usr/bin/env bash
# Installs the real peers the tests run against, if missing: pebble (Let's Encrypt's test ACME
# server), dnsmasq (a real DNS server for good-bot verification), headless Chromium and its
# WebDriver (the browser proof), nginx and HAProxy (reference proxies), and the Python attack clients (aiohttp, requests) and
# OpenMetrics parser (prometheus-client), CrowdSec's custom and firewall bouncers, and Redis.
# Idempotent: a machine that has them installs nothing.
set -euo pipefail
missing=()
command -v pebble >/dev/null 2>&1 || missing+=(pebble)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# Mail peers (tests/e2e/mail_harness.py runs a private Postfix + Dovecot; sbin may be off PATH).
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || missing+=(postfix)
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
[ -x /usr/lib/dovecot/imap-login ] || missing+=(dovecot-imapd)
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v hydra >/dev/null 2>&1 || missing+=(hydra)
# Reference proxies for the request-smuggling corpus (tests/e2e/test_smuggling.py) and bench/.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# fail2ban's own filters and jails, read in place by the log watcher (tests/e2e/test_log_watcher.py)
# and the reference for bench/logs.sh.
[ -f /etc/fail2ban/filter.d/sshd.conf ] || missing+=(fail2ban)
# Shared state for several instances (crates/moat-cluster/tests, tests/e2e/test_cluster.py): the
# tests start their own redis-server on a loopback port.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The kernel enforcer (tests/e2e/test_nftables.py: nft in a network namespace made with ip).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
# The log watcher's journald source (crates/moat-logs/tests/source_journal.rs writes journal
# files with systemd-journal-remote and follows them with journalctl).
command -v journalctl >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/lib/systemd/systemd-journal-remote ] || missing+=(systemd-journal-remote)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ " ${missing[*]} " == *" postfix "* ]]; then
    # Postfix asks debconf questions on install: answer them beforehand.
    printf '%s\n' "postfix postfix/main_mailer_type select Local only" \
      "postfix postfix/mailname string mx.moat.test" | debconf-set-selections
  fi
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# CrowdSec's custom and firewall bouncers, fed Moat's decisions (tests/e2e/test_crowdsec.py).
# Without their recommended crowdsec: the bouncers poll Moat, not a CrowdSec Local API.
bouncers=()
command -v crowdsec-custom-bouncer >/dev/null 2>&1 || bouncers+=(crowdsec-custom-bouncer)
command -v crowdsec-firewall-bouncer >/dev/null 2>&1 || bouncers+=(crowdsec-firewall-bouncer)
if [ ${#bouncers[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root to apt-get install ${bouncers[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  [ ${#missing[@]} -gt 0 ] || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${bouncers[@]}" >/dev/null
fi
if ! python3 -c 'import aiohttp, requests, pytest, aiosmtplib, prometheus_client, h11, cryptography, schemathesis' 2>/dev/null; then
  python3 -m pip install -q -r "$(dirname "$0")/../tests/e2e/requirements.txt"
fi

"""Issue 19, item 4 (first part): CrowdSec's bouncers enforce Moat's decisions. Debian's
`crowdsec-custom-bouncer` polls the Local API subset on Moat's admin listener with its own key
and hands every ban Moat makes, and every ban Moat lifts, to a script, as it would from
CrowdSec's own Local API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest
import requests

from moat_harness import ADMIN_TOKEN, MAGIC_LINK, moat_bin, post_from, run_cli

KEY = "bouncer-key-0123456789"
CONFIG = f'[crowdsec]\nbouncer_keys = ["{KEY}"]\n'


def _bouncer(tmp_path, api_url: str, key: str = KEY):
    """The packaged custom bouncer, polling every second; its script appends its arguments."""
    binary = shutil.which("crowdsec-custom-bouncer")
    assert binary, "crowdsec-custom-bouncer is not installed (scripts/install-test-deps.sh)"
    calls = tmp_path / "calls.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    hook.chmod(0o755)
    cfg = tmp_path / "bouncer.yaml"
    cfg.write_text(f"""bin_path: {hook}
feed_via_stdin: false
total_retries: 0
scenarios_containing: []
scenarios_not_containing: []
origins: []
piddir: {tmp_path}/
update_frequency: 1s
cache_retention_duration: 10s
daemonize: false
log_mode: stdout
log_level: info
api_url: {api_url}/
api_key: {key}
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60602
""")
    proc = subprocess.Popen([binary, "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, calls


def _lines(calls) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def _wait_line(calls, pred, timeout: float = 15.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in _lines(calls):
            if pred(line):
                return line
        time.sleep(0.2)
    return None


def test_the_custom_bouncer_gets_moats_bans_and_their_removal(moat_factory, upstream, tmp_path):
    m = moat_factory(CONFIG)
    offender = "127.72.0.9"
    # A script on the sign-in route, five times: banned by Moat's own rules.
    for i in range(5):
        post_from(offender, m.url(MAGIC_LINK), json_body={"email": f"list{i}@example.com"})
    assert m.wait_for(lambda: any(b["scope"].startswith(offender) for b in m.bans()), timeout=5)
    assert m.cli("bans", "add", "192.0.2.0/24", "--reason", "by hand").returncode == 0

    proc, calls = _bouncer(tmp_path, m.admin_base)
    try:
        line = _wait_line(calls, lambda l: l.startswith(f"add {offender} "))
        assert line, f"the bouncer never added {offender}: {_lines(calls)}"
        verb, value, seconds, scenario, decision = line.split(" ", 4)
        assert int(seconds) > 0 and scenario.startswith("moat/"), line
        d = json.loads(decision)
        assert (d["type"], d["scope"], d["value"], d["origin"]) == ("ban", "Ip", offender, "moat"), d
        assert _wait_line(calls, lambda l: l.startswith("add 192.0.2.0/24 ")), _lines(calls)

        # A ban made while the bouncer runs reaches it; so does a lifted one.
        assert m.cli("bans", "add", "127.72.5.5").returncode == 0
        assert _wait_line(calls, lambda l: l.startswith("add 127.72.5.5 ")), _lines(calls)
        assert m.cli("bans", "rm", "192.0.2.0/24").returncode == 0
        assert _wait_line(calls, lambda l: l.startswith("del 192.0.2.0/24 ")), _lines(calls)
        # Each ban was handed over once, not on every poll.
        time.sleep(2.5)
        adds = [l.split(" ")[1] for l in _lines(calls) if l.startswith("add ")]
        assert sorted(adds) == sorted([offender, "192.0.2.0/24", "127.72.5.5"]), adds
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_local_api_answers_only_bouncer_keys(moat_factory, tmp_path):
    m = moat_factory(CONFIG)
    assert m.cli("bans", "add", "198.51.100.0/24").returncode == 0
    # Bouncers are given what the running instance enforces: it reads another process's write
    # within its decider's tick.
    from moat_harness import ADMIN_TOKEN
    assert m.wait_for(lambda: requests.get(m.admin_base + "/api/top", timeout=5,
                                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                      .json()["bans_active"] == 1, timeout=5)
    stream = m.admin_base + "/v1/decisions/stream?startup=true"
    assert requests.get(stream, timeout=5).status_code == 403
    assert requests.get(stream, headers={"X-Api-Key": "not-a-bouncer-key-at-all"}, timeout=5).status_code == 403
    # The admin token opens the admin API, not the bouncers' one; a bouncer key, nothing else.
    assert requests.get(stream, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5).status_code == 403
    assert requests.get(m.admin_base + "/api/bans", headers={"X-Api-Key": KEY}, timeout=5).status_code == 401

    r = requests.get(stream, headers={"X-Api-Key": KEY}, timeout=5)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["deleted"] is None
    assert [(d["scope"], d["value"]) for d in body["new"]] == [("Range", "198.51.100.0/24")], body
    # Nothing changed since: both lists are null, as CrowdSec sends them.
    r = requests.get(m.admin_base + "/v1/decisions/stream", headers={"X-Api-Key": KEY}, timeout=5)
    assert r.json() == {"new": None, "deleted": None}
    # Live mode: the bans covering one address.
    one = requests.get(m.admin_base + "/v1/decisions?ip=198.51.100.7", headers={"X-Api-Key": KEY}, timeout=5)
    assert [d["value"] for d in one.json()] == ["198.51.100.0/24"]
    none = requests.get(m.admin_base + "/v1/decisions?ip=203.0.113.1", headers={"X-Api-Key": KEY}, timeout=5)
    assert none.json() is None
    assert requests.post(stream, headers={"X-Api-Key": KEY}, timeout=5).status_code == 405
    # A bouncer that handles addresses only asks for them.
    r = requests.get(stream + "&scopes=ip", headers={"X-Api-Key": KEY}, timeout=5)
    assert r.json() == {"new": None, "deleted": None}, "the /24 is a Range, not an Ip"
    r = requests.get(stream + "&scopes=Ip,Range", headers={"X-Api-Key": KEY}, timeout=5)
    assert [d["value"] for d in r.json()["new"]] == ["198.51.100.0/24"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
                    reason="needs root, nft and ip (network namespaces)")
def test_the_firewall_bouncer_drops_moats_bans_in_the_kernel(tmp_path):
    """Debian's crowdsec-firewall-bouncer (nftables mode) in a network namespace of its own,
    polling a Moat in the same namespace: Moat's bans become elements of its set, and an unban
    takes the element out."""
    binary = shutil.which("crowdsec-firewall-bouncer")
    assert binary, "crowdsec-firewall-bouncer is not installed (scripts/install-test-deps.sh)"
    ns = f"moat-fwb-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True, timeout=10)
        state = tmp_path / "state"
        cfg = tmp_path / "moat.toml"
        cfg.write_text(f'[admin]\nlisten = "127.0.0.1:19791"\ntoken = "{ADMIN_TOKEN}"\n{CONFIG}')
        moat = subprocess.Popen(["ip", "netns", "exec", ns, str(moat_bin()), "run", "--listen", "127.0.0.1:18080",
                                 "--upstream", "http://127.0.0.1:9", "--state-dir", str(state), "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(moat)
        deadline = time.monotonic() + 20
        while not (state / "admin.addr").exists():
            assert time.monotonic() < deadline and moat.poll() is None, "moat did not start in the namespace"
            time.sleep(0.1)
        assert run_cli("bans", "add", "203.0.113.7", "--state-dir", str(state)).returncode == 0
        assert run_cli("bans", "add", "198.51.100.0/24", "--state-dir", str(state)).returncode == 0

        bcfg = tmp_path / "fw.yaml"
        bcfg.write_text(f"""mode: nftables
pid_dir: {tmp_path}/
update_frequency: 1s
daemonize: false
log_mode: stdout
log_level: info
api_url: http://127.0.0.1:19791/
api_key: {KEY}
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: crowdsec-blacklists
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60601
""")
        fw = subprocess.Popen(["ip", "netns", "exec", ns, binary, "-c", str(bcfg)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(fw)

        def ruleset() -> str:
            r = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True, text=True, timeout=10)
            return r.stdout

        deadline = time.monotonic() + 20
        while "203.0.113.7" not in ruleset():
            assert time.monotonic() < deadline and fw.poll() is None, (
                f"the firewall bouncer never set Moat's bans: {ruleset()}")
            time.sleep(0.2)
        assert "@crowdsec-blacklists" in ruleset() and "drop" in ruleset()
        # Debian 12's bouncer (0.0.25) keeps a Range as its first address only (its set has no
        # interval flag): it got the decision, as from CrowdSec's own API; docs/config.md says
        # what enforces ranges in the kernel instead.
        assert "198.51.100.0" in ruleset()
        assert run_cli("bans", "rm", "203.0.113.7", "--state-dir", str(state)).returncode == 0
        deadline = time.monotonic() + 20
        while "203.0.113.7" in ruleset():
            assert time.monotonic() < deadline, f"the unban never reached the kernel: {ruleset()}"
            time.sleep(0.2)
        assert "198.51.100.0" in ruleset()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", ns], timeout=10)

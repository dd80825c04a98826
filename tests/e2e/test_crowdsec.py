"""Issue 19, item 4 (first part): CrowdSec's bouncers enforce Moat's decisions. Debian's
`crowdsec-custom-bouncer` polls the Local API subset on Moat's admin listener with its own key
and hands every ban Moat makes, and every ban Moat lifts, to a script, as it would from
CrowdSec's own Local API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import requests

from moat_harness import MAGIC_LINK, post_from

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
    stream = m.admin_base + "/v1/decisions/stream?startup=true"
    assert requests.get(stream, timeout=5).status_code == 403
    assert requests.get(stream, headers={"X-Api-Key": "not-a-bouncer-key-at-all"}, timeout=5).status_code == 403
    # The admin token opens the admin API, not the bouncers' one; a bouncer key, nothing else.
    from moat_harness import ADMIN_TOKEN
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

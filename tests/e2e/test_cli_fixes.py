"""Issue 15, item 6: the bugs a new user found, each through the real binary.

1. `moat allow ADDR` lifted a ban on the whole /24 around ADDR; it now lifts only bans on ADDR
   (the allowlist already exempts ADDR from the prefix ban), and `moat allow list|rm` exist.
2. Rust debug text (`Some(…)`, `None`) in what users read: CLI output, JSON, log lines.
3. Flags with a fixed set of values accepted anything (`--log-format yaml`).
4. Commands that read state created an empty database where they were pointed by mistake.
5. `POST /api/bans` ignored its body and answered 200.
6. `moat trap --quarantine DIR` but `moat quarantine --dir DIR`: one name now, `--quarantine`.
"""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from moat_harness import ADMIN_TOKEN, MAGIC_LINK, get_from, moat_bin, post_from, run_cli
from trap_harness import Trap

AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN}
DEBUG_TEXT = re.compile(r"\bSome\(|\bNone\b")


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"{r.args} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return r


def no_debug_text(what: str, text: str) -> None:
    m = DEBUG_TEXT.search(text)
    assert m is None, f"Rust debug text {m.group(0)!r} in {what}:\n{text}"


def status_soon(m, ip: str, want: int, timeout: float = 4) -> bool:
    """A running Moat picks store changes up within about a second."""
    return m.wait_for(lambda: get_from(ip, m.url("/")).status == want, timeout=timeout, interval=0.2)


# ---------------------------------------------------------------------------------------------
# 1. moat allow


def test_allow_lifts_only_the_address_ban_and_list_and_rm_work(moat_factory):
    m = moat_factory()
    me, neighbour = "127.77.1.5", "127.77.1.6"
    ok(m.cli("bans", "add", "127.77.1.0/24"))
    ok(m.cli("bans", "add", me, "--ttl", "2h"))
    assert status_soon(m, me, 403) and status_soon(m, neighbour, 403)

    r = ok(m.cli("allow", me))
    assert status_soon(m, me, 200), f"{me} still refused after `moat allow {me}`"
    scopes = {b["scope"] for b in m.bans()}
    assert scopes == {"127.77.1.0/24"}, (
        f"`moat allow {me}` must lift the ban on {me} only, not the /24 around it: {scopes}")
    assert get_from(neighbour, m.url("/")).status == 403, "the /24 ban no longer holds for the rest"
    assert "127.77.1.0/24 stays banned" in r.stdout, r.stdout
    # Again with a reason: the entry's note is replaced.
    ok(m.cli("allow", me, "--reason", "my laptop"))

    # moat allow list: the entry with when and why.
    before_ms = time.time() * 1000 - 60_000
    entries = json.loads(ok(m.cli("allow", "list", "--json")).stdout)
    assert [(e["net"], e["note"]) for e in entries] == [(me, "my laptop")], entries
    assert isinstance(entries[0]["created_ms"], int) and entries[0]["created_ms"] > before_ms
    text = ok(m.cli("allow", "list")).stdout
    assert me in text and "my laptop" in text, text
    # The config flags may also come before the subcommand.
    assert me in ok(run_cli("allow", "--state-dir", str(m.state_dir), "list")).stdout

    # moat allow rm: off the allowlist, so the /24 ban applies to it again.
    r = ok(m.cli("allow", "rm", me))
    assert me in r.stdout
    assert status_soon(m, me, 403), f"{me} still let through after `moat allow rm {me}`"
    assert json.loads(ok(m.cli("allow", "list", "--json")).stdout) == []
    r = m.cli("allow", "rm", me)
    assert r.returncode == 1 and "not on the allowlist" in r.stdout, r.stdout + r.stderr

    # `moat allow ADDR` still works as before for a plain ban.
    ok(m.cli("bans", "add", "127.77.2.9"))
    assert status_soon(m, "127.77.2.9", 403)
    ok(m.cli("allow", "127.77.2.9"))
    assert status_soon(m, "127.77.2.9", 200)


# ---------------------------------------------------------------------------------------------
# 2. Rust debug text


def send_one_capture(trap: Trap) -> str:
    with smtplib.SMTP("127.0.0.1", trap.port, timeout=10) as s:
        s.ehlo("bot.example")
        s.user, s.password = "winner@prize-desk.test", "123456"
        assert s.auth("PLAIN", s.auth_plain)[0] == 235
        s.sendmail("winner@prize-desk.test", ["victim@victim.test"],
                   b"From: winner@prize-desk.test\r\nTo: victim@victim.test\r\nSubject: You won\r\n\r\n"
                   b"Claim at https://prizes-now.example/claim\r\n")
    deadline = time.monotonic() + 10
    while not trap.iocs("domain"):
        assert time.monotonic() < deadline, "the capture was not analysed in time"
        time.sleep(0.1)
    return trap.messages()[0]["id"]


def test_cli_output_has_no_rust_debug_text(tmp_path):
    state = tmp_path / "state"
    ok(run_cli("bans", "add", "192.0.2.7", "--ttl", "1h", "--state-dir", str(state)))
    ok(run_cli("bans", "add", "198.51.100.0/24", "--state-dir", str(state)))
    ok(run_cli("allow", "203.0.113.9", "--state-dir", str(state)))
    for args in (("bans", "list"), ("bans", "list", "--json"), ("allow", "list"),
                 ("allow", "list", "--json")):
        no_debug_text("moat " + " ".join(args), ok(run_cli(*args, "--state-dir", str(state))).stdout)
    bans = json.loads(ok(run_cli("bans", "list", "--json", "--state-dir", str(state))).stdout)
    expiry = {b["scope"]: b["expires_ms"] for b in bans}
    assert isinstance(expiry["192.0.2.7"], int) and expiry["198.51.100.0/24"] is None, bans

    trap = Trap()
    try:
        mid = send_one_capture(trap)
        q = ("quarantine", "--quarantine", str(trap.quarantine))
        for args in (("list",), ("list", "--json"), ("show", mid), ("show", mid, "--json"),
                     ("iocs",), ("iocs", "--json"), ("logins",), ("logins", "--json"),
                     ("campaigns",), ("campaigns", "--json")):
            no_debug_text("moat quarantine " + " ".join(args), ok(run_cli(*q, *args)).stdout)
    finally:
        trap.stop()
    no_debug_text("moat trap's log", trap.log.read_text(errors="replace"))

    cfg = tmp_path / "mail.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "mail-state"}"\n'
                   '[mail]\npolicy_listen = "127.0.0.1:10040"\nrecipients = ["me@example.org"]\n')
    r = run_cli("doctor", "mail", "--config", str(cfg), "--dovecot-config", str(tmp_path / "none.conf"))
    assert r.returncode in (0, 1), r.stderr
    no_debug_text("moat doctor mail", r.stdout + r.stderr)


def test_check_output_has_no_rust_debug_text(tmp_path):
    cfg = tmp_path / "moat.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n'
                   '[mail]\npolicy_listen = "127.0.0.1:10040"\n'
                   f'[trap]\nquarantine_dir = "{tmp_path / "q"}"\n'
                   '[[trap.listener]]\nlisten = "127.0.0.1:2525"\n')
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    no_debug_text("moat check", r.stdout)


def test_the_ban_log_line_has_numbers_not_debug_text(moat_factory):
    m = moat_factory()
    offender = "127.78.0.9"
    for i in range(5):
        post_from(offender, m.url(MAGIC_LINK), json_body={"email": f"l{i}@example.com"})
    bans = m.wait_for(lambda: [o for o in m.log_objects() if o.get("message") == "ban"], timeout=5)
    assert bans, "no ban log line"
    for o in bans:
        assert isinstance(o.get("expires_ms"), int), f"expires_ms is not a number: {o}"
    for o in m.log_objects():
        no_debug_text("a log line", json.dumps(o))


# ---------------------------------------------------------------------------------------------
# 3. Flags with a fixed set of values


def test_flags_with_fixed_values_are_checked(tmp_path):
    cases = [
        ("trap", "--listen", "127.0.0.1:0", "--quarantine", str(tmp_path / "q"), "--log-format", "yaml"),
        ("run", "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0",
         "--state-dir", str(tmp_path / "s"), "--log-format", "yaml"),
    ]
    for args in cases:
        try:
            r = run_cli(*args, timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`moat {' '.join(args)}` started instead of refusing --log-format yaml")
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert "invalid value 'yaml' for '--log-format" in r.stderr, r.stderr
        assert "json" in r.stderr and "text" in r.stderr, r.stderr
    r = run_cli("check", "--preset", "joomla")
    assert r.returncode == 2 and "invalid value 'joomla' for '--preset" in r.stderr, r.stderr
    assert "ghost" in r.stderr and "generic-form" in r.stderr, r.stderr
    r = run_cli("quarantine", "--quarantine", str(tmp_path), "iocs", "--kind", "urls")
    assert r.returncode == 2 and "invalid value 'urls' for '--kind" in r.stderr, r.stderr
    assert "url" in r.stderr and "client-ip" in r.stderr, r.stderr
    assert not (tmp_path / "q").exists() and not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------------
# 4. Reading commands and a missing state directory


def test_reading_commands_fail_where_there_is_no_state_and_create_nothing(tmp_path):
    nope = tmp_path / "nope"
    for flag in ("--dir", "--quarantine"):
        for args in (("list",), ("show", "0000000000000000"), ("iocs",), ("campaigns",),
                     ("logins",), ("report",), ("report", "--json")):
            r = run_cli("quarantine", flag, str(nope), *args)
            assert r.returncode != 0, f"moat quarantine {flag} {nope} {' '.join(args)}: {r.stdout}"
            assert str(nope) in r.stderr, r.stderr
            assert not nope.exists(), f"moat quarantine {' '.join(args)} created {nope}"
    # A directory that exists but holds no quarantine: nothing made in it either.
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (("list",), ("report",)):
        r = run_cli("quarantine", "--quarantine", str(empty), *args)
        assert r.returncode != 0 and str(empty / "index.sqlite") in r.stderr, r.stderr
    assert list(empty.iterdir()) == []

    for args in (("bans", "list"), ("bans", "list", "--json"), ("bans", "rm", "192.0.2.1"),
                 ("allow", "list"), ("allow", "rm", "192.0.2.1")):
        r = run_cli(*args, "--state-dir", str(nope))
        assert r.returncode != 0, f"moat {' '.join(args)} --state-dir {nope}: {r.stdout}"
        assert str(nope / "moat.db") in r.stderr, r.stderr
        assert not nope.exists(), f"moat {' '.join(args)} created {nope}"
    # Without flags: the default directory, named, and not created in the working directory.
    work = tmp_path / "work"
    work.mkdir()
    for args in (("bans", "list"), ("quarantine", "list"), ("quarantine", "report")):
        r = subprocess.run([str(moat_bin()), *args], cwd=work, capture_output=True, text=True,
                           timeout=20)
        assert r.returncode != 0 and "moat-state" in r.stderr, (args, r.stdout, r.stderr)
    assert list(work.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# 5. The admin API's bans


def test_admin_api_adds_lists_and_lifts_bans(moat_factory):
    m = moat_factory()
    api = m.admin_base + "/api/bans"
    one, net, other = "127.88.0.9", "127.88.1.0/24", "127.88.1.20"

    r = requests.post(api, json={"scope": one}, timeout=5)
    assert r.status_code == 401
    assert get_from(one, m.url("/")).status == 200

    t0 = time.time() * 1000
    r = requests.post(api, headers=AUTH, json={"scope": one, "duration": "1h", "reason": "api test"},
                      timeout=5)
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    ban = r.json()
    assert (ban["scope"], ban["reason"], ban["origin"], ban["verdict"]) == (one, "api test", "manual", "ban")
    assert isinstance(ban["expires_ms"], int) and abs(ban["expires_ms"] - (t0 + 3_600_000)) < 60_000, ban
    assert r.headers["location"] == f"/api/bans/{one}"
    assert status_soon(m, one, 403), "a ban added through POST /api/bans was not enforced"

    r = requests.post(api, headers=AUTH, data=json.dumps({"scope": net}), timeout=5)
    assert r.status_code == 201 and r.json()["expires_ms"] is None, r.text
    assert r.json()["reason"] == "manual ban"
    assert status_soon(m, other, 403)

    listed = requests.get(api, headers=AUTH, timeout=5)
    assert listed.status_code == 200
    assert {b["scope"] for b in listed.json()} == {one, net}
    assert {b["scope"] for b in m.bans()} == {one, net}, "the CLI sees what the API added"

    # Bad input: 400 with a JSON error, nothing added.
    for body in ("not json", "[]", "{}", json.dumps({"scope": "nope"}),
                 json.dumps({"scope": "127.88.2.1", "duration": "soon"}),
                 json.dumps({"scope": "127.88.2.1", "duration": "0s"}),
                 json.dumps({"scope": "127.88.2.1", "ttl": "1h"}),
                 json.dumps({"scope": 5})):
        r = requests.post(api, headers={**AUTH, "Content-Type": "application/json"}, data=body, timeout=5)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json" and r.json()["error"], (body, r.text)
    r = requests.post(api, headers=AUTH, data=b"x" * 100_000, timeout=5)
    assert r.status_code == 413, r.status_code

    # An allowlisted address: the ban would never apply, so it is refused.
    ok(m.cli("allow", "127.88.3.3"))
    r = requests.post(api, headers=AUTH, json={"scope": "127.88.3.3"}, timeout=5)
    assert r.status_code == 409 and "allowlist" in r.json()["error"], r.text
    assert {b["scope"] for b in m.bans()} == {one, net}

    # Other methods: 405 with Allow.
    r = requests.put(api, headers=AUTH, json={"scope": one}, timeout=5)
    assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    r = requests.post(f"{api}/{one}", headers=AUTH, timeout=5)
    assert r.status_code == 405 and r.headers["allow"] == "DELETE"
    r = requests.delete(api, headers=AUTH, timeout=5)
    assert r.status_code == 405

    # DELETE /api/bans/{scope}, URL-encoded.
    assert requests.delete(f"{api}/{one}", timeout=5).status_code == 401
    r = requests.delete(f"{api}/{urllib.parse.quote(net, safe='')}", headers=AUTH, timeout=5)
    assert r.status_code == 200 and r.json()["scope"] == net, r.text
    assert status_soon(m, other, 200), "a ban lifted through DELETE /api/bans was still enforced"
    r = requests.delete(f"{api}/{urllib.parse.quote(net, safe='')}", headers=AUTH, timeout=5)
    assert r.status_code == 404 and r.json()["error"], r.text
    r = requests.delete(f"{api}/{one}", headers=AUTH, timeout=5)
    assert r.status_code == 200
    assert status_soon(m, one, 200)
    r = requests.delete(f"{api}/not-an-address", headers=AUTH, timeout=5)
    assert r.status_code == 400
    assert m.bans() == []


# ---------------------------------------------------------------------------------------------
# 6. One name for the quarantine directory


def test_trap_and_quarantine_take_the_same_flag():
    trap = Trap()
    try:
        send_one_capture(trap)
        for flag in ("--dir", "--quarantine"):
            r = ok(run_cli("quarantine", flag, str(trap.quarantine), "list", "--json"))
            assert len(json.loads(r.stdout)) == 1, r.stdout
        # Global: after the subcommand too.
        r = ok(run_cli("quarantine", "logins", "--json", "--quarantine", str(trap.quarantine)))
        assert json.loads(r.stdout), r.stdout
    finally:
        trap.stop()
    helps = ok(run_cli("quarantine", "--help")).stdout
    assert "--quarantine <DIR>" in helps, helps
    assert "--quarantine" in ok(run_cli("trap", "--help")).stdout


def test_docs_name_the_quarantine_flag_one_way():
    root = Path(__file__).resolve().parents[2]
    for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        assert "quarantine --dir" not in p.read_text(), f"{p} still spells `moat quarantine --dir`"

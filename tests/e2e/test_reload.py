"""Issue 15: reload without a restart. SIGHUP (and `moat reload`) re-read the config, rules and
presets; open connections, bans and rate-limit counters survive; a config with errors changes
nothing. Before, SIGHUP ended the process (exit 129)."""

from __future__ import annotations

import http.client
import signal
import time

from moat_harness import CHROME_UA, MAGIC_LINK, config_text, get_from, post_from

RULE = """
[[rule]]
id = "no-{path}"
expression = 'http.request.uri.path eq "/{path}"'
action = "block"
"""
# Three GETs of /counted per address and hour; a reload must not give an address a fresh three.
LIMIT = """
[[rate_limit]]
id = "counted"
expression = 'http.request.uri.path eq "/counted"'
key = "ip"
requests = 3
period = "1h"
action = "block"
"""


def keepalive_get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path, headers={"User-Agent": CHROME_UA})
    r = conn.getresponse()
    r.read()
    return r.status


def test_sighup_applies_a_new_rule_and_keeps_connections_bans_and_counters(moat_factory, upstream):
    m = moat_factory(extra_config=LIMIT + RULE.format(path="old"))
    offender, counted, person = "127.67.0.9", "127.67.1.9", "127.67.2.9"
    for i in range(5):
        assert post_from(offender, m.url(MAGIC_LINK), json_body={"email": f"l{i}@example.com"}).status == 201
    assert m.wait_for(lambda: get_from(offender, m.url("/")).status == 403, timeout=5), "no ban to keep"
    assert [get_from(counted, m.url("/counted")).status for _ in range(2)] == [200, 200]

    conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10, source_address=(person, 0))
    assert keepalive_get(conn, "/new") == 200
    assert keepalive_get(conn, "/old") == 403
    local = conn.sock.getsockname()

    m.config_path.write_text(config_text(LIMIT + RULE.format(path="new")))
    m.proc.send_signal(signal.SIGHUP)
    assert m.wait_for(lambda: any(o.get("message") == "config reloaded" for o in m.log_objects()), timeout=5), (
        "no 'config reloaded' line after SIGHUP")
    assert m.proc.poll() is None, f"SIGHUP ended moat ({m.proc.returncode})"

    # The same connection meets the new rule on its next request; the old rule is gone.
    assert keepalive_get(conn, "/new") == 403
    assert keepalive_get(conn, "/old") == 200
    assert conn.sock is not None and conn.sock.getsockname() == local, "the connection was not kept"
    conn.close()
    # The ban and the counter survived: one request left for `counted`, then the limit.
    assert get_from(offender, m.url("/")).status == 403
    assert [get_from(counted, m.url("/counted")).status for _ in range(2)] == [200, 403]


def test_a_broken_config_changes_nothing(moat_factory):
    m = moat_factory(extra_config=RULE.format(path="old"))
    m.config_path.write_text(config_text(RULE.format(path="new") + "\n[[rule]]\nid = \"x\"\nexpression = 'http.nope eq 1'\naction = \"block\"\n"))
    m.proc.send_signal(signal.SIGHUP)
    assert m.wait_for(lambda: any("not reloaded" in o.get("message", "") for o in m.log_objects()), timeout=5), (
        "no log line saying the config was not reloaded")
    errors = [o for o in m.log_objects() if "not reloaded" in o.get("message", "")]
    assert "http.nope" in errors[-1].get("error", "") and ":" in errors[-1]["error"], errors[-1]
    assert m.proc.poll() is None
    assert get_from("127.67.3.9", m.url("/old")).status == 403, "the running config changed"
    assert get_from("127.67.3.9", m.url("/new")).status == 200


def test_moat_reload_says_what_it_did(moat_factory):
    m = moat_factory(extra_config=RULE.format(path="old"))
    m.config_path.write_text(config_text(RULE.format(path="new")))
    args = ("--config", str(m.config_path))
    r = m.cli("reload", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("reloaded: "), r.stdout
    assert get_from("127.67.4.9", m.url("/new")).status == 403
    # An error is shown here, with file and line, and nothing changes there.
    m.config_path.write_text(config_text("[[rule]]\nid = \"x\"\nexpression = 'http.nope eq 1'\naction = \"block\"\n"))
    r = m.cli("reload", *args)
    assert r.returncode == 1
    assert f"{m.config_path}:" in r.stderr and "not reloaded" in r.stderr, r.stderr
    assert get_from("127.67.4.9", m.url("/new")).status == 403
    time.sleep(0.1)
    assert m.proc.poll() is None

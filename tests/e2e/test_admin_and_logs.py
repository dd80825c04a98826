"""The admin listener (token-protected metrics) and the JSON decision log on stdout."""

from __future__ import annotations

import re
from collections import Counter

import requests

from moat_harness import (
    COHORT_PER_ADDRESS,
    NO_ACTION_PROOFS,
    ADMIN_TOKEN,
    CHROME_UA,
    MAGIC_LINK,
    address_pool,
    cleared_headers,
    post_from,
)


def metric(text: str, rule: str, action: str) -> int | None:
    m = re.search(
        rf'^moat_http_decisions_total\{{rule="{re.escape(rule)}",action="{re.escape(action)}"\}} (\d+)$',
        text, re.M)
    return int(m.group(1)) if m else None


def test_metrics_need_the_token_and_count_decisions(moat, upstream):
    url = moat.admin_base + "/metrics"
    assert requests.get(moat.admin_base + "/healthz", timeout=5).status_code == 200

    for headers in ({}, {"Authorization": "Bearer " + "x" * len(ADMIN_TOKEN)},
                    {"Authorization": "Bearer " + ADMIN_TOKEN[:-1]},
                    {"Authorization": ADMIN_TOKEN},
                    {"Authorization": "Basic " + ADMIN_TOKEN}):
        r = requests.get(url, headers=headers, timeout=5)
        assert r.status_code == 401, f"/metrics with {headers} answered {r.status_code}"
        assert "moat_http_decisions_total" not in r.text

    auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
    before = requests.get(url, headers=auth, timeout=5)
    assert before.status_code == 200
    assert metric(before.text, "ghost-script-user-agent", "decoy") in (None, 0)

    # The attack: 7 script requests from 7 addresses.
    for i, ip in enumerate(address_pool(7, first_octets=(50,), per_prefix=1)):
        r = post_from(ip, moat.url(MAGIC_LINK), json_body={"email": f"m{i}@example.com"})
        assert r.status == 201
    assert upstream.magic_links() == []

    r = requests.get(url, headers=auth, timeout=5)
    assert r.status_code == 200
    n = metric(r.text, "ghost-script-user-agent", "decoy")
    assert n == 7, (
        f'moat_http_decisions_total{{rule="ghost-script-user-agent",action="decoy"}} is {n}, '
        f"expected 7:\n{r.text}")
    # The metrics endpoint is on the admin listener only, not proxied to the site.
    assert requests.get(moat.url("/metrics"), headers=auth, timeout=5).status_code == 200
    assert upstream.seen("/metrics"), "GET /metrics on the public listener should reach the app"


def test_every_decision_is_one_json_log_line(moat_factory, upstream):
    # Its cleared clients have no page script: no per-action proofs asked of them here; and
    # they never click a sign-in link, so each address is its own cohort (test_cohorts.py).
    moat = moat_factory(NO_ACTION_PROOFS + COHORT_PER_ADDRESS)
    base = moat.base
    expected = Counter()

    # Script user agents.
    for i in range(3):
        ip = f"127.60.{i}.10"
        post_from(ip, moat.url(MAGIC_LINK), json_body={"email": f"s{i}@example.com"})
        expected[(ip, "ghost-script-user-agent", "decoy")] += 1
    # A copied Chrome user agent without Origin, and with Origin but no sec-* headers.
    for i in range(2):
        ip = f"127.61.{i}.10"
        post_from(ip, moat.url(MAGIC_LINK), headers={"User-Agent": CHROME_UA},
                  json_body={"email": f"o{i}@example.com"})
        expected[(ip, "ghost-no-origin", "decoy")] += 1
    for i in range(2):
        ip = f"127.62.{i}.10"
        post_from(ip, moat.url(MAGIC_LINK), headers={"User-Agent": CHROME_UA, "Origin": base},
                  json_body={"email": f"c{i}@example.com"})
        expected[(ip, "ghost-headers-contradict-user-agent", "decoy")] += 1
    # Browser requests for one mailbox from 5 addresses: 3 pass silently, 2 hit the limit.
    for i in range(5):
        ip = f"127.63.{i}.10"
        post_from(ip, moat.url(MAGIC_LINK), headers=cleared_headers(base, ip),
                  json_body={"email": "Target@Example.com"})
        if i >= 3:
            expected[(ip, "ghost-per-email", "decoy")] += 1
    # Browser sign-ups and page views: no decision, no decision line.
    for i in range(4):
        ip = f"127.64.{i}.10"
        post_from(ip, moat.url(MAGIC_LINK), headers=cleared_headers(base, ip),
                  json_body={"email": f"fine{i}@example.com"})
        requests.get(moat.url("/"), timeout=5)

    total = sum(expected.values())
    assert len(upstream.magic_links()) == 3 + 4
    moat.wait_for(lambda: len(moat.decisions()) >= total, timeout=3)
    decisions = moat.decisions()  # also fails on any non-JSON stdout line

    for d in decisions:
        for f in ("client", "rule", "action", "key"):
            assert f in d, f"decision line without {f!r}: {d}"
    got = Counter((d["client"], d["rule"], d["action"]) for d in decisions)
    assert got == expected, (
        f"decision lines differ from the decisions taken\nmissing: {expected - got}\n"
        f"unexpected: {got - expected}")

    per_email = [d for d in decisions if d["rule"] == "ghost-per-email"]
    assert {d["key"] for d in per_email} == {"target@example.com"}, per_email
    for d in decisions:
        assert d.get("path") == MAGIC_LINK and d.get("method") == "POST", d

"""Issue 15: `moat top` shows the live top rules, clients and networks from the admin API
(`GET /api/top`), counting every decision, including those the bounded log only summarised."""

from __future__ import annotations

import json

import requests

from moat_harness import ADMIN_TOKEN, MAGIC_LINK, address_pool, session_from

SCRIPT_UA = {"User-Agent": "python-requests/2.32.3"}


def post_from(ip: str, url: str, n: int) -> None:
    s = session_from(ip)
    for i in range(n):
        r = s.post(url, json={"email": f"victim{i}@example.com"}, headers=SCRIPT_UA, timeout=5)
        assert r.status_code in (201, 403, 429), r.status_code


def test_top_names_the_busiest_rule_client_and_network(moat_factory, tmp_path):
    m = moat_factory()
    heavy = "127.10.0.10"
    # 30 addresses in three /24s, 4 scripted sends each; one of them 20 more (and so more
    # than the 10 a minute the log writes one by one for a rule and client).
    pool = address_pool(30, first_octets=(10,), per_prefix=10)
    for ip in pool:
        post_from(ip, m.url(MAGIC_LINK), 4)
    post_from(heavy, m.url(MAGIC_LINK), 20)

    args = ("--config", str(m.config_path))
    r = m.cli("top", "--once", "--json", "-n", "3", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    top = json.loads(r.stdout)
    print(json.dumps(top, indent=1))
    assert top["decisions"] >= 30 * 4 + 20
    assert len(top["clients"]) == 3 and len(top["networks"]) == 3
    assert top["clients"][0]["client"] == heavy
    assert top["clients"][0]["count"] >= 24
    assert top["clients"][0]["state"] in ("clear", "banned")
    # The heavy address's network leads: 10 addresses, 4 each plus the heavy one's 20.
    assert top["networks"][0]["network"] == "127.10.0.0/24"
    assert top["networks"][0]["clients"] == 10
    assert top["networks"][0]["count"] >= 60
    # The top rule is the one the log names for the scripted sends, with its action.
    logged = [d for d in m.decisions() if d.get("client") == heavy and d.get("message") == "decision"]
    assert logged, "no decision lines for the heavy client"
    assert top["rules"][0]["rule"] == logged[0]["rule"]
    assert top["rules"][0]["action"] == logged[0]["action"]
    # Every address sent 4 before any ban; the heavy one's later sends may be counted under
    # the rule for banned clients. Every decision is under some rule.
    assert top["rules"][0]["count"] >= 30 * 4
    assert sum(r["count"] for r in top["rules"]) == top["decisions"]

    # The screen a person reads.
    r = m.cli("top", "--once", "-n", "3", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("moat top: "), r.stdout
    for want in (heavy, "127.10.0.0/24", logged[0]["rule"], "RULE", "CLIENT", "NETWORK"):
        assert want in r.stdout, r.stdout


def test_the_top_api_checks_its_query_and_method(moat):
    h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = moat.admin_base
    assert requests.get(f"{base}/api/top", timeout=5).status_code == 401
    r = requests.get(f"{base}/api/top?n=2", headers=h, timeout=5)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["decisions"] == 0 and r.json()["rules"] == []
    for q in ("n=0", "n=101", "n=two", "limit=5"):
        r = requests.get(f"{base}/api/top?{q}", headers=h, timeout=5)
        assert r.status_code == 400, q
        assert "error" in r.json(), q
    r = requests.post(f"{base}/api/top", headers=h, timeout=5)
    assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_top_without_a_running_moat_says_where_it_looked_and_creates_nothing(moat_binary, tmp_path):
    from moat_harness import run_cli

    state = tmp_path / "no-such-state"
    r = run_cli("top", "--once", "--state-dir", str(state))
    assert r.returncode != 0
    assert str(state) in r.stderr, r.stderr
    assert not state.exists()
    r = run_cli("top", "--once", "-n", "0", "--state-dir", str(state))
    assert r.returncode == 2 and "-n" in r.stderr, r.stderr

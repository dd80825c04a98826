"""Issue 19, item 4: the bans as plain files other programs load, with an ETag. Each export is
loaded by the program it is for: `nft -f` in a network namespace (twice: a reload replaces),
Postfix's own `postmap -q` over the cidr table, `nginx -t` with the deny list included. The
allowlist wins in every one."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
import requests

from moat_harness import ADMIN_TOKEN

KEY = "bouncer-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def export(m, name: str, **headers) -> requests.Response:
    return requests.get(f"{m.admin_base}/api/exports/{name}", headers={**AUTH, **headers}, timeout=5)


@pytest.fixture
def banned(moat_factory):
    m = moat_factory(f'[crowdsec]\nbouncer_keys = ["{KEY}"]\n')
    for scope in ("203.0.113.7", "198.51.100.0/24", "192.0.2.0/24", "2001:db8:1::/64"):
        assert m.cli("bans", "add", scope, "--ttl", "1h").returncode == 0
    # Inside a banned /24: the allowlist wins, so no export may carry that /24.
    assert m.cli("allow", "192.0.2.10").returncode == 0
    # Once the running instance has read the allowlist entry, the /24 is out of every export.
    assert m.wait_for(lambda: "203.0.113.7" in (t := export(m, "ips.txt").text) and "192.0.2.0/24" not in t,
                      timeout=5), export(m, "ips.txt").text
    return m


def test_exports_carry_the_bans_with_an_etag(banned):
    m = banned
    r = export(m, "ips.txt")
    assert r.status_code == 200
    assert r.text.splitlines() == ["198.51.100.0/24", "203.0.113.7", "2001:db8:1::/64"], r.text
    etag = r.headers["ETag"]
    assert export(m, "ips.txt", **{"If-None-Match": etag}).status_code == 304
    # A new ban changes the file and its tag.
    assert m.cli("bans", "add", "203.0.113.8", "--ttl", "1h").returncode == 0
    assert m.wait_for(lambda: export(m, "ips.txt", **{"If-None-Match": etag}).status_code == 200, timeout=5)
    assert export(m, "ips.txt").headers["ETag"] != etag

    # Not open without the admin token or a bouncer key.
    assert requests.get(f"{m.admin_base}/api/exports/ips.txt", timeout=5).status_code == 401
    assert requests.get(f"{m.admin_base}/api/exports/ips.txt", headers={"X-Api-Key": "x" * 20},
                        timeout=5).status_code == 401
    by_key = requests.get(f"{m.admin_base}/api/exports/nginx.conf", headers={"X-Api-Key": KEY}, timeout=5)
    assert by_key.status_code == 200 and "deny 203.0.113.7;" in by_key.text
    assert export(m, "nope").status_code == 404


def test_postfix_reads_the_cidr_table(banned, tmp_path):
    if shutil.which("postmap") is None:
        pytest.skip("needs Postfix (scripts/install-test-deps.sh installs it)")
    table = tmp_path / "moat.cidr"
    table.write_text(export(banned, "postfix.cidr").text)

    def query(addr: str) -> subprocess.CompletedProcess:
        return subprocess.run(["postmap", "-q", addr, f"cidr:{table}"], capture_output=True, text=True, timeout=10)

    assert query("203.0.113.7").stdout.strip() == "REJECT banned by Moat"
    assert query("198.51.100.77").stdout.strip() == "REJECT banned by Moat"
    assert query("2001:db8:1::9").stdout.strip() == "REJECT banned by Moat"
    allowed = query("192.0.2.10")
    assert allowed.returncode == 1 and allowed.stdout == "", "the allowlist wins"
    assert query("203.0.113.99").returncode == 1


def test_nginx_accepts_the_deny_list(banned, tmp_path):
    if shutil.which("nginx") is None:
        pytest.skip("needs nginx")
    deny = tmp_path / "moat-deny.conf"
    deny.write_text(export(banned, "nginx.conf").text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:1;
        include {deny};
    }}
}}
""")
    r = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
                    reason="needs root, nft and ip (network namespaces)")
def test_nft_loads_the_sets_and_a_reload_replaces_them(banned, tmp_path):
    ns = f"moat-exp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        def load(text: str) -> None:
            f = tmp_path / "moat.nft"
            f.write_text(text)
            r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(f)], capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, r.stderr + text

        def members(s: str) -> str:
            r = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "set", "inet", "moat_export", s],
                               capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, r.stderr
            return r.stdout

        load(export(banned, "nftables.nft").text)
        assert "203.0.113.7" in members("ban4") and "198.51.100.0/24" in members("ban4")
        assert "192.0.2.0" not in members("ban4")
        assert "2001:db8:1::/64" in members("ban6")
        assert banned.cli("bans", "rm", "203.0.113.7").returncode == 0
        assert banned.wait_for(lambda: "203.0.113.7" not in export(banned, "ips.txt").text, timeout=5)
        load(export(banned, "nftables.nft").text)
        assert "203.0.113.7" not in members("ban4") and "198.51.100.0/24" in members("ban4")
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10)

"""Issue 15: Moat on Fly.io. Requests reach a Fly Machine through Fly's proxy, from a private
address, with the visitor's address in `Fly-Client-IP`. With `FLY_APP_NAME` set (as on every
Machine) Moat trusts that header from Fly's private ranges with no configuration; elsewhere a
`client_ip_headers` without `trusted_proxies` is refused, because every visitor would then look
like the proxy and one script's offences would ban them all.

Fly's proxy is played by a network namespace the test creates, joined to this one by a veth
pair on 172.16.77.0/24 (inside Fly's 172.16.0.0/12): its requests come from 172.16.77.2, a
private address, as the proxy's do on a Machine. Nothing leaves the machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap

import pytest

from moat_harness import MAGIC_LINK, moat_bin

HOST_IP, PROXY_IP = "172.16.77.1", "172.16.77.2"
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/131.0.0.0 Safari/537.36")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


@pytest.fixture
def fly_proxy_ns():
    """A namespace standing in for Fly's proxy: yields its name; removed at teardown."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"moatfly{tag}", f"mfh{tag}", f"mfn{tag}"
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{PROXY_IP}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", ns, check=False)


def via_proxy(ns: str, url: str, client_ip: str, *, method: str = "GET", ua: str = CHROME_UA,
              json_body=None) -> tuple[int, str]:
    """One request from inside the namespace (python-requests), as Fly's proxy forwards it."""
    script = textwrap.dedent("""
        import json, sys, requests
        a = json.loads(sys.argv[1])
        r = requests.request(a["method"], a["url"], json=a["json"], timeout=10,
                             headers={"Fly-Client-IP": a["client"], "User-Agent": a["ua"],
                                      "Via": "1.1 fly.io", "Fly-Region": "ams"})
        print(json.dumps([r.status_code, r.text[:200]]))
    """)
    arg = json.dumps({"method": method, "url": url, "json": json_body, "client": client_ip, "ua": ua})
    r = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", script, arg],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    status, body = json.loads(r.stdout)
    return status, body


def test_on_fly_the_scripts_are_banned_and_not_the_proxy(moat_factory, upstream, fly_proxy_ns):
    m = moat_factory(listen=f"{HOST_IP}:0", env={"FLY_APP_NAME": "ghost-blog"})
    start = json.loads(next(l for l in m.stdout_lines if "moat is running" in l))
    assert "Fly-Client-IP" in start.get("client_ip", "") and "FLY_APP_NAME" in start["client_ip"], start
    base = f"http://{HOST_IP}:{m.port}"
    script, person = "198.51.100.7", "203.0.113.20"

    for i in range(5):
        status, body = via_proxy(fly_proxy_ns, base + MAGIC_LINK, script, method="POST",
                                 ua="python-requests/2.32.3", json_body={"email": f"victim{i}@example.com"})
        assert (status, body) == (201, "Created."), (status, body)
    assert upstream.magic_links() == []

    def banned():
        scopes = {b["scope"] for b in m.bans()}
        return scopes if scopes & {script, f"{script}/32"} else None
    scopes = m.wait_for(banned, timeout=5)
    assert scopes, f"the script's address was not banned: {m.bans()}"
    assert not any(s.startswith("172.16.") for s in scopes), f"the proxy was banned: {scopes}"
    assert via_proxy(fly_proxy_ns, base + "/", script)[0] == 403
    # A person behind the same proxy is not touched by the script's ban.
    assert via_proxy(fly_proxy_ns, base + "/", person)[0] == 200


def test_off_fly_a_client_ip_header_without_trusted_proxies_is_refused(tmp_path):
    cfg = tmp_path / "moat.toml"
    cfg.write_text('[server]\nupstream = "http://127.0.0.1:2368"\nclient_ip_headers = ["fly-client-ip"]\n')
    env = {k: v for k, v in os.environ.items() if k != "FLY_APP_NAME"}
    r = subprocess.run([str(moat_bin()), "check", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20, env=env)
    assert r.returncode != 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert f"{cfg}:3:" in out and "server.client_ip_headers" in out and "trusted_proxies" in out, out
    # The same file on Fly is fine: Fly's proxy is trusted by itself.
    r = subprocess.run([str(moat_bin()), "check", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20, env={**env, "FLY_APP_NAME": "ghost-blog"})
    assert r.returncode == 0, r.stdout + r.stderr

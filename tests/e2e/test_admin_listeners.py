"""Issue 15: the admin listener never takes the shields down with it, and metrics reach a
scraper that cannot send a token. Before, a taken admin port (9090, Prometheus's own) stopped
the whole process, mail shield included, and /metrics always needed the bearer token."""

from __future__ import annotations

import socket
import subprocess

import requests

from moat_harness import ADMIN_TOKEN, free_port, run_with_config


def run_moat(tmp_path, upstream_url: str, admin: str) -> tuple[subprocess.Popen, dict]:
    return run_with_config(tmp_path, f'[admin]\n{admin}\ntoken = "{ADMIN_TOKEN}"\n', upstream_url,
                           ("--preset", "ghost"))


def test_a_taken_admin_port_leaves_the_shield_running(upstream, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    p, out = run_moat(tmp_path, upstream.url, f'listen = "127.0.0.1:{port}"')
    try:
        assert any("no admin listener" in l for l in out["lines"]), "the taken port was not reported"
        assert out["start"]["admin"] == ""
        http = out["start"]["http"]
        r = requests.get(f"http://{http}/", timeout=5)
        assert r.status_code == 200, "the shield serves without its admin listener"
    finally:
        p.kill()
        taken.close()


def test_metrics_without_a_token_on_their_own_listener_only(upstream, tmp_path):
    mport = free_port()
    p, out = run_moat(tmp_path, upstream.url, f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:{mport}"')
    try:
        assert out["start"]["metrics"] == f"127.0.0.1:{mport}"
        r = requests.get(f"http://127.0.0.1:{mport}/metrics", timeout=5)
        assert r.status_code == 200 and "# TYPE" in r.text
        assert requests.get(f"http://127.0.0.1:{mport}/api/bans", timeout=5).status_code == 404, (
            "nothing but metrics without a token")
        assert requests.post(f"http://127.0.0.1:{mport}/metrics", timeout=5).status_code == 405
        admin = out["start"]["admin"]
        assert requests.get(f"http://{admin}/metrics", timeout=5).status_code == 401, (
            "the admin listener still wants its token")
    finally:
        p.kill()

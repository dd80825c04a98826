"""Issue 17, enforcement in the kernel: Moat runs inside a network namespace the test makes
(a veth pair to this namespace, where the clients live), with a jail over a log file. An
address that fails the sshd jail is in Moat's nftables set within a second and its packets
are dropped; it leaves the set when the ban ends; an allowlisted address and loopback are
never added; a ban and an unban from the CLI (another process) reach the kernel too. Real
nftables (Debian's `nft`), real kernel."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from moat_harness import ADMIN_TOKEN, free_port, moat_bin

NET = "10.231.7"
# IPv6 on the same veth pair (tests/e2e/test_nftables_v6.py): the clients' /64 holds ::5 and
# ::6, a second /64 a bystander's ::7; Moat's side has ::2 in each. `nodad`: usable at once.
NET6_A, NET6_B = "fd00:17:1:0", "fd00:17:2:0"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
    reason="needs root, nft and ip (network namespaces)",
)


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


@pytest.fixture
def netns():
    ns = f"moat-nft-{os.getpid()}"
    host_if, ns_if = f"mh{os.getpid() % 100000}", f"mn{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        for last in (1, 5, 6, 7):
            sh("ip", "addr", "add", f"{NET}.{last}/24", "dev", host_if)
        for addr in (f"{NET6_A}::5", f"{NET6_A}::6", f"{NET6_B}::7"):
            sh("ip", "addr", "add", f"{addr}/64", "dev", host_if, "nodad")
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "addr", "add", f"{NET}.2/24", "dev", ns_if, ns=ns)
        for net in (NET6_A, NET6_B):
            sh("ip", "addr", "add", f"{net}::2/64", "dev", ns_if, "nodad", ns=ns)
        sh("ip", "link", "set", ns_if, "up", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", host_if, check=False)


def sshd_fail(ip: str) -> str:
    return f"{time.strftime('%b %e %H:%M:%S')} host sshd[4242]: Failed password for root from {ip} port 50022 ssh2\n"


def connects(src: str, port: int, timeout: float = 1.0) -> bool:
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((f"{NET}.2", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def ban_set(ns: str) -> set[str]:
    r = sh("nft", "-j", "list", "set", "inet", "moat", "ban4", ns=ns, check=False)
    if r.returncode != 0:
        return set()
    found = set()
    for item in json.loads(r.stdout)["nftables"]:
        for e in item.get("set", {}).get("elem", []):
            v = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
            found.add(v)
    return found


def test_a_jail_ban_reaches_the_kernel_and_ends_there(netns, tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    port = free_port()
    cfg = tmp_path / "moat.toml"
    cfg.write_text(f"""
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[bans]
allow = ["{NET}.7/32"]

[logs]
filter_dir = "/etc/fail2ban/filter.d"

[[logs.jail]]
name = "sshd"
filter = "sshd"
logpath = ["{log}"]
maxretry = 2
bantime = "4s"
""")
    p = subprocess.Popen(
        ["ip", "netns", "exec", netns, str(moat_bin()), "run", "--listen", f"0.0.0.0:{port}",
         "--upstream", "http://127.0.0.1:9", "--config", str(cfg),
         "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RUST_LOG": "info", "MOAT_NFTABLES": "on"})
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            # The enforcer's line comes from its own task and may follow the start line.
            if all(any(w in l for l in lines) for w in ("moat is running", "enforced in the kernel")):
                break
        assert any("moat is running" in l for l in lines), "".join(lines)
        assert any("enforced in the kernel" in l for l in lines), "".join(lines)
        attacker, bystander, allowed = f"{NET}.5", f"{NET}.6", f"{NET}.7"
        assert connects(attacker, port) and connects(bystander, port)

        with log.open("a") as f:
            f.writelines([sshd_fail(attacker)] * 2 + [sshd_fail(allowed)] * 2
                         + [sshd_fail("127.0.0.1")] * 2)
        t0 = time.monotonic()
        while attacker not in ban_set(netns) and time.monotonic() - t0 < 3:
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert attacker in ban_set(netns), "".join(lines)
        assert took < 1.0, f"the ban took {took:.2f} s to reach the kernel"
        print(f"ban in the kernel set {took * 1000:.0f} ms after the log line")

        # Dropped: no connection, not even a refusal.
        assert not connects(attacker, port)
        assert connects(bystander, port)
        time.sleep(0.5)
        members = ban_set(netns)
        assert allowed not in members, "an allowlisted address reached the kernel set"
        assert "127.0.0.1" not in members, "loopback reached the kernel set"

        # The ban is 4 s: the element times out in the kernel and the address gets through.
        t0 = time.monotonic()
        while attacker in ban_set(netns) and time.monotonic() - t0 < 8:
            time.sleep(0.2)
        assert attacker not in ban_set(netns), "the element outlived its ban"
        assert connects(attacker, port)

        # A ban from elsewhere (the CLI, another process on the same state) reaches the
        # kernel too, and lifting it takes it out.
        r = subprocess.run([str(moat_bin()), "bans", "add", bystander, "--ttl", "1h",
                            "--state-dir", str(tmp_path / "state")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        t0 = time.monotonic()
        while bystander not in ban_set(netns) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert bystander in ban_set(netns), "a CLI ban did not reach the kernel"
        assert not connects(bystander, port)
        r = subprocess.run([str(moat_bin()), "bans", "rm", bystander,
                            "--state-dir", str(tmp_path / "state")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        t0 = time.monotonic()
        while bystander in ban_set(netns) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert bystander not in ban_set(netns), "an unban did not leave the kernel set"
        assert connects(bystander, port)
    finally:
        p.kill()
        p.wait()

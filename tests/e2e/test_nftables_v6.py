"""Issue 17, enforcement in the kernel over IPv6: Moat inside the network namespace of
tests/e2e/test_nftables.py (IPv6 on the same veth pair). An address banned from the CLI lands in
`ban6` and its packets are dropped while its neighbour in the same /64 still connects; a ban
on the /64 lands in `net6` and drops that neighbour too, while another /64 passes. Real
nftables, real kernel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from moat_harness import ADMIN_TOKEN, free_port, moat_bin
from test_nftables import NET6_A, NET6_B, netns, pytestmark, sh  # noqa: F401 (fixture, skip mark)


def connects6(src: str, dst: str, port: int, timeout: float = 1.0) -> bool:
    s = socket.socket(socket.AF_INET6)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((dst, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def elements(ns: str, set_name: str) -> set[str]:
    """The set's elements as text: an address, or `addr/len` for a network."""
    r = sh("nft", "-j", "list", "set", "inet", "moat", set_name, ns=ns, check=False)
    if r.returncode != 0:
        return set()
    found = set()
    for item in json.loads(r.stdout)["nftables"]:
        for e in item.get("set", {}).get("elem", []):
            v = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
            if isinstance(v, dict) and "prefix" in v:
                v = f"{v['prefix']['addr']}/{v['prefix']['len']}"
            found.add(v)
    return found


def wait_for(cond, secs: float = 5.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def start_moat(ns: str, tmp_path: Path, port: int, extra_config: str = "",
               wait_for_lines: tuple[str, ...] = ()) -> tuple[subprocess.Popen, list[str]]:
    """`moat run` inside `ns` with nftables on, returned once it says it is running and its
    enforcer says the bans are in the kernel (and any of `wait_for_lines`): the enforcer's line
    comes from its own task, so it may follow "moat is running". Its output keeps being
    collected into the returned list."""
    cfg = tmp_path / "moat.toml"
    cfg.write_text(f"""
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"
{extra_config}
""")
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, str(moat_bin()), "run", "--listen", f"[::]:{port}",
         "--upstream", "http://127.0.0.1:9", "--config", str(cfg),
         "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RUST_LOG": "info", "MOAT_NFTABLES": "on"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(p.stdout.readline, "")), daemon=True).start()
    wanted = ("moat is running", "enforced in the kernel", *wait_for_lines)
    if not wait_for(lambda: all(any(w in l for l in lines) for w in wanted), 20):
        p.kill()
        raise AssertionError(f"waited for {wanted}:\n" + "".join(lines))
    return p, lines


def cli(tmp_path: Path, *args: str) -> None:
    r = subprocess.run([str(moat_bin()), "bans", *args, "--state-dir", str(tmp_path / "state")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_ipv6_ban_and_a_64_ban_drop_in_the_kernel(netns, tmp_path):
    port = free_port()
    p, lines = start_moat(netns, tmp_path, port)
    try:
        attacker, neighbour, bystander = f"{NET6_A}::5", f"{NET6_A}::6", f"{NET6_B}::7"
        server_a, server_b = f"{NET6_A}::2", f"{NET6_B}::2"
        # The kernel prints IPv6 addresses compressed.
        attacker_k = "fd00:17:1::5"
        assert connects6(attacker, server_a, port) and connects6(neighbour, server_a, port)

        cli(tmp_path, "add", attacker, "--ttl", "1h")
        assert wait_for(lambda: attacker_k in elements(netns, "ban6")), "".join(lines)
        assert not connects6(attacker, server_a, port), "a banned IPv6 address got through"
        assert connects6(neighbour, server_a, port), "the ban of one address dropped its neighbour"
        assert elements(netns, "ban4") == set()

        cli(tmp_path, "add", f"{NET6_A}::/64", "--ttl", "1h")
        assert wait_for(lambda: "fd00:17:1::/64" in elements(netns, "net6")), "".join(lines)
        assert not connects6(neighbour, server_a, port), "the /64 ban let another address of it through"
        assert connects6(bystander, server_b, port), "the /64 ban dropped another /64"

        # Lifting the /64 lets the neighbour back in; the address ban still holds.
        cli(tmp_path, "rm", f"{NET6_A}::/64")
        assert wait_for(lambda: elements(netns, "net6") == set()), "an unban did not leave net6"
        assert connects6(neighbour, server_a, port)
        assert not connects6(attacker, server_a, port)
    finally:
        p.kill()
        p.wait()

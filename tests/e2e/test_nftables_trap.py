"""Issue 17, banned addresses' mail connections redirected to the trap
(`[[nftables.trap_redirect]]`): Moat and a stand-in for the real mail server run inside the
network namespace of tests/e2e/test_nftables.py. Once an address is banned, its connections to
ports 25 and 587 reach the trap's listener (its Postfix-like greeting, with the trap's host
name), over IPv4 and IPv6, while its other ports drop, the trap's own port included; an
unbanned address on port 25 still reaches the real server. Real nftables, real kernel."""

from __future__ import annotations

import socket
import subprocess
import time

from moat_harness import free_port
from test_nftables import NET, NET6_A, netns, pytestmark, sh  # noqa: F401 (fixture, skip mark)
from test_nftables_v6 import cli, elements, start_moat, wait_for

TRAP_HOST = "trap.moat.test"
REAL_HOST = "real-mx.moat.test"

# The real mail server's stand-in: greets on 25 (dual stack), then closes.
REAL_MX = f"""
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 25))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"220 {REAL_HOST} ESMTP\\r\\n")
    c.close()
"""


def greeting(src: str, dst: str, port: int, timeout: float = 1.5) -> str | None:
    """The first line the server at dst:port sends to a client at src; None if the
    connection is dropped or refused."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    s = socket.socket(fam)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((dst, port))
        return s.recv(512).decode(errors="replace")
    except OSError:
        return None
    finally:
        s.close()


def test_a_banned_address_talks_to_the_trap_on_mail_ports_and_drops_elsewhere(netns, tmp_path):
    mx = subprocess.Popen(["ip", "netns", "exec", netns, "python3", "-c", REAL_MX],
                          stdout=subprocess.PIPE, text=True)
    port = free_port()
    try:
        assert mx.stdout.readline().strip() == "listening"
        p, lines = start_moat(netns, tmp_path, port, f"""
[trap]
hostname = "{TRAP_HOST}"
[[trap.listener]]
listen = "[::]:2525"
tls = "none"

[nftables]
trap_redirect = [{{ ports = [25, 587], to = 2525 }}]
""", wait_for_lines=("go to the trap",))
        try:
            attacker, bystander, server = f"{NET}.5", f"{NET}.6", f"{NET}.2"
            attacker6, server6 = f"{NET6_A}::5", f"{NET6_A}::2"
            # Before the ban, port 25 is the real server for everyone.
            g = greeting(attacker, server, 25)
            assert g is not None and REAL_HOST in g, g

            cli(tmp_path, "add", attacker, "--ttl", "1h")
            cli(tmp_path, "add", attacker6, "--ttl", "1h")
            assert wait_for(lambda: attacker in elements(netns, "ban4")), "".join(lines)
            assert wait_for(lambda: "fd00:17:1::5" in elements(netns, "ban6")), "".join(lines)

            for src, dst in ((attacker, server), (attacker6, server6)):
                for mail_port in (25, 587):
                    g = greeting(src, dst, mail_port)
                    assert g is not None and g.startswith(f"220 {TRAP_HOST} "), \
                        f"{src} -> {mail_port}: {g!r}"
                # Every other port drops: Moat's own, and the trap's port asked directly.
                assert greeting(src, dst, port) is None, f"{src} reached port {port}"
                assert greeting(src, dst, 2525) is None, f"{src} reached the trap's port directly"

            # Not banned: the real server, not the trap.
            g = greeting(bystander, server, 25)
            assert g is not None and REAL_HOST in g, g
            g = greeting(f"{NET6_A}::6", server6, 25)
            assert g is not None and REAL_HOST in g, g

            # The ban lifted, the attacker is back on the real server.
            cli(tmp_path, "rm", attacker)
            assert wait_for(lambda: attacker not in elements(netns, "ban4"))
            time.sleep(0.2)
            g = greeting(attacker, server, 25)
            assert g is not None and REAL_HOST in g, g
        finally:
            p.kill()
            p.wait()
    finally:
        mx.kill()
        mx.wait()


def test_a_redirect_to_no_trap_listener_is_refused_at_start(tmp_path):
    """A redirect to a port the trap does not listen on would be a silent black hole:
    `moat check` refuses it with the line and field."""
    from moat_harness import moat_bin

    cfg = tmp_path / "moat.toml"
    cfg.write_text("""[trap]
[[trap.listener]]
listen = "0.0.0.0:2525"

[nftables]
trap_redirect = [{ ports = [25], to = 2600 }]
""")
    r = subprocess.run([str(moat_bin()), "check", "--config", str(cfg)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert f"{cfg}:6:" in out and "nftables.trap_redirect.to" in out, out
    assert "no [[trap.listener]] listens on port 2600" in out, out

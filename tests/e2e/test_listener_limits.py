"""Issue 16 (security review): every listener has a connection cap and timeouts. Past the cap
a connection waits in the kernel's backlog and is served as soon as a slot frees; a connection
that sends nothing is closed, so idle ones cannot keep the slots for ever."""

from __future__ import annotations

import socket
import subprocess
import time

from moat_harness import ADMIN_TOKEN, free_port, run_with_config

POLICY_REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=192.0.2.10\nclient_name=unknown\nhelo_name=x.example\n"
    b"sender=a@x.example\nrecipient=b@moat.test\n\n"
)


def start(tmp_path, config: str) -> subprocess.Popen:
    return run_with_config(tmp_path, config)[0]


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def answered(s: socket.socket, within: float) -> bytes | None:
    """What the server sent within `within` seconds (b"" = it closed), None if nothing."""
    s.settimeout(within)
    try:
        return s.recv(4096)
    except (TimeoutError, socket.timeout):
        return None
    except ConnectionResetError:
        return b""


def test_the_policy_listener_caps_connections_and_closes_idle_ones(tmp_path):
    port = free_port()
    p = start(tmp_path, f'[mail]\npolicy_listen = "127.0.0.1:{port}"\nmax_connections = 2\n'
                        f'idle_timeout = "4s"\n')
    try:
        held = [connect(port), connect(port)]
        # Both slots work.
        for s in held:
            s.sendall(POLICY_REQUEST)
            got = answered(s, 5)
            assert got and got.startswith(b"action="), got
        opened = time.monotonic()
        third = connect(port)  # accepted by the kernel, not yet by Moat
        third.sendall(POLICY_REQUEST)
        assert answered(third, 1.5) is None, "a third connection was served past the cap of 2"
        held[0].close()
        got = answered(third, 5)
        assert got and got.startswith(b"action="), f"not served once a slot freed: {got!r}"
        # The other held connection has sat idle since its answer: Moat closes it.
        got = answered(held[1], 8)
        assert got == b"", f"an idle policy connection was not closed: {got!r}"
        assert time.monotonic() - opened < 8
        third.close()
    finally:
        p.kill()
        p.wait()


def test_the_admin_listener_caps_connections_and_drops_silent_ones(tmp_path):
    port = free_port()
    p = start(tmp_path, f'[admin]\nlisten = "127.0.0.1:{port}"\ntoken = "{ADMIN_TOKEN}"\n')
    try:
        # 64 connections that never send a request hold every slot...
        silent = [connect(port) for _ in range(64)]
        time.sleep(0.3)
        started = time.monotonic()
        probe = connect(port)
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answered(probe, 2) is None, "served past the admin cap of 64"
        # ...until the header timeout (10 s) closes them, and the waiting request is served.
        got = answered(probe, 15)
        assert got and got.startswith(b"HTTP/1.1 200"), got
        waited = time.monotonic() - started
        assert 5 < waited < 15, waited
        closed = sum(1 for s in silent if answered(s, 1) == b"")
        assert closed == 64, f"only {closed} of 64 silent connections were closed"
        probe.close()
    finally:
        p.kill()
        p.wait()

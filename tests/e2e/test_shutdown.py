"""Issue 17 (one shutdown with a task tracker): on SIGTERM every listener stops accepting and
the connections already open finish. Before, the trap and the mail shield stopped with
`abort()`: a bot's message in the middle of DATA was cut off, never answered and never kept.
Now the message is answered 250 and is in the quarantine, an idle Postfix policy connection is
closed at once (it must not hold the exit for the whole grace), and Moat exits 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

from moat_harness import free_port, moat_bin, run_with_config

POLICY_REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=192.0.2.10\nclient_name=unknown\nhelo_name=x.example\n"
    b"sender=a@x.example\nrecipient=b@moat.test\n\n"
)


def recv_until(s: socket.socket, end: bytes, timeout: float = 5) -> bytes:
    s.settimeout(timeout)
    out = b""
    while end not in out:
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
    return out


def test_sigterm_lets_a_trap_message_in_flight_finish_and_closes_idle_policy_connections(tmp_path):
    trap_port, policy_port = free_port(), free_port()
    quarantine = tmp_path / "quarantine"
    p, _ = run_with_config(
        tmp_path,
        f'[trap]\nhostname = "mx.trap.test"\nauth_failure_delay = "0s"\n'
        f'quarantine_dir = "{quarantine}"\n\n'
        f'[[trap.listener]]\nlisten = "127.0.0.1:{trap_port}"\ntls = "none"\n\n'
        f'[mail]\npolicy_listen = "127.0.0.1:{policy_port}"\n')
    try:
        # A Postfix policy connection, idle after one answer (Postfix keeps them for 300 s).
        pol = socket.create_connection(("127.0.0.1", policy_port), timeout=5)
        pol.sendall(POLICY_REQUEST)
        assert recv_until(pol, b"\n\n").startswith(b"action=")
        # A bot in the middle of its message.
        bot = socket.create_connection(("127.0.0.1", trap_port), timeout=5)
        assert recv_until(bot, b"\r\n").startswith(b"220")
        for cmd, want in [(b"EHLO bot.example\r\n", b"250 "), (b"MAIL FROM:<a@bot.example>\r\n", b"250"),
                          (b"RCPT TO:<victim@example.org>\r\n", b"250"), (b"DATA\r\n", b"354")]:
            bot.sendall(cmd)
            got = recv_until(bot, b"\r\n")
            assert want in got, (cmd, got)
        bot.sendall(b"Subject: shutdown in flight\r\n\r\nfirst half\r\n")
        time.sleep(0.3)

        stopped = time.monotonic()
        p.send_signal(signal.SIGTERM)
        # The idle policy connection is closed, not held until the grace runs out.
        pol.settimeout(5)
        assert pol.recv(4096) == b"", "the idle policy connection was not closed at shutdown"
        # No new sessions once shutdown began.
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", trap_port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "the trap still accepts after SIGTERM"
            time.sleep(0.05)
        # The message in flight is finished, answered and kept.
        bot.sendall(b"second half\r\n.\r\n")
        got = recv_until(bot, b"\r\n")
        assert got.startswith(b"250"), f"the message in flight was not accepted: {got!r}"
        bot.sendall(b"QUIT\r\n")
        assert recv_until(bot, b"\r\n").startswith(b"221")
        bot.close()
        code = p.wait(15)
        assert code == 0, f"moat exited {code}"
        assert time.monotonic() - stopped < 9, "the drain waited for the grace instead of the connections"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    listed = subprocess.run([str(moat_bin()), "quarantine", "--quarantine", str(quarantine), "list",
                             "--json"], capture_output=True, timeout=30)
    assert listed.returncode == 0, listed.stderr.decode()
    subjects = [m.get("subject") for m in json.loads(listed.stdout)]
    assert "shutdown in flight" in subjects, subjects

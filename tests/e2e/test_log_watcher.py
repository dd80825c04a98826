"""Issue 17, the log watcher as fail2ban's replacement: a jail running Debian's own sshd filter
(read in place from /etc/fail2ban/filter.d) over a log file that sshd-shaped lines are appended
to; an address reaching maxretry is banned within seconds and refused by the HTTP shield too,
one below it is not, an ignoreip one never is, a rename rotation loses nothing, and the
positions survive a restart (lines read before it are not counted twice). Also `moat check`
reading Debian's /etc/fail2ban jails in place."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import socket

from moat_harness import free_port, get_from, run_cli

FILTERS = Path("/etc/fail2ban/filter.d")
pytestmark = pytest.mark.skipif(
    not (FILTERS / "sshd.conf").is_file() and not os.environ.get("CI"),
    reason="needs Debian's fail2ban (scripts/install-test-deps.sh installs it)",
)


def sshd_fail(ip: str, user: str = "root") -> str:
    """A failed password as OpenSSH logs it through syslog, stamped now in local time."""
    stamp = time.strftime("%b %e %H:%M:%S")
    return (f"{stamp} host sshd[{os.getpid()}]: Failed password for {user} from {ip} "
            f"port 52{len(ip)}1 ssh2\n")


def append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())


def jail_config(log: Path, policy_port: int | None = None) -> str:
    mail = (f'[mail]\npolicy_listen = "127.0.0.1:{policy_port}"\nrecipients = ["x@moat.test"]\n'
            if policy_port else "")
    return f"""
{mail}
[logs]
filter_dir = "{FILTERS}"

[[logs.jail]]
name = "sshd"
filter = "sshd"
logpath = ["{log}"]
maxretry = 3
findtime = "10m"
bantime = "1h"
ignoreip = ["127.77.9.0/24"]
"""


def postfix_policy(port: int, client: str) -> bytes:
    """Postfix's policy delegation request for a RCPT from `client`, and Moat's answer."""
    attrs = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
             "client_address": client, "recipient": "x@moat.test", "sender": "a@b.example"}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(("".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n").encode())
        return s.recv(4096)


def banned(m, ip: str) -> bool:
    return any(b["scope"] in (ip, f"{ip}/32") for b in m.bans())


def test_a_jail_ban_holds_at_the_http_shield_and_survives_rotation_and_restart(moat_factory, tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    state = tmp_path / "state"
    policy_port = free_port()
    m = moat_factory(jail_config(log, policy_port), state_dir=state)
    attacker, below, ignored = "127.77.1.5", "127.77.2.5", "127.77.9.5"
    assert get_from(attacker, m.url("/")).status == 200

    append(log, *[sshd_fail(attacker) for _ in range(3)], *[sshd_fail(below) for _ in range(2)],
           *[sshd_fail(ignored) for _ in range(5)])
    assert m.wait_for(lambda: banned(m, attacker), timeout=5), (
        f"3 sshd failures from {attacker} did not ban it: {m.bans()}")
    ban = next(b for b in m.bans() if b["scope"] in (attacker, f"{attacker}/32"))
    assert "jail" in str(ban.get("origin", "")) + str(ban.get("reason", "")), ban
    assert get_from(attacker, m.url("/")).status == 403, "a jail ban holds at the HTTP shield"
    # Issue 17: while banned, its failures do not count (fail2ban's "already banned"): where
    # nothing drops its packets the lines keep coming, and each recount used to re-ban it,
    # escalating the ban and writing the store every few lines.
    first = ban["offences"]
    append(log, *[sshd_fail(attacker) for _ in range(6)])
    time.sleep(1.5)
    again = next(b for b in m.bans() if b["scope"] in (attacker, f"{attacker}/32"))
    assert again["offences"] == first and again["expires_ms"] == ban["expires_ms"], (ban, again)
    # And at the mail shield: Postfix's policy query about a client at that address.
    answer = postfix_policy(policy_port, attacker)
    # A 4xx (the shield defers banned clients, so a real sender whose address was misjudged
    # retries later rather than bouncing).
    assert answer.startswith((b"action=4", b"action=5", b"action=DEFER", b"action=REJECT")), (
        f"a jail ban holds at the mail shield: {answer!r}")
    assert postfix_policy(policy_port, below) == b"action=DUNNO\n\n"
    time.sleep(1.5)
    assert not banned(m, below), "2 failures are below maxretry"
    assert not banned(m, ignored), "ignoreip is never banned"
    assert get_from(below, m.url("/")).status == 200

    # Rename rotation while Moat reads: the new file's failures count with the old file's.
    rotated = "127.77.3.5"
    append(log, sshd_fail(rotated))
    time.sleep(0.6)
    log.rename(tmp_path / "auth.log.1")
    log.write_text("")
    append(log, sshd_fail(rotated), sshd_fail(rotated))
    assert m.wait_for(lambda: banned(m, rotated), timeout=5), (
        "failures on both sides of a rotation did not add up")

    # Restart: the positions were saved, so `below`'s two failures are not read again; one
    # more after the restart is its third, and bans it (the jail's counts are in memory, so
    # this needs the lines after the restart to be read, and only those).
    time.sleep(1.5)
    m.stop()
    append(log, sshd_fail(below))
    m2 = moat_factory(jail_config(log), state_dir=state, name="again")
    time.sleep(1.5)
    assert not banned(m2, below), "read again from the start, or counted old lines twice"
    append(log, sshd_fail(below), sshd_fail(below))
    assert m2.wait_for(lambda: banned(m2, below), timeout=5), (
        "the line written while Moat was down and two after it did not make three")


def test_check_reads_debians_jails_in_place(tmp_path):
    cfg = tmp_path / "moat.toml"
    cfg.write_text('[server]\nupstream = "http://127.0.0.1:9"\n[logs]\nfail2ban = "/etc/fail2ban"\n')
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "logs: " in r.stdout and "sshd" in r.stdout, r.stdout

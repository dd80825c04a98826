"""A full disk under the trap's quarantine and under the ban store.

A small tmpfs is the quarantine (or the state directory), a filler file fills it, and mail is
sent: the trap must answer `452 4.3.1 Insufficient system storage` (a full disk is a temporary
condition: RFC 3463 X.3.1, RFC 5321 452) rather than `250`, keep running, keep everything it
acknowledged before; once the filler is gone the next message gets `250` without a restart,
and the index agrees with the files. The ban store must answer an error, never 2xx, for a ban
it did not store.

Needs root (to mount the tmpfs); skipped otherwise."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
import re
import smtplib
import subprocess
import time
from pathlib import Path

import pytest
import requests

from moat_harness import ADMIN_TOKEN
from trap_harness import Trap

ROOT = Path(__file__).resolve().parents[2]
QUEUED = re.compile(rb"queued as ([0-9A-F]{16})")


def _campaign():
    spec = importlib.util.spec_from_file_location("crash_campaign", ROOT / "scripts" / "crash-campaign.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The index-against-files check the crash campaign runs (what the trap's recovery at start
# calls agreement).
check_quarantine = _campaign().check_quarantine


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MB tmpfs, unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "moat-disk-full", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> Path:
    """Fills the filesystem to its last page with one file."""
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 65536, 4096, 512):
            chunk = b"\0" * size
            while True:
                try:
                    f.write(chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    st = os.statvfs(mnt)
    assert st.f_bavail * st.f_frsize < 4096, "the filesystem is not full"
    return filler


def send(port: int, n: int, size: int = 300) -> tuple[int, bytes, bytes]:
    body = (f"Subject: disk full {n}\r\nMessage-ID: <disk-full-{n}@trap.test>\r\n\r\n"
            f"marker-{n} " + "x" * size + "\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.ehlo("filler.test")
        assert s.mail(f"df{n}@spam.test")[0] == 250
        assert s.rcpt("v@victim.test")[0] == 250
        code, resp = s.data(body)
    return code, resp, body


def queued(resp: bytes) -> str:
    m = QUEUED.search(resp)
    assert m, resp
    return m.group(1).decode()


def test_trap_answers_452_on_a_full_disk_keeps_what_it_acknowledged_and_recovers(small_fs):
    t = Trap("--max-message-mb", "1", quarantine=small_fs / "quarantine")
    acked: dict[str, str] = {}
    try:
        for n in range(5):
            code, resp, body = send(t.port, n)
            assert code == 250, resp
            acked[queued(resp)] = hashlib.sha256(body).hexdigest()
        filler = fill(small_fs)

        # While full: 250 only for what the journal could still hold (then it is kept), and
        # 452 4.3.1 otherwise; never 5xx, never a dropped session, never a crash.
        replies = []
        for n in range(5, 30):
            code, resp, body = send(t.port, n, size=3000)
            replies.append((code, resp))
            if code == 250:
                acked[queued(resp)] = hashlib.sha256(body).hexdigest()
            assert t.proc.poll() is None, t.log.read_text()[-3000:]
        assert {c for c, _ in replies} <= {250, 452}, replies
        refused = [r for c, r in replies if c == 452]
        assert len(refused) >= 15, f"not refused while the disk was full: {replies}"
        assert all(r == b"4.3.1 Insufficient system storage" for r in refused), refused
        # Everything acknowledged is there, full disk or not (the CLI reads the journal too).
        listed = {m["id"]: m["sha256"] for m in t.messages()}
        assert {q: listed.get(q) for q in acked} == acked

        # Space is back: the next message is accepted, without a restart (after the pause a
        # client takes before retrying; intake asks the writer again at most every 250 ms).
        filler.unlink()
        time.sleep(0.5)
        code, resp, body = send(t.port, 100)
        assert code == 250, resp
        acked[queued(resp)] = hashlib.sha256(body).hexdigest()
        listed = {m["id"]: m["sha256"] for m in t.messages()}
        assert {q: listed.get(q) for q in acked} == acked
        assert t.proc.poll() is None
    finally:
        t.stop()
    log = t.log.read_text(errors="replace")
    assert "panicked" not in log, log[-3000:]

    # After a clean stop: every acknowledged message is in the index itself, whole, and the
    # index agrees with the files.
    problems, stats = check_quarantine(t.quarantine)
    assert problems == [], problems
    assert set(acked) <= stats["indexed_ids"], set(acked) - stats["indexed_ids"]
    # And across a restart.
    t.start()
    try:
        listed = {m["id"]: m["sha256"] for m in t.messages()}
        assert {q: listed.get(q) for q in acked} == acked
        for q, sha in acked.items():
            assert hashlib.sha256(t.raw(q)).hexdigest() == sha
    finally:
        t.stop()
    problems, _ = check_quarantine(t.quarantine)
    assert problems == [], problems


def test_ban_store_on_a_full_disk_never_acknowledges_a_ban_it_did_not_store(small_fs, moat_factory):
    state = small_fs / "state"
    m = moat_factory(state_dir=state)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def post(scope: str) -> int:
        return requests.post(m.admin_base + "/api/bans", json={"scope": scope}, headers=auth,
                             timeout=10).status_code

    def listed() -> set[str]:
        r = requests.get(m.admin_base + "/api/bans", headers=auth, timeout=10)
        assert r.status_code == 200
        return {b["scope"] for b in r.json()}

    assert post("10.77.0.1") == 201
    filler = fill(small_fs)
    answers = {f"10.77.0.{i}": post(f"10.77.0.{i}") for i in range(2, 12)}
    cli = m.cli("bans", "add", "10.77.1.1")
    assert m.proc.poll() is None, "moat exited on a full disk"
    assert all(c == 201 or c >= 500 for c in answers.values()), answers
    assert any(c >= 500 for c in answers.values()), f"no ban was refused on a full disk: {answers}"
    have = listed()
    for scope, code in answers.items():
        assert (scope in have) == (code == 201), (scope, code, sorted(have))
    assert ("10.77.1.1" in have) == (cli.returncode == 0), (cli.returncode, cli.stderr)
    assert cli.returncode != 0 or "10.77.1.1" in have

    filler.unlink()
    assert post("10.77.2.1") == 201, "the ban store did not recover once space was back"
    acked = {"10.77.0.1", "10.77.2.1"} | {s for s, c in answers.items() if c == 201}
    if cli.returncode == 0:
        acked.add("10.77.1.1")
    assert acked <= listed()
    # Still there after kill -9 and a restart.
    m.kill()
    m.start()
    assert acked <= listed()

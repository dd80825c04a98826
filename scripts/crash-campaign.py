#!/usr/bin/env python3
"""Crash campaign: SIGKILL Moat again and again under load, then check nothing acknowledged
was lost.

    scripts/crash-campaign.py --kills 200 [--bin PATH] [--seed N]

Moat runs (`moat run`, mail-only: the SMTP trap and the admin listener, loopback high ports)
on a state directory in a temporary directory. While it runs, sender threads deliver mail to
the trap (each delivery with its own envelope sender, Message-ID and marker; some share one of
a few bodies, so deduplicated content is exercised too) and note every delivery answered `250`
after DATA; ban threads add bans, alternating `moat bans add` (acknowledged: exit 0) and
`POST /api/bans` (acknowledged: 2xx). At a random moment (seeded; the seed and each delay are
printed) Moat gets SIGKILL, sometimes while it is still starting (recovery running) or
stopping (SIGTERM first: the quarantine's flush running), and is started again on the same
state directory.

After the last kill Moat is started once more, the traffic stops, the bans are read over the
admin API, and Moat is stopped with SIGTERM. Then:

- every delivery answered `250` is in `moat quarantine list --json` under the id of its reply,
  with the SHA-256 of what was sent and its envelope sender;
- after that clean stop every one of them is in the index itself (nothing left only in the
  journal);
- the index agrees with the files, as the trap's start-up recovery defines it
  (`crates/moat-trap/src/quarantine/writer/recovery.rs`): every blob row has its file in
  `new/`, whole (the `X-Moat-Trap` header's size and SHA-256 match what follows, and the row's
  hash, size and offset match the file); every file in `new/` is some row's; every delivery
  row points at an existing blob with the same hash; `tmp/` is empty; no journal segment was
  set aside as damaged; and SQLite's `integrity_check` passes;
- every acknowledged ban is in `moat bans list --json` (and was in `GET /api/bans`).

Prints a summary and exits 1 on any loss or inconsistency (2 on a harness failure, such as
Moat exiting on its own). Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Moat runs as root here: keep its bans out of this machine's firewall.
os.environ.setdefault("MOAT_NFTABLES", "off")

TOKEN = "crash-campaign-token-0123456789"
META_HEADER = b"X-Moat-Trap: "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_bin() -> Path:
    if os.environ.get("MOAT_BIN"):
        return Path(os.environ["MOAT_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "moat-target")
    return Path(target) / "debug" / "moat"


class HarnessError(Exception):
    """Moat misbehaved in a way that is not a loss: exited on its own, never came up."""


# ------------------------------------------------------------------------------------------
# Moat


class Moat:
    def __init__(self, bin_path: Path, root: Path) -> None:
        self.bin = bin_path
        self.root = root
        self.state = root / "state"
        self.quarantine = self.state / "quarantine"
        self.smtp_port = free_port()
        self.admin_port = free_port()
        self.config = root / "moat.toml"
        self.config.write_text(
            f'[admin]\nlisten = "127.0.0.1:{self.admin_port}"\ntoken = "{TOKEN}"\n\n'
            '[trap]\nhostname = "mx.crash.test"\nauth_failure_delay = "0s"\n'
            "max_sessions_per_ip = 1000\n\n"
            f'[[trap.listener]]\nlisten = "127.0.0.1:{self.smtp_port}"\ntls = "none"\n'
        )
        self.log = root / "moat.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"\n=== start {self.starts} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.bin), "run", "--config", str(self.config), "--state-dir", str(self.state),
                 "--log-format", "json"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until both the trap and the admin listener accept connections (recovery and the
        journal replay run before the trap binds)."""
        deadline = time.monotonic() + timeout
        pending = [self.smtp_port, self.admin_port]
        while pending:
            try:
                socket.create_connection(("127.0.0.1", pending[0]), 0.5).close()
                pending.pop(0)
                continue
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise HarnessError(f"moat exited with {self.proc.returncode} while starting "
                                   f"(start {self.starts}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"moat did not come up in {timeout:.0f}s (start {self.starts}):\n"
                                   f"{self.log_tail()}")
            time.sleep(0.01)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"moat exited on its own with {self.proc.returncode} "
                               f"(start {self.starts}):\n{self.log_tail()}")

    def kill9(self) -> None:
        self.check_alive()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 600) -> int:
        """SIGTERM and wait: the clean stop. It flushes the quarantine, which includes
        extracting the indicators of every message not analysed yet (a debug build under this
        load falls behind), hence the generous bound."""
        self.check_alive()
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise HarnessError(f"moat did not stop within {timeout:.0f}s of SIGTERM:\n"
                               f"{self.log_tail()}")

    def term_then_kill(self, grace: float) -> str:
        """SIGTERM, then SIGKILL after `grace` seconds if it has not exited by then: a crash
        during the clean stop (the quarantine's flush). Returns what happened."""
        self.check_alive()
        self.proc.terminate()
        try:
            code = self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            return "killed while stopping"
        if code != 0:
            raise HarnessError(f"moat exited with {code} after SIGTERM (start {self.starts}):\n"
                               f"{self.log_tail()}")
        return "stopped before the kill"

    def kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin), *args], capture_output=True, timeout=timeout)


# ------------------------------------------------------------------------------------------
# Load


class Ledger:
    """What was acknowledged, shared by the load threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # queue id -> (sha256 of the data, envelope sender)
        self.messages: dict[str, tuple[str, str]] = {}
        # Queue ids answered for two different deliveries (one of them cannot be kept).
        self.reused_ids: list[str] = []
        self.refused = 0  # 4xx/5xx after DATA
        self.broken = 0  # connection lost before the reply to DATA
        self.bans_cli: set[str] = set()
        self.bans_api: set[str] = set()
        self.bans_failed = 0
        self.errors: list[str] = []


SHARED_BODIES = [
    (f"Subject: shared body {i}\r\nFrom: run{i}@spam.test\r\n\r\n"
     f"The same content to many victims, run {i}: https://run{i}.spam.example/offer\r\n"
     + "filler line of a shared spam run\r\n" * (i * 40)).encode()
    for i in range(5)
]


def make_message(rng: random.Random, tag: str) -> bytes:
    if rng.random() < 0.15:
        return rng.choice(SHARED_BODIES)
    # Mostly small, some of a few kB, a few of about 100 kB (several journal pages each).
    lines = rng.choice([2, 5, 20, 100, 400]) if rng.random() < 0.98 else 2000
    body = "".join(f"{tag} line {i} https://l{i % 7}.crash.example/{tag}\r\n" for i in range(lines))
    return (f"Message-ID: <{tag}@crash.test>\r\nSubject: crash campaign {tag}\r\n"
            f"X-Crash-Marker: {tag}\r\nFrom: {tag}@crash.test\r\nTo: v@victim.test\r\n\r\n"
            f"{body}").encode()


def sender(n: int, port: int, seed: int, rate: float, ledger: Ledger,
           stop: threading.Event) -> None:
    """Delivers mail until `stop`, at most `rate` messages a second (0: as fast as it can)."""
    rng = random.Random(seed * 1000 + n)
    seq = 0
    due = time.monotonic()

    def pace() -> None:
        nonlocal due
        if rate <= 0:
            return
        now = time.monotonic()
        due = max(due + 1 / rate, now - 0.5)  # no catching up in a burst after an outage
        if due > now:
            time.sleep(due - now)
    while not stop.is_set():
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=10)
        except (OSError, smtplib.SMTPException):
            time.sleep(0.02)  # Moat is down (killed, or starting)
            continue
        try:
            s.ehlo(f"sender{n}.crash.test")
            for _ in range(rng.randint(1, 4)):
                if stop.is_set():
                    break
                pace()
                seq += 1
                tag = f"s{n}-{seq}"
                data = make_message(rng, tag)
                mail_from = f"{tag}@crash.test"
                code, _ = s.mail(mail_from)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, b"MAIL")
                code, _ = s.rcpt(f"v{seq % 13}@victim.test")
                if code != 250:
                    raise smtplib.SMTPResponseException(code, b"RCPT")
                code, resp = s.data(data)
                if code == 250:
                    qid = resp.split(b"queued as ")[-1].strip().decode()
                    with ledger.lock:
                        if qid in ledger.messages:
                            ledger.reused_ids.append(qid)
                        ledger.messages[qid] = (hashlib.sha256(data).hexdigest(), mail_from)
                else:
                    with ledger.lock:
                        ledger.refused += 1
            try:
                s.quit()
            except (OSError, smtplib.SMTPException):
                pass
        except (OSError, smtplib.SMTPException):
            with ledger.lock:
                ledger.broken += 1
        finally:
            s.close()


def banner(n: int, moat: Moat, seed: int, ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(seed * 1000 + 500 + n)
    k = 0
    while not stop.is_set():
        k += 1
        via_cli = k % 2 == 1
        # Unique scopes: addresses under 10/8, /28 prefixes under 11/8, by thread and count.
        if rng.random() < 0.2:
            scope = f"11.{n * 16 + k // 4096 % 16}.{k // 16 % 256}.{k % 16 * 16}/28"
        else:
            scope = f"10.{n * 16 + k // 65536 % 16}.{k // 256 % 256}.{k % 256}"
        if via_cli:
            try:
                r = subprocess.run(
                    [str(moat.bin), "bans", "add", scope, "--reason", "crash campaign",
                     "--state-dir", str(moat.state)], capture_output=True, timeout=30)
                if r.returncode == 0:
                    with ledger.lock:
                        ledger.bans_cli.add(scope)
                else:
                    with ledger.lock:
                        ledger.bans_failed += 1
            except subprocess.TimeoutExpired:
                with ledger.lock:
                    ledger.bans_failed += 1
        else:
            try:
                c = http.client.HTTPConnection("127.0.0.1", moat.admin_port, timeout=5)
                c.request("POST", "/api/bans",
                          body=json.dumps({"scope": scope, "reason": "crash campaign"}),
                          headers={"Authorization": f"Bearer {TOKEN}",
                                   "Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                c.close()
                if 200 <= r.status < 300:
                    with ledger.lock:
                        ledger.bans_api.add(scope)
                else:
                    with ledger.lock:
                        ledger.bans_failed += 1
            except (OSError, http.client.HTTPException):
                with ledger.lock:
                    ledger.bans_failed += 1
                time.sleep(0.02)
        time.sleep(rng.uniform(0.02, 0.1))


# ------------------------------------------------------------------------------------------
# Verification


def parse_file(path: Path):
    """(header JSON, body offset, body) of a quarantine file, or None if it is not whole."""
    raw = path.read_bytes()
    if not raw.startswith(META_HEADER):
        return None
    end = raw.find(b"\r\n", len(META_HEADER))
    if end < 0:
        return None
    try:
        header = json.loads(raw[len(META_HEADER):end])
    except ValueError:
        return None
    offset = end + 2
    body = raw[offset:]
    if "size" in header and header["size"] != len(body):
        return None
    if "sha256" in header and header["sha256"] != hashlib.sha256(body).hexdigest():
        return None
    return header, offset, body


def is_moat_file(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 3 and parts[2] == "moat" and parts[1] != ""


def check_quarantine(qdir: Path) -> tuple[list[str], dict]:
    """The index against the files, as the trap's start-up recovery defines agreement."""
    problems: list[str] = []
    db = sqlite3.connect(f"file:{qdir / 'index.sqlite'}?mode=ro", uri=True)
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            problems.append(f"index integrity_check: {ok}")
        blobs = db.execute("SELECT id, sha256, file, size, body_offset FROM blobs").fetchall()
        messages = db.execute("SELECT id, sha256, size, blob FROM messages").fetchall()
    finally:
        db.close()
    new = qdir / "new"
    on_disk = {p.name for p in new.iterdir()}
    by_id = {}
    referenced: dict[str, int] = {}
    for bid, sha, file, size, offset in blobs:
        by_id[bid] = (sha, size)
        referenced[file] = referenced.get(file, 0) + 1
        if file not in on_disk:
            problems.append(f"blob {bid}: file {file} missing from new/")
            continue
        parsed = parse_file(new / file)
        if parsed is None:
            problems.append(f"blob {bid}: file {file} is not whole")
            continue
        _, off, body = parsed
        if hashlib.sha256(body).hexdigest() != sha or len(body) != size or off != offset:
            problems.append(f"blob {bid}: file {file} does not match its row "
                            f"(sha/size/offset {sha[:12]}/{size}/{offset})")
    for name, n in referenced.items():
        if n > 1:
            problems.append(f"file {name} is the file of {n} blobs")
    for name in sorted(on_disk):
        if is_moat_file(name) and name not in referenced:
            problems.append(f"file new/{name} is in no index row")
        elif not is_moat_file(name):
            problems.append(f"unexpected entry new/{name}")
    used = set()
    for mid, sha, size, blob in messages:
        if blob not in by_id:
            problems.append(f"message {mid}: blob {blob} does not exist")
            continue
        used.add(blob)
        if by_id[blob] != (sha, size):
            problems.append(f"message {mid}: hash/size differ from its blob's")
    for bid in by_id:
        if bid not in used:
            problems.append(f"blob {bid} has no delivery")
    tmp = list((qdir / "tmp").iterdir())
    if tmp:
        problems.append(f"tmp/ holds {len(tmp)} entries after a clean stop")
    damaged = [p.name for p in (qdir / "journal").iterdir() if p.name.endswith(".damaged")]
    if damaged:
        problems.append(f"journal segments set aside as damaged: {damaged}")
    stats = {"blobs": len(blobs), "messages": len(messages), "files": len(on_disk),
             "indexed_ids": {m[0] for m in messages}}
    return problems, stats


# ------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--bin", type=Path, default=None, help="the moat binary (default: MOAT_BIN, "
                    "else $CARGO_TARGET_DIR/debug/moat, else ~/.cache/moat-target/debug/moat)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--banners", type=int, default=2)
    ap.add_argument("--rate", type=float, default=400,
                    help="messages a second, all senders together (0: unthrottled)")
    ap.add_argument("--min-delay", type=float, default=0.15, help="seconds of load before a kill")
    ap.add_argument("--max-delay", type=float, default=1.5)
    ap.add_argument("--startup-kills", type=float, default=0.15,
                    help="share of kills aimed at a random moment of start-up (recovery)")
    ap.add_argument("--stop-kills", type=float, default=0.1,
                    help="share of kills aimed at the clean stop (SIGTERM, then SIGKILL)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--quiet", action="store_true", help="no line per kill")
    args = ap.parse_args()
    if not 0 < args.kills <= 100_000:
        ap.error("--kills must be between 1 and 100000")
    bin_path = (args.bin or default_bin()).resolve()
    if not os.access(bin_path, os.X_OK):
        print(f"crash-campaign: no moat binary at {bin_path} (build it, or pass --bin / MOAT_BIN)",
              file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="moat-crash-"))
    moat = Moat(bin_path, root)
    print(f"crash campaign: seed={seed} kills={args.kills} senders={args.senders} "
          f"rate={args.rate:g}/s banners={args.banners} delay={args.min_delay:g}-"
          f"{args.max_delay:g}s bin={bin_path} dir={root}", flush=True)
    ledger = Ledger()
    stop = threading.Event()
    t0 = time.monotonic()
    per_sender = args.rate / args.senders if args.rate > 0 else 0
    threads = [threading.Thread(target=sender,
                                args=(n, moat.smtp_port, seed, per_sender, ledger, stop),
                                daemon=True) for n in range(args.senders)]
    threads += [threading.Thread(target=banner, args=(n, moat, seed, ledger, stop), daemon=True)
                for n in range(args.banners)]
    outcomes = {"running": 0, "start-up": 0, "stopping": 0, "stopped cleanly instead": 0}
    try:
        moat.spawn()
        moat.wait_ready()
        for t in threads:
            t.start()
        for k in range(1, args.kills + 1):
            draw = rng.random()
            during_start = k > 1 and draw < args.startup_kills
            during_stop = not during_start and draw > 1 - args.stop_kills
            if during_start:
                delay = rng.uniform(0.0, 0.25)
            else:
                delay = rng.uniform(args.min_delay, args.max_delay)
            grace = rng.uniform(0.0, 0.3) if during_stop else 0.0
            started = time.monotonic()
            if k > 1:
                moat.spawn()
                if not during_start:
                    moat.wait_ready()
            ready = time.monotonic() - started
            time.sleep(delay)
            if during_stop:
                how = moat.term_then_kill(grace)
                outcomes["stopping" if how.startswith("killed") else "stopped cleanly instead"] += 1
            else:
                moat.kill9()
                outcomes["start-up" if during_start else "running"] += 1
            if not args.quiet:
                with ledger.lock:
                    acked, bans = len(ledger.messages), len(ledger.bans_cli) + len(ledger.bans_api)
                if during_start:
                    when = "from spawn (start-up)"
                elif during_stop:
                    when = f"after ready, then SIGTERM and {grace:.3f}s: {how}"
                else:
                    when = f"after ready (up in {ready:.2f}s)"
                print(f"kill {k}/{args.kills}: {delay:.3f}s {when}; acknowledged so far: "
                      f"{acked} messages, {bans} bans", flush=True)
        # The last start: recovery, then a little more load, then a clean stop.
        moat.spawn()
        moat.wait_ready()
        time.sleep(0.5)
        stop.set()
        t_join = time.monotonic()
        for t in threads:
            t.join(60)
        print(f"final start: up, load stopped in {time.monotonic() - t_join:.2f}s", flush=True)
        api_bans = None
        c = http.client.HTTPConnection("127.0.0.1", moat.admin_port, timeout=30)
        c.request("GET", "/api/bans", headers={"Authorization": f"Bearer {TOKEN}"})
        r = c.getresponse()
        if r.status == 200:
            api_bans = {b["scope"] for b in json.loads(r.read())}
        c.close()
        t_stop = time.monotonic()
        code = moat.stop()
        print(f"clean stop (SIGTERM) took {time.monotonic() - t_stop:.2f}s", flush=True)
        if code != 0:
            raise HarnessError(f"moat exited with {code} after SIGTERM:\n{moat.log_tail()}")
    except HarnessError as e:
        stop.set()
        moat.kill_quietly()
        print(f"crash-campaign: HARNESS FAILURE: {e}", file=sys.stderr)
        print(f"crash-campaign: seed={seed}; state kept in {root}", file=sys.stderr)
        return 2
    except BaseException:
        stop.set()
        moat.kill_quietly()
        raise

    # ---- verification (Moat is stopped)
    t_verify = time.monotonic()
    r = moat.cli("quarantine", "--quarantine", str(moat.quarantine), "list", "--json",
                 "--limit", "100000000")
    if r.returncode != 0:
        print(f"crash-campaign: moat quarantine list failed: {r.stderr.decode()}", file=sys.stderr)
        return 1
    listed = {m["id"]: m for m in json.loads(r.stdout)}
    found = 0
    lost: list[str] = []
    for qid, (sha, mail_from) in ledger.messages.items():
        m = listed.get(qid)
        if m is None:
            lost.append(f"{qid} ({mail_from}): not in the quarantine")
        elif m["sha256"] != sha or m["mail_from"] != mail_from:
            lost.append(f"{qid} ({mail_from}): stored with other content or envelope")
        else:
            found += 1
    lost += [f"{q}: the same queue id was answered for two deliveries" for q in ledger.reused_ids]
    problems, stats = check_quarantine(moat.quarantine)
    unindexed = [q for q in ledger.messages if q in listed and q not in stats["indexed_ids"]]
    if unindexed:
        problems.append(f"{len(unindexed)} acknowledged messages still only in the journal after "
                        f"a clean stop, e.g. {unindexed[:3]}")
    r = moat.cli("bans", "list", "--json", "--state-dir", str(moat.state))
    if r.returncode != 0:
        print(f"crash-campaign: moat bans list failed: {r.stderr.decode()}", file=sys.stderr)
        return 1
    scopes = {b["scope"] for b in json.loads(r.stdout)}

    def present(scope: str, have: set[str]) -> bool:
        return scope in have or f"{scope}/32" in have

    acked_bans = ledger.bans_cli | ledger.bans_api
    bans_found = sum(1 for s in acked_bans if present(s, scopes))
    bans_lost = sorted(s for s in acked_bans if not present(s, scopes))
    api_missing = sorted(s for s in acked_bans if api_bans is not None and not present(s, api_bans))
    if api_bans is None:
        problems.append("GET /api/bans did not answer 200 after the last start")
    elif api_missing:
        problems.append(f"{len(api_missing)} acknowledged bans missing from GET /api/bans, "
                        f"e.g. {api_missing[:3]}")
    wall = time.monotonic() - t0

    print(f"seed: {seed}")
    print(f"kills: {args.kills} (SIGKILL while running: {outcomes['running']}, during start-up: "
          f"{outcomes['start-up']}, during the clean stop: {outcomes['stopping']}; "
          f"SIGTERM exited first: {outcomes['stopped cleanly instead']}; starts: {moat.starts})")
    print(f"wall time: {wall:.1f}s (verification {time.monotonic() - t_verify:.1f}s)")
    print(f"messages: acknowledged={len(ledger.messages) + len(ledger.reused_ids)} found={found} "
          f"lost={len(lost)} "
          f"(refused after DATA: {ledger.refused}, sessions cut: {ledger.broken})")
    print(f"bans: acknowledged={len(acked_bans)} (cli={len(ledger.bans_cli)} "
          f"api={len(ledger.bans_api)}) found={bans_found} lost={len(bans_lost)} "
          f"(not acknowledged: {ledger.bans_failed})")
    print(f"index: blobs={stats['blobs']} messages={stats['messages']} files={stats['files']} "
          f"problems={len(problems)}")
    for line in lost[:20]:
        print(f"LOST message {line}")
    for s in bans_lost[:20]:
        print(f"LOST ban {s}")
    for p in problems[:40]:
        print(f"CORRUPT {p}")
    bad = bool(lost or bans_lost or problems)
    print(f"result: {'FAIL' if bad else 'OK'} (lost = {len(lost) + len(bans_lost)}, 0 expected)")
    if bad or args.keep:
        print(f"state kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

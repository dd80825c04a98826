"""A private, real Postfix + Dovecot on loopback high ports, for the mail-side end-to-end tests,
and standard-library clients that speak to it from chosen 127.x.y.z source addresses.

    with MailStack(policy_addr="127.0.0.1:10040") as stack:
        stack.add_user("alice", "alice-pw")        # before start: no Postfix reload needed
        ...

Everything (configs, queue, mailboxes, logs, sockets) lives under one temporary directory,
which `stop()` removes (pass keep=True to keep it). Nothing binds a privileged port, and the
Postfix instance cannot send anything off the machine: both default_transport and
relay_transport are `error:`, unless a RelaySink (a local smtp-sink standing in for the
internet) is passed as `sink=`: then everything relayed off-box lands in that sink.

Opt-in: `services=("submission", "submissions")` adds Debian's stock submission services,
verbatim from /usr/share/postfix/master.cf.dist, on loopback high ports (with a self-signed
certificate); `milter_addr=` wires a milter in main.cf the way rspamd or OpenDKIM attach.

Needs root (Postfix's master and Dovecot's master start as root, as in production), the Debian
packages postfix, dovecot-core and dovecot-imapd (scripts/install-test-deps.sh).

Behaviour measured against Postfix 3.7.11 / Dovecot 2.3.19.1 is written down in
test_mail_harness.py.
"""

from __future__ import annotations

import atexit
import base64
import imaplib
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

DOMAIN = "moat.test"
MYHOSTNAME = "mx.moat.test"
TEST_POLICY_TOKEN = "moat-test-policy-token"
TEST_HASH_NONCE = "moat-test-nonce-0123456789"
# The mailbox owner for Postfix's virtual(8) and Dovecot's static userdb.
MAIL_USER = "nobody"
NO_OUTBOUND = "error:outbound disabled in tests"
# Debian's stock master.cf template (the commented services in /etc/postfix/master.cf).
MASTER_CF_TEMPLATE = Path("/usr/share/postfix/master.cf.dist")
STOCK_SERVICES = ("submission", "submissions")
# Dovecot 2.3.19's default (`doveconf -d auth_policy_request_attributes`).
DEFAULT_POLICY_ATTRIBUTES = (
    "login=%{requested_username} pwhash=%{hashed_password} remote=%{rip} "
    "device_id=%{client_id} protocol=%s session_id=%{session}"
)


# The 10,000 most common passwords (data/common-passwords.txt): what bots try, and what Moat
# makes honey accounts' passwords from.
COMMON_PASSWORDS = [p.strip() for p in (Path(__file__).resolve().parents[2] / "data" / "common-passwords.txt")
                    .read_text().splitlines() if p.strip()]


class MailStackError(RuntimeError):
    pass


# Stacks still running when the interpreter exits (a test forgot stop(), or pytest was
# interrupted with Ctrl-C) are stopped then, so no Postfix or Dovecot outlives the tests.
_LIVE: "weakref.WeakSet[MailStack]" = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for stack in list(_LIVE):
        try:
            stack.stop()
        except Exception:  # noqa: BLE001 (best effort at exit)
            pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct currently free TCP ports."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port(host)
        if p not in ports:
            ports.append(p)
    return ports


def stock_service(name: str, template: str | None = None) -> tuple[list[str], list[str]]:
    """The commented `#<name> inet n - y - - smtpd` block of Debian's master.cf template:
    (its 8 fields, its `-o` option lines uncommented and stripped, e.g. "-o syslog_name=...").
    Comment text inside the block is skipped; option values are kept exactly as the template
    has them (`$mua_*` references included, in templates that use them)."""
    text = template if template is not None else MASTER_CF_TEMPLATE.read_text()
    lines = text.splitlines()
    head = re.compile(rf"^#{re.escape(name)}\s+inet\s")
    for i, line in enumerate(lines):
        if head.match(line):
            fields = line[1:].split()
            opts = []
            for cont in lines[i + 1:]:
                # Continuation lines are indented ("#  -o ...", "#     comment text"); a
                # service line ("#submissions inet ...") or a heading ("# Choose one: ...")
                # ends the block.
                if not re.match(r"^#(\s{2,}|\t)", cont):
                    break
                body = cont[1:].strip()
                if body.startswith("-o ") or body.startswith("-o\t"):
                    opts.append(body)
            return fields, opts
    raise MailStackError(f"no `#{name} inet` service in the master.cf template")


def _override_lines(tokens) -> list[str]:
    """["-o", "a=b", "c=d"] -> ["  -o a=b", "  -o c=d"]: a bare `name=value` gets its -o."""
    out, it = [], iter(tokens)
    for t in it:
        if t == "-o":
            out.append(f"  -o {next(it)}")
        elif t.startswith("-o "):
            out.append(f"  {t}")
        else:
            out.append(f"  -o {t}")
    return out


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours would still answer kill(0); reap it if it is our child.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} unreadable or missing)"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Polls pred() until it returns something truthy; raises MailStackError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise MailStackError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _check_credential(login: str, password: str) -> None:
    for name, v in (("login", login), ("password", password)):
        if not v or any(c in v for c in ":\n\r\0") or (name == "login" and any(c.isspace() for c in v)):
            raise ValueError(f"{name} {v!r} cannot go into a passwd-file")


class MailStack:
    """A private Postfix (SMTP on `smtp_port`) using a private Dovecot (IMAP on `imap_port`,
    SASL on `auth_port`) for SMTP AUTH. Real users get a passdb entry and a mailbox in
    virtual domain `moat.test`; honey accounts only get a passdb entry in `honey_passwd`, a
    second passwd-file that Dovecot re-reads whenever it changes.

    policy_addr "127.0.0.1:PORT": Postfix asks that SMTP access policy server, in the
      restriction lists named in policy_in ("sender", "recipient", "relay", "client", "helo",
      "data", "end_of_data"), with default_action=DUNNO (fail open). policy_options adds
      per-policy settings inside the braces, e.g. {"try_limit": 1}.
    policy_url "http://127.0.0.1:PORT/": Dovecot's auth policy server (sent
      `Authorization: Bearer <policy_token>`, full-length pwhash with `policy_nonce`).
    services ("submission", "submissions"): Debian's stock services of that name, their `-o`
      lines verbatim from /usr/share/postfix/master.cf.dist, listening on
      `submission_port` / `submissions_port` (127.0.0.1:<free port> as the service name,
      chroot off). They need TLS (submission: STARTTLS required before AUTH; submissions:
      wrapper mode), so a self-signed certificate for mx.moat.test is generated into the
      stack directory and set in main.cf; port 25 keeps smtpd_tls_security_level = none.
    service_overrides {"submission": ["-o", "smtpd_milters="]}: extra `-o` lines appended
      to a service ("smtp" is the port-25 service).
    milter_addr "127.0.0.1:PORT": main.cf `smtpd_milters = inet:127.0.0.1:PORT` ("unix:/path":
      `smtpd_milters = unix:/path`),
      milter_default_action = accept (fail open), milter_protocol = 6, non_smtpd_milters
      empty.
    sink RelaySink: default_transport and relay_transport `smtp:[127.0.0.1]:<sink port>`,
      so everything relayed off-box (and every bounce to an outside sender) lands there.
    postfix_settings: main.cf settings applied last (e.g.
      {"smtpd_reject_unlisted_recipient": "no"}).
    """

    def __init__(
        self,
        honey_passwd: str | os.PathLike | None = None,
        *,
        policy_addr: str | None = None,
        policy_in: tuple[str, ...] = ("sender", "recipient"),
        policy_options: dict[str, object] | None = None,
        policy_request_limit: int = 0,
        policy_max_idle: str = "300s",
        policy_url: str | None = None,
        policy_token: str = TEST_POLICY_TOKEN,
        policy_nonce: str = TEST_HASH_NONCE,
        policy_attributes: str = DEFAULT_POLICY_ATTRIBUTES,
        postfix_settings: dict[str, str] | None = None,
        dovecot_extra: str = "",
        services: tuple[str, ...] = (),
        service_overrides: dict[str, list[str]] | None = None,
        milter_addr: str | None = None,
        sink: "RelaySink | None" = None,
        parent_dir: str | os.PathLike | None = None,
        keep: bool = False,
        timeout: float = 20.0,
    ) -> None:
        if os.geteuid() != 0:
            raise MailStackError("MailStack needs root (Postfix and Dovecot masters start as root)")
        for tool in ("postfix", "postconf", "postqueue", "dovecot", "doveadm"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise MailStackError(
                    f"{tool} not found: run scripts/install-test-deps.sh (postfix, dovecot-core, "
                    "dovecot-imapd)"
                )
        bad = set(policy_in) - {"client", "helo", "sender", "recipient", "relay", "data", "end_of_data"}
        if bad:
            raise ValueError(f"unknown restriction lists in policy_in: {sorted(bad)}")
        self.policy_addr = policy_addr
        self.policy_in = tuple(policy_in)
        self.policy_options = dict(policy_options or {})
        self.policy_request_limit = policy_request_limit
        self.policy_max_idle = policy_max_idle
        self.policy_url = policy_url
        self.policy_token = policy_token
        self.policy_nonce = policy_nonce
        self.policy_attributes = policy_attributes
        self.postfix_settings = dict(postfix_settings or {})
        self.dovecot_extra = dovecot_extra
        bad = set(services) - set(STOCK_SERVICES)
        if bad:
            raise ValueError(f"unknown stock services: {sorted(bad)} (known: {STOCK_SERVICES})")
        self.services = tuple(services)
        self.service_overrides = {k: list(v) for k, v in (service_overrides or {}).items()}
        bad = set(self.service_overrides) - {"smtp", *self.services}
        if bad:
            raise ValueError(f"overrides for services this stack does not run: {sorted(bad)}")
        self.milter_addr = milter_addr
        self.sink = sink
        self.keep = keep
        self.timeout = timeout

        pw = pwd.getpwnam(MAIL_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

        # Our own directory, world-traversable: postfix, dovecot and nobody all walk into it
        # (pytest's tmp_path lives under a 0700 directory, so it cannot be used directly).
        self.root = Path(tempfile.mkdtemp(prefix="moat-mail-", dir=parent_dir))
        os.chmod(self.root, 0o755)
        self.users_passwd = self.root / "users.passwd"
        self.honey_passwd = Path(honey_passwd) if honey_passwd else self.root / "honey.passwd"
        self.vmailbox = self.root / "vmailbox"
        self.vmail = self.root / "vmail"
        self.home = self.root / "home"
        self.dovecot_conf = self.root / "dovecot.conf"
        self.dovecot_base = self.root / "dovecot-run"
        self.dovecot_state = self.root / "dovecot-state"
        self.dovecot_log_path = self.root / "dovecot.log"
        self.dovecot_stdout = self.root / "dovecot.stdout"
        self.postfix_dir = self.root / "postfix"
        self.queue_dir = self.root / "postfix-queue"
        self.data_dir = self.root / "postfix-data"
        self.maillog_path = self.root / "maillog"
        self.tls_cert = self.root / "tls-cert.pem"
        self.tls_key = self.root / "tls-key.pem"

        self.smtp_port = 0
        self.submission_port = 0
        self.submissions_port = 0
        self.imap_port = 0
        self.auth_port = 0
        self._users: dict[str, str] = {}
        self._honey: dict[str, str] = {}
        self._dovecot_pid: int | None = None
        self._postfix_pid: int | None = None
        self._running = False
        self._removed = False

        self.users_passwd.touch()
        os.chmod(self.users_passwd, 0o644)
        if not self.honey_passwd.exists():
            self.honey_passwd.parent.mkdir(parents=True, exist_ok=True)
            self.honey_passwd.touch()
        self.vmailbox.touch()

    # ---------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> "MailStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "MailStack":
        if self._running:
            return self
        if self._removed:
            raise MailStackError("this MailStack was stopped and its directory removed; make a new one")
        _LIVE.add(self)
        try:
            (self.smtp_port, self.imap_port, self.auth_port, self.submission_port,
             self.submissions_port) = free_ports(5)
            if "submission" not in self.services:
                self.submission_port = 0
            if "submissions" not in self.services:
                self.submissions_port = 0
            for d, mode in ((self.vmail, 0o700), (self.home, 0o755)):
                d.mkdir(exist_ok=True)
                os.chown(d, self.uid, self.gid)
                os.chmod(d, mode)
            self._write_vmailbox()
            self._start_dovecot()
            self._start_postfix()
        except BaseException:
            self.stop()
            raise
        self._running = True
        return self

    def stop(self) -> None:
        """Stops Postfix and Dovecot (both at once, politely, SIGKILL after 10 s) and removes
        the directory unless keep=True. Safe to call more than once and after a failed start."""
        self._running = False
        _LIVE.discard(self)
        waits = [self._stop_postfix(), self._stop_dovecot()]
        for pid, helper in waits:
            if pid is None:
                continue
            try:
                wait_for(lambda: not _pid_alive(pid), 10, what=f"pid {pid} to exit")
            except MailStackError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if helper is not None:
                try:
                    helper.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    helper.kill()
                    helper.wait()
        if not self.keep and not self._removed and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
            self._removed = True

    @property
    def running(self) -> bool:
        return self._running

    # ---------------------------------------------------------------------------- Dovecot

    def _dovecot_config(self) -> str:
        policy = ""
        if self.policy_url:
            policy = f"""
auth_policy_server_url = {self.policy_url}
auth_policy_hash_nonce = {self.policy_nonce}
auth_policy_hash_truncate = 0
auth_policy_reject_on_fail = no
auth_policy_server_api_header = Authorization: Bearer {self.policy_token}
auth_policy_request_attributes = {self.policy_attributes}
"""
        return f"""# Written by tests/e2e/mail_harness.py
instance_name = {self.root.name}
base_dir = {self.dovecot_base}
state_dir = {self.dovecot_state}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
log_path = {self.dovecot_log_path}
info_log_path = {self.dovecot_log_path}
mail_location = maildir:{self.vmail}/%u
first_valid_uid = {min(self.uid, 500)}
first_valid_gid = 1
shutdown_clients = yes
{policy}
# Real users first, honey accounts second; Dovecot stats a passwd-file on every lookup and
# re-reads it when it changed, so honey accounts can be added while it runs.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_passwd}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.honey_passwd}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.home}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service auth {{
  # root, so that a honey passwd-file anywhere (e.g. under pytest's 0700 tmp dir) is readable
  user = root
  inet_listener {{
    address = 127.0.0.1
    port = {self.auth_port}
  }}
}}
{self.dovecot_extra}
"""

    def _start_dovecot(self) -> None:
        self.dovecot_base.mkdir(exist_ok=True)
        self.dovecot_state.mkdir(exist_ok=True)
        self.dovecot_conf.write_text(self._dovecot_config())
        chk = subprocess.run(["doveconf", "-c", str(self.dovecot_conf), "-n"],
                             capture_output=True, text=True, timeout=self.timeout)
        if chk.returncode != 0:
            raise MailStackError(f"doveconf rejects {self.dovecot_conf}:\n{chk.stderr.strip()}")
        # Dovecot daemonizes but keeps the caller's stdout/stderr: never a pipe.
        with open(self.dovecot_stdout, "ab") as out:
            r = subprocess.run(["dovecot", "-c", str(self.dovecot_conf)], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=out, timeout=self.timeout)
        if r.returncode != 0:
            raise MailStackError(
                f"dovecot -c {self.dovecot_conf} exited {r.returncode}:\n{_tail(self.dovecot_stdout)}\n"
                f"--- dovecot.log\n{_tail(self.dovecot_log_path)}"
            )
        pidfile = self.dovecot_base / "master.pid"
        try:
            self._dovecot_pid = wait_for(lambda: _read_pid(pidfile), self.timeout, what="dovecot master.pid")
            wait_for(lambda: _port_open(self.imap_port) and _port_open(self.auth_port), self.timeout,
                     what=f"dovecot IMAP :{self.imap_port} and auth :{self.auth_port}")
        except MailStackError as e:
            raise MailStackError(f"{e}\n--- dovecot.log\n{_tail(self.dovecot_log_path)}") from None

    def _stop_dovecot(self) -> tuple[int | None, subprocess.Popen | None]:
        """Starts `doveadm stop` (which itself waits ~3 s for Dovecot to wind down) without
        waiting; returns (master pid, the doveadm process)."""
        pid = self._dovecot_pid or _read_pid(self.dovecot_base / "master.pid")
        self._dovecot_pid = None
        if not pid or not _pid_alive(pid):
            return None, None
        helper = subprocess.Popen(["doveadm", "-c", str(self.dovecot_conf), "stop"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return pid, helper

    # ---------------------------------------------------------------------------- Postfix

    def postconf(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs `postconf -c <private config dir> ARGS...`."""
        r = subprocess.run(["postconf", "-c", str(self.postfix_dir), *args], capture_output=True,
                           text=True, timeout=self.timeout)
        if check and (r.returncode != 0 or "warning" in r.stderr):
            raise MailStackError(f"postconf {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def _policy_entry(self) -> str:
        opts = {"default_action": "DUNNO", **self.policy_options}
        inner = ", ".join([f"inet:{self.policy_addr}"] + [f"{k}={v}" for k, v in opts.items()])
        return f"check_policy_service {{ {inner} }}"

    def _postfix_settings(self) -> dict[str, str]:
        s = {
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.maillog_path),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": "postfix-moat",
            "multi_instance_enable": "no",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.1/32",
            "myhostname": MYHOSTNAME,
            "myorigin": DOMAIN,
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_maps": f"texthash:{self.vmailbox}",
            "virtual_mailbox_base": str(self.vmail),
            "virtual_uid_maps": f"static:{self.uid}",
            "virtual_gid_maps": f"static:{self.gid}",
            "virtual_transport": "virtual",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": f"inet:127.0.0.1:{self.auth_port}",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            # Whatever /etc/postfix/main.cf says, these start empty (policy entries go in below).
            **{f"smtpd_{w}_restrictions": "" for w in ("client", "helo", "sender", "recipient", "data", "end_of_data")},
            "smtpd_delay_reject": "yes",
            "relay_domains": "",
            "transport_maps": "",
            "virtual_alias_maps": "",
            "content_filter": "",
            "smtpd_milters": "",
            "non_smtpd_milters": "",
            "relayhost": "",
            "default_transport": NO_OUTBOUND,
            "relay_transport": NO_OUTBOUND,
            "smtpd_policy_service_request_limit": str(self.policy_request_limit),
            "smtpd_policy_service_max_idle": str(self.policy_max_idle),
        }
        if self.policy_addr:
            entry = self._policy_entry()
            for where in self.policy_in:
                key = f"smtpd_{where}_restrictions"
                s[key] = entry if key != "smtpd_relay_restrictions" else f"{entry}, {s[key]}"
        if self.milter_addr:
            s.update({
                "smtpd_milters": self.milter_addr if self.milter_addr.startswith("unix:")
                else f"inet:{self.milter_addr}",
                "non_smtpd_milters": "",
                "milter_default_action": "accept",
                "milter_protocol": "6",
            })
        if self.services:
            s.update({"smtpd_tls_cert_file": str(self.tls_cert), "smtpd_tls_key_file": str(self.tls_key)})
        if self.sink is not None:
            s.update(self.sink.settings())
        s.update(self.postfix_settings)
        return s

    def _master_cf(self, text: str) -> str:
        """Debian's master.cf minus every `inet` service (no port 25, no submission), plus our
        smtpd on 127.0.0.1:<smtp_port> and the stock services asked for in `services`, with
        chroot off everywhere (a jail in the queue directory would need copies of /etc
        files)."""
        entries: list[list[str]] = []
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                entries.append([line])
            elif line[0].isspace() and entries:
                entries[-1].append(line)
            else:
                entries.append([line])
        out = []
        for entry in entries:
            f = entry[0].split()
            if entry[0].startswith("#") or len(f) < 8:
                out.extend(entry)
                continue
            if f[1] == "inet":
                continue
            f[4] = "n"
            out.append(" ".join(f))
            out.extend(entry[1:])
        out.append(f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd")
        out.extend(_override_lines(self.service_overrides.get("smtp", ())))
        template = MASTER_CF_TEMPLATE.read_text() if self.services else ""
        for name in self.services:
            fields, opts = stock_service(name, template)
            fields[0] = f"127.0.0.1:{self.service_port(name)}"
            fields[4] = "n"
            out.append(f"# Debian's stock `{name}` service (master.cf.dist), on a loopback high port")
            out.append(" ".join(fields))
            out.extend(f"  {o}" for o in opts)
            out.extend(_override_lines(self.service_overrides.get(name, ())))
        return "\n".join(out) + "\n"

    def service_port(self, name: str) -> int:
        """The port of "smtp" (25's stand-in), "submission" or "submissions"."""
        port = {"smtp": self.smtp_port, "submission": self.submission_port,
                "submissions": self.submissions_port}.get(name)
        if not port:
            raise MailStackError(f"this stack runs no {name!r} service (services={self.services})")
        return port

    def _make_certificate(self) -> None:
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={MYHOSTNAME}",
             "-days", "2", "-keyout", str(self.tls_key), "-out", str(self.tls_cert)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=self.timeout)
        if r.returncode != 0:
            raise MailStackError(f"openssl req failed: {r.stderr.strip()}")
        os.chmod(self.tls_key, 0o600)
        os.chmod(self.tls_cert, 0o644)

    def _configure_postfix(self) -> None:
        self.postfix_dir.mkdir(exist_ok=True)
        if self.services:
            self._make_certificate()
        shutil.copyfile("/etc/postfix/main.cf", self.postfix_dir / "main.cf")
        (self.postfix_dir / "master.cf").write_text(self._master_cf(Path("/etc/postfix/master.cf").read_text()))
        self.queue_dir.mkdir(exist_ok=True)
        os.chmod(self.queue_dir, 0o755)
        self.data_dir.mkdir(exist_ok=True)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pf.pw_uid, pf.pw_gid)
        os.chmod(self.data_dir, 0o700)
        self.postconf("-e", *(f"{k}={v}" for k, v in self._postfix_settings().items()))

    def _postfix_cmd(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.postfix_dir), *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=timeout or self.timeout)

    def _start_postfix(self) -> None:
        self._configure_postfix()
        # `postfix start` runs postfix-script check-fatal, which runs `post-install
        # create-missing`: that creates the queue's subdirectories with their owners (an
        # explicit `set-permissions` would also walk every installed Postfix file: ~3 s).
        for step in (("start",),):
            r = self._postfix_cmd(*step)
            if r.returncode != 0:
                raise MailStackError(
                    f"postfix -c {self.postfix_dir} {step[0]} exited {r.returncode}:\n"
                    f"{(r.stdout + r.stderr).strip()}\n--- maillog\n{_tail(self.maillog_path)}"
                )
        pidfile = self.queue_dir / "pid" / "master.pid"
        try:
            self._postfix_pid = wait_for(lambda: _read_pid(pidfile), self.timeout, what="postfix master.pid")
            ports = [p for p in (self.smtp_port, self.submission_port, self.submissions_port) if p]
            wait_for(lambda: all(_port_open(p) for p in ports), self.timeout,
                     what=f"postfix smtpd on {ports}")
        except MailStackError as e:
            raise MailStackError(f"{e}\n--- maillog\n{_tail(self.maillog_path)}") from None

    def _stop_postfix(self) -> tuple[int | None, None]:
        """`postfix stop` (returns at once; the master needs ~2 s to exit); returns its pid."""
        pid = self._postfix_pid or _read_pid(self.queue_dir / "pid" / "master.pid")
        self._postfix_pid = None
        if not pid or not _pid_alive(pid):
            return None, None
        try:
            self._postfix_cmd("stop", timeout=15)
        except subprocess.TimeoutExpired:
            pass
        return pid, None

    def reload(self) -> None:
        """`postfix reload`: new smtpd processes re-read main.cf and the texthash maps."""
        r = self._postfix_cmd("reload")
        if r.returncode != 0:
            raise MailStackError(f"postfix reload failed: {(r.stdout + r.stderr).strip()}")

    # ---------------------------------------------------------------------------- accounts

    @staticmethod
    def address(login: str) -> str:
        return login if "@" in login else f"{login}@{DOMAIN}"

    def _write_vmailbox(self) -> None:
        lines = [f"{self.address(u)} {u}/" for u in self._users]
        tmp = self.vmailbox.with_suffix(".new")
        tmp.write_text("".join(ln + "\n" for ln in lines))
        tmp.replace(self.vmailbox)

    @staticmethod
    def _append_line(path: Path, line: str) -> None:
        """Appends by writing a complete new file and renaming it over the old one, so Dovecot
        never parses a half-written file."""
        try:
            old = path.read_text()
        except FileNotFoundError:
            old = ""
        if old and not old.endswith("\n"):
            old += "\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            f.write(old + line + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    @staticmethod
    def _settle() -> None:
        """Dovecot stats a passwd-file at most once per second (db-passwd-file.c:
        `if (pw->last_sync_time == ioloop_time) return cached`): a change made in the second
        of the last lookup is seen from the next second on. Sleep past that boundary."""
        now = time.time()
        time.sleep(int(now) + 1 - now + 0.02)

    def add_user(self, login: str, password: str, wait: bool = True) -> str:
        """A real user: passdb entry plus a mailbox at <login>@moat.test (unless login holds
        an @). Returns the address. Postfix reads texthash maps at process start: adding a
        user to a running stack triggers `postfix reload` (and, with wait, the passwd-file
        settling delay of add_honey)."""
        _check_credential(login, password)
        if login in self._users or login in self._honey:
            raise ValueError(f"{login!r} is already a user or honey account")
        self._users[login] = password
        self._append_line(self.users_passwd, f"{login}:{password}")
        self._write_vmailbox()
        if self._running:
            self.reload()
            if wait:
                self._settle()
        return self.address(login)

    def add_honey(self, login: str, password: str, wait: bool = True) -> None:
        """A honey account: added to the honey passwd-file, which Dovecot re-reads on a later
        lookup without a restart; no mailbox. Dovecot checks the file at most once a second,
        so with wait (default) this returns once the next lookup is certain to see it
        (<= ~1 s).

        Not for a real user's login: Dovecot falls through to the next passdb when the
        password does not match, so a honey entry would be a second password for that user."""
        _check_credential(login, password)
        if login in self._users:
            raise ValueError(f"{login!r} is a real user; a honey entry would become a second password")
        self._honey[login] = password
        self._append_line(self.honey_passwd, f"{login}:{password}")
        if self._running and wait:
            self._settle()

    # ---------------------------------------------------------------------------- mail & logs

    def _maildir(self, login: str) -> Path:
        return self.vmail / login

    def mailbox(self, login: str) -> list[bytes]:
        """Messages delivered to a user's Maildir (new/ and cur/), oldest first."""
        files = []
        for sub in ("new", "cur"):
            d = self._maildir(login) / sub
            if d.is_dir():
                files.extend(p for p in d.iterdir() if p.is_file())
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [p.read_bytes() for p in files]

    def all_delivered(self) -> int:
        """How many messages sit in all Maildirs together."""
        n = 0
        if self.vmail.is_dir():
            for user in self.vmail.iterdir():
                for sub in ("new", "cur"):
                    d = user / sub
                    if d.is_dir():
                        n += sum(1 for p in d.iterdir() if p.is_file())
        return n

    def wait_delivered(self, login: str, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Waits until `login` has at least `count` messages; returns them."""

        def enough():
            msgs = self.mailbox(login)
            return msgs if len(msgs) >= count else None

        try:
            return wait_for(enough, timeout, what=f"{count} message(s) in {login}'s mailbox")
        except MailStackError as e:
            raise MailStackError(f"{e}\n--- maillog\n{_tail(self.maillog_path)}\n--- mailq\n{self.mailq()}") from None

    def _postqueue(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["postqueue", "-c", str(self.postfix_dir), *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=self.timeout)

    def mailq(self) -> str:
        """`postqueue -p` of the private instance."""
        r = self._postqueue("-p")
        if r.returncode != 0:
            raise MailStackError(f"postqueue -p failed: {(r.stdout + r.stderr).strip()}")
        return r.stdout

    def queue_ids(self) -> list[str]:
        """Queue IDs in the private queue (a trailing * = active, ! = on hold is stripped)."""
        return re.findall(r"^([0-9A-Za-z]+)[*!]?\s+\d+\s", self.mailq(), re.M)

    def flush(self) -> None:
        """`postqueue -f`: retry deferred mail now."""
        r = self._postqueue("-f")
        if r.returncode != 0:
            raise MailStackError(f"postqueue -f failed: {(r.stdout + r.stderr).strip()}")

    def maillog(self) -> str:
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def dovecot_log(self) -> str:
        try:
            return self.dovecot_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# -------------------------------------------------------------------------------------------
# Clients, standard library only, each from a chosen 127.x.y.z source address


def smtp_session(stack: MailStack, source_ip: str, timeout: float = 15.0) -> smtplib.SMTP:
    """A connected smtplib.SMTP (banner read, no EHLO yet) from source_ip."""
    return smtplib.SMTP("127.0.0.1", stack.smtp_port, source_address=(source_ip, 0), timeout=timeout)


def auth_plain(smtp: smtplib.SMTP, login: str, password: str) -> tuple[int, bytes]:
    """EHLO if needed, then exactly one `AUTH PLAIN <initial response>` (what a bot sends; no
    fallback to other mechanisms). Returns Postfix's (code, message)."""
    smtp.ehlo_or_helo_if_needed()
    token = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
    return smtp.docmd("AUTH", "PLAIN " + token)


class _SourceIMAP(imaplib.IMAP4):
    def __init__(self, host: str, port: int, source_ip: str, timeout: float) -> None:
        self._source_ip = source_ip
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source_ip, 0))


def imap_login(stack: MailStack, source_ip: str, login: str, password: str, timeout: float = 15.0) -> bool:
    """One IMAP LOGIN from source_ip: True if Dovecot accepted it."""
    conn = _SourceIMAP("127.0.0.1", stack.imap_port, source_ip, timeout)
    try:
        try:
            typ, _ = conn.login(login, password)
        except imaplib.IMAP4.error:
            return False
        return typ == "OK"
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def _read_reply(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """Reads one (possibly multi-line) SMTP reply; returns (code, exact bytes incl. CRLFs)."""
    start = 0
    while True:
        nl = buf.find(b"\n", start)
        if nl < 0:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed mid-reply: {bytes(buf)!r}")
            buf.extend(chunk)
            continue
        line = bytes(buf[start:nl + 1])
        start = nl + 1
        if len(line) < 4 or line[3:4] != b"-":
            reply = bytes(buf[:start])
            del buf[:start]
            return int(reply[:3]), reply


def transcript_rcpt(stack: MailStack, source_ip: str, sender: str, recipients, helo: str = "client.example",
                    timeout: float = 30.0) -> list[tuple[str, int, bytes]]:
    """EHLO, MAIL FROM:<sender>, then RCPT TO:<r> for each recipient over a raw socket;
    returns [(recipient, code, exact reply bytes)] and QUITs. If Postfix rejects MAIL or
    hangs up, the remaining recipients get code 0 and the last reply seen."""
    out: list[tuple[str, int, bytes]] = []
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", stack.smtp_port), timeout,
                                  source_address=(source_ip, 0)) as s:
        _read_reply(s, buf)
        s.sendall(f"EHLO {helo}\r\n".encode())
        _read_reply(s, buf)
        s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
        code, reply = _read_reply(s, buf)
        if code != 250:
            return [(r, 0, reply) for r in recipients]
        for r in recipients:
            try:
                s.sendall(f"RCPT TO:<{r}>\r\n".encode())
                code, reply = _read_reply(s, buf)
            except (ConnectionError, OSError) as e:
                code, reply = 0, str(e).encode()
            out.append((r, code, reply))
        try:
            s.sendall(b"QUIT\r\n")
            _read_reply(s, buf)
        except (ConnectionError, OSError):
            pass
    return out


def smtp_transaction(stack: MailStack, source_ip: str, sender: str, recipients, data: bytes | None = None,
                     helo: str = "client.example", port: int | None = None,
                     timeout: float = 30.0) -> dict:
    """One unauthenticated transaction over a raw socket, with the exact reply bytes: EHLO,
    MAIL FROM:<sender>, RCPT TO:<r> for each recipient, then (if `data` is given and some
    recipient got 250) DATA, the message, and ".". Returns {"mail": (code, reply), "rcpt":
    [(recipient, code, reply)], "data": (code, reply) or None}. A hang-up gives code 0."""
    recipients = list(recipients)
    out: dict = {"mail": (0, b""), "rcpt": [], "data": None}
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port or stack.smtp_port), timeout,
                                  source_address=(source_ip, 0)) as s:
        try:
            _read_reply(s, buf)
            s.sendall(f"EHLO {helo}\r\n".encode())
            _read_reply(s, buf)
            s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
            out["mail"] = _read_reply(s, buf)
            if out["mail"][0] != 250:
                return out
            for r in recipients:
                s.sendall(f"RCPT TO:<{r}>\r\n".encode())
                code, reply = _read_reply(s, buf)
                out["rcpt"].append((r, code, reply))
            if data is not None and any(code == 250 for _, code, _ in out["rcpt"]):
                s.sendall(b"DATA\r\n")
                code, reply = _read_reply(s, buf)
                if code == 354:
                    body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                    if not body.endswith(b"\r\n"):
                        body += b"\r\n"
                    body = re.sub(rb"(?m)^\.", b"..", body)
                    s.sendall(body + b".\r\n")
                    code, reply = _read_reply(s, buf)
                out["data"] = (code, reply)
            s.sendall(b"QUIT\r\n")
            _read_reply(s, buf)
        except (ConnectionError, OSError) as e:
            done = len(out["rcpt"])
            out["rcpt"] += [(r, 0, str(e).encode()) for r in recipients[done:]]
    return out


def smtp_connect(stack: MailStack, port: int, source_ip: str, tls: str = "none", helo: str = "client.example",
                 timeout: float = 15.0) -> smtplib.SMTP:
    """A connected, greeted smtplib.SMTP from source_ip to 127.0.0.1:port. tls: "none",
    "starttls" (EHLO, STARTTLS, EHLO again: what the stock submission service requires before
    it offers AUTH) or "wrapper" (TLS from the first byte: the stock submissions service).
    Certificates are not verified (the stack's is self-signed)."""
    if tls not in ("none", "starttls", "wrapper"):
        raise ValueError(f"tls must be none, starttls or wrapper, not {tls!r}")
    ctx = ssl._create_unverified_context()
    if tls == "wrapper":
        s: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname=helo,
                                           source_address=(source_ip, 0), timeout=timeout, context=ctx)
    else:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname=helo, source_address=(source_ip, 0),
                         timeout=timeout)
    try:
        s.ehlo(helo)
        if tls == "starttls":
            code, msg = s.starttls(context=ctx)
            if code != 220:
                raise smtplib.SMTPResponseException(code, msg)
            s.ehlo(helo)
    except BaseException:
        s.close()
        raise
    return s


class SubmitError(MailStackError):
    """A step before DATA failed: `step` ("AUTH", "MAIL", "RCPT"), Postfix's `code` and
    `reply`; `refused` holds each refused recipient's (code, reply)."""

    def __init__(self, step: str, code: int, reply: bytes, refused: dict | None = None) -> None:
        super().__init__(f"{step} answered {code} {reply!r}" + (f"; refused {refused}" if refused else ""))
        self.step, self.code, self.reply, self.refused = step, code, reply, refused or {}


def submit(stack: MailStack, port: int, source_ip: str, login: str | None, password: str | None,
           mail_from: str, rcpts, body: bytes | str, tls: str = "none", helo: str = "client.example",
           timeout: float = 30.0) -> int:
    """One session, one message, like a bot: connect from source_ip (TLS as in smtp_connect),
    one `AUTH PLAIN` if login is given, MAIL, RCPT for each recipient, DATA. Returns the
    final reply code of DATA (250 when Postfix took the message). Raises SubmitError when AUTH
    is not 235, MAIL is not 250 or every recipient was refused."""
    if isinstance(body, str):
        body = body.encode()
    rcpts = [rcpts] if isinstance(rcpts, str) else list(rcpts)
    s = smtp_connect(stack, port, source_ip, tls, helo, timeout)
    try:
        if login is not None:
            code, msg = auth_plain(s, login, password or "")
            if code != 235:
                raise SubmitError("AUTH", code, msg)
        code, msg = s.mail(mail_from)
        if code != 250:
            raise SubmitError("MAIL", code, msg)
        refused = {}
        for r in rcpts:
            code, msg = s.rcpt(r)
            if code not in (250, 251):
                refused[r] = (code, msg)
        if len(refused) == len(rcpts):
            raise SubmitError("RCPT", *next(iter(refused.values())), refused)
        code, _ = s.data(body)
        return code
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


# -------------------------------------------------------------------------------------------
# The internet, as far as the test Postfix can tell


class SinkMessage:
    """One transaction received by the sink: envelope (from smtp-sink's X-* dump headers) and
    the message as received."""

    def __init__(self, path: Path, raw: bytes) -> None:
        self.path = path
        self.raw = raw
        head, _, rest = raw.partition(b"\nReceived: ")
        self.mail_from = ""
        self.rcpts: list[str] = []
        self.client = ""
        for line in head.decode(errors="replace").splitlines():
            name, _, value = line.partition(": ")
            if name == "X-Mail-Args":
                m = re.search(r"<([^>]*)>", value)  # "<a@b> SIZE=123 BODY=8BITMIME", "<>"
                self.mail_from = m.group(1) if m else value
            elif name == "X-Rcpt-Args":
                m = re.search(r"<([^>]*)>", value)  # "<a@b> ORCPT=rfc822;a@b"
                self.rcpts.append(m.group(1) if m else value)
            elif name == "X-Client-Addr":
                self.client = value.strip()
        # The message proper starts after smtp-sink's three-line Received header.
        lines = rest.split(b"\n")
        self.data = b"\n".join(lines[3:]) if len(lines) > 3 else b""

    @property
    def is_dsn(self) -> bool:
        """A delivery status notification: null envelope sender and a
        multipart/report; report-type=delivery-status body."""
        flat = re.sub(rb"\s+", b" ", self.data.lower()).replace(b'"', b"")
        return self.mail_from == "" and b"multipart/report" in flat and b"report-type=delivery-status" in flat

    def mentions(self, text: str) -> bool:
        return text.lower().encode() in self.data.lower()

    def __repr__(self) -> str:
        return f"<SinkMessage from=<{self.mail_from}> to={self.rcpts} dsn={self.is_dsn} {self.path.name}>"


class RelaySink:
    """Postfix's own smtp-sink standing in for the outside world: the test Postfix relays to
    it (MailStack(sink=...) or postfix_settings=sink.settings()), and every message it
    receives is dumped to a file, so "nothing was relayed" is checked against something that
    would have received it. A context manager; stop() kills it."""

    def __init__(self, timeout: float = 5.0) -> None:
        if shutil.which("smtp-sink") is None:
            raise MailStackError("smtp-sink not found: it ships with postfix (scripts/install-test-deps.sh)")
        self.dir = Path(tempfile.mkdtemp(prefix="moat-relay-sink-"))
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-h", "sink.outside.example", "-d", f"{self.dir}/%M.",
             f"127.0.0.1:{self.port}", "32"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: self.proc.poll() is not None or _port_open(self.port), timeout,
                     what="smtp-sink to listen")
            if self.proc.poll() is not None:
                raise MailStackError(f"smtp-sink exited {self.proc.returncode}")
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> "RelaySink":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted((p for p in self.dir.iterdir() if p.is_file()), key=lambda p: (p.stat().st_mtime, p.name))

    def messages(self) -> list[bytes]:
        """Every dump file as bytes, oldest first (a transaction in progress included)."""
        return [p.read_bytes() for p in self._files()]

    def received(self) -> list[SinkMessage]:
        """Every transaction, parsed."""
        return [SinkMessage(p, p.read_bytes()) for p in self._files()]

    def count(self) -> int:
        return len(self._files())

    def dsns(self) -> list[SinkMessage]:
        return [m for m in self.received() if m.is_dsn]

    def wait(self, pred=None, count: int = 1, timeout: float = 20.0, what: str = "") -> list[SinkMessage]:
        """Waits until at least `count` received messages satisfy pred (default: any); returns
        them."""
        def enough():
            got = [m for m in self.received() if pred is None or pred(m)]
            return got if len(got) >= count else None
        return wait_for(enough, timeout, interval=0.1, what=what or f"{count} message(s) in the relay sink")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def settings(self) -> dict[str, str]:
        """main.cf settings that send everything not for a local domain to the sink."""
        nexthop = f"smtp:[127.0.0.1]:{self.port}"
        return {"relayhost": "", "default_transport": nexthop, "relay_transport": nexthop}

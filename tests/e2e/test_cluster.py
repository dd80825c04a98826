"""Issue 19, item 1: two instances behind the same test client share one Redis (Debian's
redis-server, started here on a loopback port). The ghost preset's per-email limit (3 an hour)
holds across both: the fourth send of one email, through either, gets the decoy, which the
instance that never saw Ghost's answer replays as the other learned it. A ban made on
one refuses the address on the other within a second. Redis killed mid-test: both keep
serving; restarted: they reconnect by themselves and catch up on the ban made meanwhile."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from moat_harness import (
    COHORT_PER_ADDRESS,
    MAGIC_LINK,
    NO_ACTION_PROOFS,
    address_pool,
    cleared_headers,
    free_port,
    get_from,
    post_from,
)

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="needs redis-server (scripts/install-test-deps.sh installs it)",
)


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def redis():
    r = RedisServer().start()
    yield r
    r.kill()


def config(redis: RedisServer) -> str:
    return NO_ACTION_PROOFS + COHORT_PER_ADDRESS + f'[cluster]\nredis = "redis://127.0.0.1:{redis.port}/"\n'


def signup(m, ip: str, email: str):
    return post_from(ip, m.url(MAGIC_LINK), headers=cleared_headers(m.base, ip), json_body={"email": email})


def refused(m, ip: str) -> bool:
    return get_from(ip, m.url("/")).status == 403


def test_two_instances_share_limits_and_bans(moat_factory, upstream, redis):
    m1 = moat_factory(config(redis), name="m1")
    m2 = moat_factory(config(redis), name="m2")
    for m in (m1, m2):
        assert m.wait_for(lambda m=m: any("caught up on the shared bans" in line for line in m.stdout_lines),
                          timeout=10), m.stdout_lines[-10:]

    # One victim's email from six addresses in six /24s: three through the first instance,
    # then through either. The fourth and later get the decoy, and the second instance, which
    # never forwarded a sign-up, answers with the success the first learned from Ghost.
    addrs = address_pool(6, first_octets=(41,), per_prefix=1)
    via = [m1, m1, m1, m2, m1, m2]
    replies = [signup(m, ip, "victim@example.com") for m, ip in zip(via, addrs)]
    assert len(upstream.magic_links()) == 3, [s.xff for s in upstream.magic_links()]
    assert all(s.xff in addrs[:3] for s in upstream.magic_links())
    first = replies[0]
    assert (first.status, first.body) == (201, b"Created.")
    for r in replies[3:]:
        assert r.comparable() == first.comparable(), (
            f"over the limit: the decoy, Ghost's own success: {r.comparable()} vs {first.comparable()}")
    assert any("took a decoy another instance learned" in line for line in m2.stdout_lines)

    # A ban on one refuses the address on the other within a second of the first enforcing it.
    attacker = "127.88.0.9"
    assert not refused(m2, attacker)
    assert m1.cli("bans", "add", attacker, "--ttl", "1h").returncode == 0
    assert m1.wait_for(lambda: refused(m1, attacker), timeout=5)
    t = time.monotonic()
    assert m2.wait_for(lambda: refused(m2, attacker), timeout=1.0, interval=0.02), (
        "the other instance did not refuse the banned address within a second")
    took = time.monotonic() - t
    ban = next(b for b in m2.bans() if b["scope"] == attacker)
    assert ban["origin"] == "manual", ban
    print(f"ban reached the other instance {took * 1000:.0f} ms after the first enforced it")

    # Redis goes away: both keep serving, counting on their own.
    redis.kill()
    assert get_from("127.88.1.1", m1.url("/")).status == 200
    assert get_from("127.88.1.1", m2.url("/")).status == 200
    r = signup(m2, "127.42.0.1", "during.outage@example.com")
    assert (r.status, r.body) == (201, b"Created.")
    assert upstream.magic_links()[-1].json == {"email": "during.outage@example.com"}
    r = signup(m1, "127.42.0.2", "during.outage2@example.com")
    assert (r.status, r.body) == (201, b"Created.")
    for m in (m1, m2):
        assert m.wait_for(lambda m=m: any("Redis does not answer" in line for line in m.stdout_lines), timeout=5)
    late = "127.88.0.10"
    assert m1.cli("bans", "add", late, "--ttl", "1h").returncode == 0
    assert m1.wait_for(lambda: refused(m1, late), timeout=5)
    assert not refused(m2, late)

    # Back: both reconnect by themselves and the ban made meanwhile reaches the other instance.
    redis.start()
    assert m2.wait_for(lambda: refused(m2, late), timeout=15, interval=0.2), (
        "the ban made while Redis was away never reached the other instance")
    assert refused(m2, attacker), "what was enforced stays enforced"
    # And the limits are shared again once each instance's connection is back (a restarted
    # Redis without persistence starts empty).
    probes = iter(address_pool(40, first_octets=(45,), per_prefix=1))

    def answers_again(m) -> bool:
        signup(m, next(probes), f"probe{time.monotonic_ns()}@example.com")
        return any("Redis answers again" in line for line in m.stdout_lines)

    for m in (m1, m2):
        assert m.wait_for(lambda m=m: answers_again(m), timeout=15, interval=0.3), m.stdout_lines[-10:]
    before = len(upstream.magic_links())
    for i, ip in enumerate(address_pool(4, first_octets=(44,), per_prefix=1)):
        signup((m2, m1)[i % 2], ip, "again@example.com")
    assert len(upstream.magic_links()) - before == 3, "3 an hour across both instances again"

    # Redis came back empty: the decoy learned before is shared again, so an instance started
    # now, which never saw Ghost's answer, still replays it over the limit.
    assert m1.wait_for(lambda: any("shared decoys learned while Redis was away" in line
                                   for m in (m1, m2) for line in m.stdout_lines), timeout=10)
    m3 = moat_factory(config(redis), name="m3")
    assert m3.wait_for(lambda: any("caught up on the shared bans" in line for line in m3.stdout_lines),
                       timeout=10), m3.stdout_lines[-10:]
    r = signup(m3, address_pool(1, first_octets=(46,), per_prefix=1)[0], "again@example.com")
    assert r.comparable() == first.comparable(), (r.comparable(), first.comparable())
    assert len(upstream.magic_links()) - before == 3
    assert any("took a decoy another instance learned" in line for line in m3.stdout_lines)


def test_a_cluster_config_error_names_its_line(tmp_path):
    from moat_harness import run_cli
    cfg = tmp_path / "moat.toml"
    cfg.write_text('[server]\nupstream = "http://127.0.0.1:9"\n[cluster]\nredis = "http://127.0.0.1:6379"\n'
                   'on_unreachable = "maybe"\n')
    r = run_cli("check", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"{cfg}:4" in out and "cluster.redis" in out, out
    assert f"{cfg}:5" in out and "cluster.on_unreachable" in out, out

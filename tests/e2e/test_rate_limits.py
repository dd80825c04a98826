"""The ghost preset's rate limits hold against address rotation: per target email (3/hour)
and per /24 (burst 10), while other networks and other emails are still served."""

from __future__ import annotations

from moat_harness import (
    COHORT_PER_ADDRESS,
    MAGIC_LINK,
    NO_ACTION_PROOFS,
    address_pool,
    cleared_headers,
    post_from,
)

# The actors are scripts holding a solved clearance cookie: these limits, not per-action proofs
# (test_action_proof.py) or the cohorts that never click (test_cohorts.py), are what these
# tests hold them with.
CONFIG = NO_ACTION_PROOFS + COHORT_PER_ADDRESS


def browser_signup(moat, ip: str, email: str):
    return post_from(ip, moat.url(MAGIC_LINK), headers=cleared_headers(moat.base, ip),
                     json_body={"email": email})


def test_per_email_limit_holds_against_rotating_addresses(moat_factory, upstream):
    moat = moat_factory(CONFIG)
    # One victim's address, asked for from 10 addresses in 10 different /24s, spelled with
    # different letter case (the limit keys on the lowercased email).
    addrs = address_pool(10, first_octets=(40,), per_prefix=1)
    spellings = ["victim@example.com", "Victim@Example.com", "VICTIM@EXAMPLE.COM",
                 "victim@EXAMPLE.com", "vIcTiM@example.CoM"]
    replies = []
    for i, ip in enumerate(addrs):
        email = spellings[i % len(spellings)]
        replies.append((ip, email, browser_signup(moat, ip, email)))

    reached = upstream.magic_links()
    assert len(reached) == 3, (
        f"{len(reached)} sign-in mails for one mailbox reached the upstream (limit 3/hour): "
        f"{[(s.xff, s.json) for s in reached]}")
    # The first three, in order, with what each client sent.
    assert [(s.xff, s.json) for s in reached] == [
        (ip, {"email": email}) for ip, email, _ in replies[:3]]

    first = replies[0][2]
    assert (first.status, first.body) == (201, b"Created.")
    for ip, email, r in replies[3:]:
        assert r.comparable() == first.comparable(), (
            f"over-limit request from {ip} for {email} answered differently from the genuine "
            f"success: {r.comparable()} vs {first.comparable()}")

    # The limit is per mailbox: a different email from an address that was refused passes.
    r = browser_signup(moat, addrs[-1], "someone.else@example.com")
    assert (r.status, r.body) == (201, b"Created.")
    assert len(upstream.magic_links()) == 4
    assert upstream.magic_links()[-1].json == {"email": "someone.else@example.com"}


def test_per_prefix_limit_holds_against_rotating_addresses_in_one_slash24(moat_factory, upstream):
    moat = moat_factory(CONFIG)
    # 30 addresses in 127.77.1.0/24, each asking for a different email.
    addrs = [f"127.77.1.{10 + i}" for i in range(30)]
    replies = [(ip, browser_signup(moat, ip, f"user{i}@example.com")) for i, ip in enumerate(addrs)]

    reached = upstream.magic_links()
    assert len(reached) <= 10, (
        f"{len(reached)} requests from one /24 reached the upstream (burst 10): "
        f"{[s.xff for s in reached]}")
    assert len(reached) == 10, (
        f"only {len(reached)} of the burst of 10 from one /24 reached the upstream")
    assert {s.xff for s in reached} == set(addrs[:10])

    ref = replies[0][1]
    assert (ref.status, ref.body) == (201, b"Created.")
    for ip, r in replies[10:]:
        assert r.comparable() == ref.comparable(), (
            f"over-limit request from {ip} answered differently from the genuine success: "
            f"{r.comparable()} vs {ref.comparable()}")

    # Other networks are still served: a neighbouring /24 and another /16 altogether.
    for ip, email in [("127.77.2.10", "neighbour@example.com"),
                      ("127.78.1.10", "far.away@example.com"),
                      ("127.77.0.200", "below@example.com")]:
        before = len(upstream.magic_links())
        r = browser_signup(moat, ip, email)
        assert (r.status, r.body) == (201, b"Created."), (ip, r)
        seen = upstream.magic_links()
        assert len(seen) == before + 1, f"sign-up from {ip} (another /24) did not reach the upstream"
        assert (seen[-1].xff, seen[-1].json) == (ip, {"email": email})

"""Issue 18, item 2: sign-ups that people confirm. Moat sees the sends of Ghost's sign-in mail
and the clicks on its link, counts them per cohort (network, user agent, language), and spends
the route's limits on the cohorts that never click first, keeping a share of the route for the
cohorts that do. Against the fake Ghost upstream, whose links give a member session only for a
token it mailed."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from moat_harness import (
    CHROME_UA,
    COHORT_PER_ADDRESS,
    MAGIC_LINK,
    NO_ACTION_PROOFS,
    chrome_headers,
    clearance_cookie,
    click_link,
    cleared_headers,
    person_post,
    post_from,
    reply_from_requests,
    session_from,
)
from test_browser_proof import decisions_for


def logged(moat, client: str, what: tuple[str, str]) -> bool:
    """Whether `client`'s decision lines include `what` (rule, action), waiting a moment for
    the line to come through Moat's stdout."""
    return bool(moat.wait_for(lambda: what in decisions_for(moat, client), timeout=3))

SEND = 'http.request.method eq "POST" and starts_with(lower(http.request.uri.path), "/members/api/send-magic-link")'

# A policy of its own: no other limit than the one on silent cohorts, so that a cohort can send
# fifty times; and rules that only note the standing, so the test can read it.
POLICY = f"""
[cohorts]
lag = "1s"

[[confirm]]
id = "magic-link"
send = '{SEND}'
click = 'http.request.method eq "GET" and http.request.uri.query contains "token=" and starts_with(lower(http.request.uri.path), "/members")'
click_cookie = "ghost-members-ssr"

[[rule]]
id = "note-confirmed"
expression = '{SEND} and moat.cohort eq "confirmed"'
action = "log"

[[rule]]
id = "note-silent"
expression = '{SEND} and moat.cohort eq "silent"'
action = "log"

[[rate_limit]]
id = "silent-first"
expression = '{SEND} and moat.cohort eq "silent"'
key = "global"
requests = 1
period = "1h"
action = "block"
status = 429
"""

FARM_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"


def _send(moat, ip: str, email: str, ua: str = CHROME_UA, lang: str = "en-US,en;q=0.9"):
    h = chrome_headers(moat.base, **{"User-Agent": ua, "Accept-Language": lang})
    return post_from(ip, moat.url(MAGIC_LINK), headers=h, json_body={"email": email})


def test_a_click_confirms_its_cohort_and_a_silent_cohort_is_throttled_before_an_unknown_one(
        moat_factory, upstream):
    moat = moat_factory(POLICY, presets=())
    # A farm: 50 sends from one /16 with one browser's headers, and never a click.
    for i in range(50):
        r = _send(moat, f"127.60.{i}.9", f"victim{i}@example.org", FARM_UA)
        assert r.status == 201, r
    # A person's network: one send, one click on the link Ghost mailed.
    person = "127.61.0.5"
    assert _send(moat, person, "reader@example.com").status == 201
    assert click_link(upstream, moat.base, person, "reader@example.com", chrome_headers(moat.base))
    # Another: a send, and a click on a made-up token (Ghost gives it no session).
    guesser = "127.62.0.5"
    assert _send(moat, guesser, "guess@example.com").status == 201
    with session_from(guesser) as s:
        r = s.get(moat.url("/members/?token=0123456789abcdef&action=signup"),
                  headers={"User-Agent": CHROME_UA, "Accept-Language": "en-US,en;q=0.9"},
                  allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "ghost-members-ssr" not in r.headers.get("Set-Cookie", "")
    # The lag: sends count once their clicks have had time to come. Moat counts in whole
    # seconds and never settles early, so a send settles between 1 s and 2 s later.
    time.sleep(2.1)

    # The farm's cohort is silent: the one send a silent cohort gets an hour, then refused.
    assert _send(moat, "127.60.200.9", "victim-a@example.org", FARM_UA).status == 201
    r = _send(moat, "127.60.201.9", "victim-b@example.org", FARM_UA)
    assert r.status == 429, r
    assert logged(moat, "127.60.201.9", ("note-silent", "log"))
    assert logged(moat, "127.60.201.9", ("silent-first", "block"))
    # An unknown cohort (a /16 never seen) is not held by it.
    for i in range(3):
        assert _send(moat, f"127.63.{i}.9", f"new{i}@example.org", FARM_UA).status == 201
    # The person's cohort is confirmed, anywhere in their network; the guesser's is not.
    assert _send(moat, "127.61.7.7", "reader2@example.com").status == 201
    assert logged(moat, "127.61.7.7", ("note-confirmed", "log"))
    assert _send(moat, "127.62.7.7", "guess2@example.com").status == 201
    assert not [d for d in moat.decisions() if d.get("client") == "127.62.7.7"], \
        "a made-up token confirmed its cohort"
    # The same browser elsewhere is another cohort; another language in the person's network too.
    assert _send(moat, "127.64.0.5", "reader3@example.com").status == 201
    assert not [d for d in moat.decisions() if d.get("client") == "127.64.0.5"]
    assert _send(moat, "127.61.8.8", "leser@example.com", lang="de-DE,de;q=0.9").status == 201
    assert not [d for d in moat.decisions() if d.get("client") == "127.61.8.8"]
    # The decision log names the standing of the cohort that the lines were about.
    lines = [d for d in moat.decisions() if d.get("client") == "127.60.201.9"]
    assert {d.get("cohort") for d in lines} == {"silent"}, lines


def test_what_was_learned_of_the_cohorts_outlives_a_restart(moat_factory, upstream, tmp_path):
    state = tmp_path / "state"
    moat = moat_factory(POLICY, presets=(), state_dir=state)
    for i in range(12):
        assert _send(moat, f"127.60.{i}.9", f"victim{i}@example.org", FARM_UA).status == 201
    person = "127.61.0.5"
    assert _send(moat, person, "reader@example.com").status == 201
    assert click_link(upstream, moat.base, person, "reader@example.com", chrome_headers(moat.base))
    time.sleep(2.1)
    moat.stop()  # SIGTERM: the table is written on the way out
    table = state / "cohorts.bin"
    assert table.is_file() and table.stat().st_mode & 0o777 == 0o600, "the table (and its key) is private"

    again = moat_factory(POLICY, presets=(), state_dir=state, name="again")
    assert _send(again, "127.60.100.9", "victim-x@example.org", FARM_UA).status == 201
    assert logged(again, "127.60.100.9", ("note-silent", "log")), "the farm was forgotten"
    assert _send(again, "127.61.9.9", "reader2@example.com").status == 201
    assert logged(again, "127.61.9.9", ("note-confirmed", "log")), "the people were forgotten"
    assert any("cohort history restored" in line for line in again.stdout_lines + again.stderr_lines)

    # A damaged table costs the history, never the start.
    again.stop()
    table.write_bytes(b"MOATCOH1" + b"\x00" * 7)
    third = moat_factory(POLICY, presets=(), state_dir=state, name="third")
    assert _send(third, "127.60.101.9", "victim-y@example.org", FARM_UA).status == 201
    assert any("the cohort table is damaged" in line for line in third.stdout_lines + third.stderr_lines)


def test_an_attack_from_many_cohorts_cannot_use_up_the_share_of_people_who_confirm(
        moat_factory, upstream):
    # Each address its own cohort, as if every send came from another provider; the cookie
    # alone sends (no per-action proofs), so the shares are all that holds the attack.
    moat = moat_factory(NO_ACTION_PROOFS + COHORT_PER_ADDRESS)
    url = moat.url(MAGIC_LINK)
    person = "127.50.0.1"
    h = cleared_headers(moat.base, person)
    r = post_from(person, url, headers=h, json_body={"email": "reader@example.com"})
    assert (r.status, r.body) == (201, b"Created.")
    assert click_link(upstream, moat.base, person, "reader@example.com", h)
    # 40 cohorts that never confirm: the unconfirmed share (30 at once) is spent, the rest decoyed.
    for i in range(40):
        ip = f"127.51.{i}.2"
        post_from(ip, url, headers=cleared_headers(moat.base, ip), json_body={"email": f"victim{i}@example.org"})
    victims = [s for s in upstream.magic_links() if s.json["email"].startswith("victim")]
    # The person's first send, from a cohort unconfirmed then, took one of the 30.
    assert len(victims) == 29, len(victims)
    assert logged(moat, "127.51.39.2", ("ghost-unconfirmed", "decoy"))
    # The person's cohort clicks: its sign-ups still go through, at once.
    for n in range(3):
        r = post_from(person, url, headers=h, json_body={"email": f"reader.{n}@example.com"})
        assert (r.status, r.body) == (201, b"Created."), r
        assert click_link(upstream, moat.base, person, f"reader.{n}@example.com", h)
    readers = [s.json["email"] for s in upstream.magic_links() if s.json["email"].startswith("reader")]
    assert readers == ["reader@example.com"] + [f"reader.{n}@example.com" for n in range(3)]
    assert not decisions_for(moat, person), "a limit acted on the person"


# --------------------------------------------------------------------------------------------
# The ghost preset against a server farm that rotates through 90 /24s of one provider


FARM_TABLE = "127.64.0.0\t127.66.255.255\t64500\tZZ\tEXAMPLE-HOSTING\n"


def farm_addresses(n: int = 90) -> list[str]:
    """One address in each of `n` /24s of the hosting provider's network (three /16s)."""
    return [f"127.{64 + i % 3}.{i // 3}.{20 + i % 7}" for i in range(n)]


def _farm_moat(moat_factory, tmp_path: Path, name: str = "moat"):
    """The ghost preset, with an IP-to-ASN table in which the farm's three /16s are one
    provider's network."""
    table = tmp_path / "ip2asn.tsv"
    table.write_text(FARM_TABLE)
    return moat_factory(f'[cohorts]\nasn_table = "{table}"\n', name=name)


def _ghost_success(moat, upstream) -> tuple:
    """Ghost's own answer to a person, as the comparison reference."""
    ip = "127.0.0.9"
    r = post_from(ip, moat.url(MAGIC_LINK), headers=cleared_headers(moat.base, ip),
                  json_body={"email": "reference@example.com"})
    assert (r.status, r.body) == (201, b"Created."), r
    assert [s.json["email"] for s in upstream.magic_links()] == ["reference@example.com"]
    return r.comparable()


def _attack(level: str, moat, addrs: list[str]):
    """One victim from each address, eight at a time (decoys take as long as Ghost)."""
    url = moat.url(MAGIC_LINK)
    shared = clearance_cookie(moat.base, addrs[0]) if level == "one cookie replayed" else None

    def one(job):
        i, ip = job
        email = f"victim{i}@example.org"
        if level == "default client":
            r = post_from(ip, url, json_body={"email": email})
        elif level == "copied browser headers":
            r = post_from(ip, url, headers=chrome_headers(moat.base), json_body={"email": email})
        elif level == "home page and cookies":
            with session_from(ip) as s:
                s.get(moat.base + "/", headers=chrome_headers(moat.base), timeout=10)
                resp = s.post(url, headers=chrome_headers(moat.base), json={"email": email}, timeout=10)
            r = reply_from_requests(resp)
        elif level == "solver of the proof":
            r = post_from(ip, url, headers=cleared_headers(moat.base, ip), json_body={"email": email})
        elif level == "one cookie replayed":
            r = post_from(ip, url, headers={**chrome_headers(moat.base), "Cookie": shared},
                          json_body={"email": email})
        else:
            raise AssertionError(level)
        return r

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, enumerate(addrs)))


LEVELS = ["default client", "copied browser headers", "home page and cookies",
          "solver of the proof", "one cookie replayed"]


def test_each_attacker_level_gets_at_most_three_of_ninety_through(moat_factory, upstream, tmp_path):
    ref = None
    for n, level in enumerate(LEVELS):
        # A fresh install for each attacker.
        moat = _farm_moat(moat_factory, tmp_path, name=f"level{n}")
        if ref is None:
            ref = _ghost_success(moat, upstream)
        before = len(upstream.magic_links())
        replies = _attack(level, moat, farm_addresses())
        reached = len(upstream.magic_links()) - before
        print(f"\n[{level}: {reached} of 90 reached the app]")
        assert reached <= 3, f"{level}: {reached} of 90 victims got a sign-in mail"
        differ = [r.comparable() for r in replies if r.comparable() != ref]
        assert not differ, f"{level}: answers that differ from Ghost's success: {differ[:3]}"
        moat.stop()


# --------------------------------------------------------------------------------------------
# Three minutes of a solver at full speed while people sign up


def _solver(base: str, addrs: list[str], seconds: float, out) -> None:
    """A script that does everything the page script does: earns clearance per /24, marks its
    writes, solves every per-action proof Moat asks for, moves on when told to wait; one core,
    full speed, one victim per request."""
    url = base + MAGIC_LINK
    end = time.monotonic() + seconds
    sent = answered = 0
    i = 0
    while time.monotonic() < end:
        ip = addrs[i % len(addrs)]
        body = {"email": f"victim{i}@example.org"}
        i += 1
        try:
            # Exactly what a person's page script does (person_post), for each victim.
            r = person_post(ip, url, headers=cleared_headers(base, ip), json_body=body)
        except Exception:
            continue
        sent += 1
        answered += r.status == 201
    out.put((sent, answered))


def test_people_sign_up_during_a_three_minute_solver_attack(moat_factory, upstream, browser, tmp_path):
    moat = _farm_moat(moat_factory, tmp_path)
    # The attacker's proofs are earned up front by the first requests; then it runs alone on
    # one core for three minutes.
    out = multiprocessing.get_context("fork").Queue()
    attacker = multiprocessing.get_context("fork").Process(
        target=_solver, args=(moat.base, farm_addresses(), 180.0, out), daemon=True)
    attacker.start()
    people = []
    try:
        deadline = time.monotonic() + 175
        for n in range(10):
            email = f"reader{n}@example.com"
            browser.get(moat.base + "/")
            browser.wait_until("window.__moat && window.__moat.info", timeout=20)
            browser.send_keys(browser.find_css("#email"), email)
            browser.click(browser.find_css("#submit"))
            result = browser.wait_until("document.getElementById('result').textContent", timeout=150)
            people.append((email, result))
            # The person reads the mail and clicks the link, in the same browser.
            link = upstream.link_for(email)
            if link:
                browser.get(moat.base + link)
                browser.wait_until("document.readyState == 'complete'", timeout=20)
            # About one sign-up every 15 s, over the attack.
            time.sleep(max(0.0, min(15.0, (deadline - time.monotonic()) / max(1, 9 - n))))
    finally:
        attacker.join(200)
    sent, answered = out.get(timeout=10)
    emails = [s.json["email"] for s in upstream.magic_links()]
    readers = [e for e in emails if e.startswith("reader")]
    victims = [e for e in emails if e.startswith("victim")]
    print(f"\n[solver: {sent} sends in 3 minutes, {len(victims)} reached the app; "
          f"people: {len(readers)} of 10]")
    assert [r for _, r in people] == ["201 Created."] * 10, people
    assert readers == [f"reader{n}@example.com" for n in range(10)], readers
    assert upstream.sessions >= 10, "the people's clicks did not reach Ghost"
    assert sent >= 100, f"the attacker only managed {sent} sends: not an attack at full speed"
    assert len(victims) <= 20, f"{len(victims)} victims got a sign-in mail during the attack"

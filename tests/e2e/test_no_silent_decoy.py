"""Issue 18, item 3: a browser is never given a silent decoy. When a rate limit stops a write
from a person's browser (cleared by the proof, the page script running), Moat answers with how
long to wait; the page script tells the person and sends it again. Scripts, even ones that
solve the proof, still get the decoy."""

from __future__ import annotations

import time

from moat_harness import COHORT_PER_ADDRESS, MAGIC_LINK, NO_ACTION_PROOFS, cleared_headers, post_from
from test_browser_proof import decisions_for


def test_a_person_a_limit_stops_is_told_and_their_sign_up_goes_through(moat_factory, upstream, browser):
    # The route's budget for unconfirmed cohorts is the subject: the drain's cleared sends are
    # not asked for proofs of their own (test_action_proof.py covers that), and each of its
    # addresses is a cohort of its own (the per-cohort limit is test_cohorts.py's).
    moat = moat_factory(NO_ACTION_PROOFS + COHORT_PER_ADDRESS)
    url = moat.url(MAGIC_LINK)
    # A script that solves the proof uses up what the route gives cohorts that have not
    # confirmed (the preset's burst of 30), one victim from each of 30 networks.
    for i in range(30):
        ip = f"127.30.{i}.2"
        r = post_from(ip, url, headers=cleared_headers(moat.base, ip),
                      json_body={"email": f"victim{i}@example.org"})
        assert (r.status, r.body) == (201, b"Created."), r
    assert len(upstream.magic_links()) == 30
    # Its next send is stopped by the limit and gets the decoy, as it always did.
    ip = "127.30.99.2"
    r = post_from(ip, url, headers=cleared_headers(moat.base, ip),
                  json_body={"email": "victim-late@example.org"})
    assert (r.status, r.body) == (201, b"Created."), r
    assert len(upstream.magic_links()) == 30, "the limit let the script through"
    assert ("ghost-unconfirmed", "decoy") in decisions_for(moat, ip)

    # A person subscribes now: the same limit stops the request, and the page says so.
    browser.get(moat.base + "/")
    time.sleep(1)
    browser.send_keys(browser.find_css("#email"), "reader@example.com")
    browser.click(browser.find_css("#submit"))
    told = browser.wait_until(
        "(document.getElementById('moat-notice') || {}).textContent", timeout=20)
    assert "Yours will be sent in" in told, told
    assert browser.execute("return document.getElementById('result').textContent") == "", \
        "the app was given an answer while the person was waiting"
    # Once the wait is over (one slot of 100 an hour: under 36 s) the sign-up reaches Ghost.
    result = browser.wait_until("document.getElementById('result').textContent", timeout=60)
    assert result == "201 Created.", result
    reached = [s.json["email"] for s in upstream.magic_links()[30:]]
    assert reached == ["reader@example.com"], reached
    assert browser.execute("return document.getElementById('moat-notice')") is None, \
        "the notice stayed after the sign-up went through"
    assert browser.execute("return window.__moat.info.waits") == 1
    assert ("ghost-unconfirmed", "wait") in decisions_for(moat, "127.0.0.1")
    # The app's XMLHttpRequest cannot be sent again behind its back: it gets the 429, and the
    # person is told why.
    browser.execute("""
        var x = new XMLHttpRequest();
        x.open("POST", "/members/api/send-magic-link/");
        x.setRequestHeader("Content-Type", "application/json");
        x.onloadend = function () { window.__xhrStatus = x.status; };
        x.send(JSON.stringify({email: "reader2@example.com"}));""")
    assert browser.wait_until("window.__xhrStatus", timeout=20) == 429
    told = browser.wait_until("(document.getElementById('moat-notice') || {}).textContent", timeout=5)
    assert "Too many requests" in told, told
    assert [s.json["email"] for s in upstream.magic_links()[30:]] == ["reader@example.com"]
    # The app never sees the page script's marker.
    sent = upstream.magic_links()[30]
    assert all(k.lower() != "moat-page" for k, _ in sent.headers), sent.headers


def test_a_script_that_copies_the_marker_without_clearance_still_gets_the_decoy(moat_factory, upstream):
    moat = moat_factory(NO_ACTION_PROOFS + COHORT_PER_ADDRESS)
    url = moat.url(MAGIC_LINK)
    for i in range(30):
        ip = f"127.31.{i}.2"
        post_from(ip, url, headers=cleared_headers(moat.base, ip),
                  json_body={"email": f"victim{i}@example.org"})
    assert len(upstream.magic_links()) == 30
    ip = "127.31.99.2"
    h = cleared_headers(moat.base, ip)
    h.pop("Cookie")
    h["Moat-Page"] = "1"
    r = post_from(ip, url, headers=h, json_body={"email": "victim-late@example.org"})
    # No clearance: the preset's proof rule answers before any limit, with the decoy.
    assert (r.status, r.body) == (201, b"Created."), r
    assert len(upstream.magic_links()) == 30

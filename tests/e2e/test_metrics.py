"""Issue 15: /metrics is OpenMetrics from `prometheus-client`, and a real parser (Prometheus's
own Python client) accepts it. Before, every mail and trap `*_total` counter was typed `gauge`
and there were no latency histograms.

Checked here: counters are counters with the right counts, decisions are labelled by rule and
action, the request and upstream latency histograms count every request, and a trap counter
(the trap runs inside `moat run`) is typed counter."""

from __future__ import annotations

import math

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from moat_harness import (
    ADMIN_TOKEN,
    CHROME_UA,
    MAGIC_LINK,
    Moat,
    address_pool,
    config_text,
    free_port,
    post_from,
)
from trap_harness import smtp_exchange

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN}


def scrape(moat: Moat) -> dict:
    r = requests.get(moat.admin_base + "/metrics", headers=AUTH, timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"] == OPENMETRICS
    # The parser raises on anything that is not valid OpenMetrics (a counter sample without
    # `_total`, unordered buckets, a missing `# EOF`, a family defined twice, …).
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families, r.text
    doubled = [n for n, f in families.items() if f.documentation.endswith("..")]
    assert doubled == [], f"help texts ending in two full stops: {doubled}"
    return families


def value(families: dict, family: str, sample: str, **labels) -> float:
    f = families[family]
    hits = [s.value for s in f.samples if s.name == sample and s.labels == labels]
    assert len(hits) == 1, f"{sample}{labels} in {f.samples}"
    return hits[0]


def check_histogram(f, **labels) -> tuple[float, float]:
    """Asserts the histogram's buckets (with these labels) are cumulative and end at +Inf ==
    count; returns (count, sum)."""
    assert f.type == "histogram", f
    mine = [s for s in f.samples if {k: v for k, v in s.labels.items() if k != "le"} == labels]
    buckets = [(float(s.labels["le"]), s.value) for s in mine if s.name == f.name + "_bucket"]
    assert buckets and buckets[-1][0] == math.inf, buckets
    bounds = [b for b, _ in buckets]
    assert bounds == sorted(bounds), bounds
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), f"buckets not monotonic: {buckets}"
    count = next(s.value for s in mine if s.name == f.name + "_count")
    total = next(s.value for s in mine if s.name == f.name + "_sum")
    assert counts[-1] == count, (buckets, count)
    assert total >= 0
    return count, total


def test_metrics_are_typed_and_parse_as_openmetrics(moat_factory):
    trap_port = free_port()
    moat = moat_factory(
        '[trap]\nhostname = "mx.trap.test"\nauth_failure_delay = "0s"\n\n'
        f'[[trap.listener]]\nlisten = "127.0.0.1:{trap_port}"\ntls = "none"\n')

    forwarded, stopped = 6, 4
    with requests.Session() as s:
        s.headers["User-Agent"] = CHROME_UA
        for _ in range(forwarded):
            assert s.get(moat.url("/"), timeout=5).status_code == 200
    # Scripts posting to the magic-link route: decoyed, never forwarded (one address each, so
    # no ban changes the rule that answers).
    for i, ip in enumerate(address_pool(stopped, first_octets=(52,), per_prefix=1)):
        r = post_from(ip, moat.url(MAGIC_LINK), json_body={"email": f"m{i}@example.com"})
        assert r.status == 201
    banner = smtp_exchange(trap_port, [b"EHLO bot\r\n", b"QUIT\r\n"])
    assert banner.startswith(b"220 "), banner

    f = scrape(moat)

    requests_total = forwarded + stopped
    assert f["moat_http_requests"].type == "counter"
    assert value(f, "moat_http_requests", "moat_http_requests_total") == requests_total
    assert f["moat_http_forwarded"].type == "counter"
    assert value(f, "moat_http_forwarded", "moat_http_forwarded_total") == forwarded
    assert value(f, "moat_http_upstream_errors", "moat_http_upstream_errors_total") == 0

    d = f["moat_http_decisions"]
    assert d.type == "counter"
    assert all(set(s.labels) == {"rule", "action"} for s in d.samples), d.samples
    assert value(f, "moat_http_decisions", "moat_http_decisions_total",
                 rule="ghost-script-user-agent", action="decoy") == stopped

    lat = f["moat_http_request_duration_seconds"]
    counts = {o: check_histogram(lat, outcome=o)[0]
              for o in ("forwarded", "answered", "upstream_error")}
    assert counts == {"forwarded": forwarded, "answered": stopped, "upstream_error": 0}, counts
    assert sum(counts.values()) == requests_total
    up_count, up_sum = check_histogram(f["moat_http_upstream_duration_seconds"])
    assert up_count == forwarded
    assert up_sum > 0

    assert f["moat_bans_active"].type == "gauge"
    assert f["moat_ratelimit_keys"].type == "gauge"
    assert f["moat_offences_dropped"].type == "counter"
    # The trap's counters are counters now (they were gauges), under the same sample names.
    assert f["moat_trap_sessions"].type == "counter"
    assert value(f, "moat_trap_sessions", "moat_trap_sessions_total") >= 1
    assert f["moat_quarantine_messages"].type == "counter"
    assert f["moat_trap_sessions_open"].type == "gauge"
    assert f["moat_quarantine_bytes"].type == "gauge"
    gauges_named_total = [n for n, fam in f.items() if fam.type == "gauge" and n.endswith("_total")]
    assert gauges_named_total == [], gauges_named_total


def test_an_unreachable_upstream_counts_as_upstream_error(tmp_path):
    cfg = tmp_path / "down.toml"
    cfg.write_text(config_text())
    m = Moat(f"http://127.0.0.1:{free_port()}", tmp_path / "down-state", cfg).start()
    try:
        for _ in range(3):
            r = requests.get(m.url("/"), headers={"User-Agent": CHROME_UA}, timeout=10)
            assert r.status_code == 502
        f = scrape(m)
        assert value(f, "moat_http_upstream_errors", "moat_http_upstream_errors_total") == 3
        lat = f["moat_http_request_duration_seconds"]
        assert check_histogram(lat, outcome="upstream_error")[0] == 3
        assert check_histogram(lat, outcome="forwarded")[0] == 0
        # Failed attempts are not upstream latencies: that histogram times response heads.
        assert check_histogram(f["moat_http_upstream_duration_seconds"])[0] == 0
    finally:
        m.kill()

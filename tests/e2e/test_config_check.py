"""`moat check` names the file and line of every config error, all at once."""

from __future__ import annotations

import re

from moat_harness import run_cli


def line_of(text: str, needle: str) -> int:
    """1-based line number of the only line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} on lines {hits}"
    return hits[0]


def error_lines(out: str, path: str) -> list[str]:
    return [l for l in out.splitlines() if l.startswith(f"error: {path}:")]


def test_check_reports_every_error_with_its_line(tmp_path, moat_binary):
    cfg = tmp_path / "moat.toml"
    text = """presets = ["ghost"]

[server]
upstream = "http://127.0.0.1:2368"

[limits]
idle_timeout = "5s"
header_timeout = "2 parsecs"

[[rule]]
id = "block-admin"
description = "a rule with a bad action"
expression = 'starts_with(http.request.uri.path, "/admin")'
action = "explode"
"""
    cfg.write_text(text)
    n = line_of(text, "2 parsecs")
    m = line_of(text, '"explode"')

    r = run_cli("check", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"exit {r.returncode}: {out}"
    errs = error_lines(out, cfg)
    assert len(errs) == 2, f"expected both errors, got: {out}"
    dur = [e for e in errs if e.startswith(f"error: {cfg}:{n}:")]
    act = [e for e in errs if e.startswith(f"error: {cfg}:{m}:")]
    assert dur, f"no error names {cfg}:{n} (the bad duration): {out}"
    assert act, f"no error names {cfg}:{m} (the unknown action): {out}"
    assert "header_timeout" in dur[0], dur[0]
    assert "action" in act[0] and "explode" in act[0], act[0]
    # FILE:LINE:COL: FIELD: message
    for e in errs:
        assert re.match(rf"error: {re.escape(str(cfg))}:\d+:\d+: \S+: .+", e), e

    # The same file with both lines fixed is accepted.
    fixed = text.replace("2 parsecs", "2s").replace('"explode"', '"block"')
    cfg.write_text(fixed)
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_names_an_unknown_field_and_its_line(tmp_path, moat_binary):
    cfg = tmp_path / "typo.toml"
    text = """presets = ["ghost"]

[server]
upstream = "http://127.0.0.1:2368"
listn = ["127.0.0.1:8080"]

[admin]
token = "0123456789abcdef0123"
"""
    cfg.write_text(text)
    n = line_of(text, "listn")
    r = run_cli("check", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"exit {r.returncode}: {out}"
    errs = [e for e in error_lines(out, cfg) if e.startswith(f"error: {cfg}:{n}:")]
    assert errs, f"no error names {cfg}:{n}: {out}"
    assert "listn" in errs[0], errs[0]

    cfg.write_text(text.replace("listn", "listen"))
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr

#!/usr/bin/env bash
# Issue 18: what one send costs at each per-action difficulty (17 to 20 bits, the ghost
# preset's ceiling), for a Python solver on one core and for a person's headless Chromium
# running Moat's page script, measured in one run. Prints a table for BENCHMARKS.md.
# Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
cargo build -q -p moat
MOAT_BENCH=1 MOAT_BIN="$CARGO_TARGET_DIR/debug/moat" \
  python3 -m pytest tests/e2e/test_action_proof.py -k costs -q -s -p no:cacheprovider

#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests (pebble for ACME),
# then the Python end-to-end attacks against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --bin moat
cargo test --workspace
MOAT_BIN="$CARGO_TARGET_DIR/debug/moat" python3 -m pytest tests/e2e -q

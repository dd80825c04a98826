#!/usr/bin/env bash
# Rebuilds the IP-to-ASN table shipped in the binary (crates/moat-core/data/asn-table.bin) from
# the newest @ip-location-db/asn npm package (CC BY 4.0; see crates/moat-core/data/README.md,
# whose version line to update). Needs npm and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @ip-location-db/asn >/dev/null && tar xzf ./*.tgz)
echo "version $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$work/package/package.json")"
cargo run --release -q -p moat-core --example asn_pack -- crates/moat-core/data/asn-table.bin \
  "$work/package/asn-ipv4.csv" "$work/package/asn-ipv6.csv"

#!/usr/bin/env bash
# Builds Canh and starts a server with embedded storage and demo data.
# Arguments are passed to `canh server` (e.g. --http 0.0.0.0:8514 --syslog 0.0.0.0:5514).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "Canh is built with Rust 1.95 or newer: install it with rustup, then run this again." >&2
  exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq build-essential pkg-config
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canh-target}"
cargo build --profile release-fast -p canh-cli
exec "$CARGO_TARGET_DIR/release-fast/canh" --data-dir "${CANH_DATA_DIR:-./data}" server --demo "$@"

#!/bin/sh
# Builds the canh-agent Debian package (needs `cargo install cargo-deb`).
# Output: target/debian/canh-agent_<version>_<arch>.deb
set -eu
cd "$(dirname "$0")/../../.."
cargo build -p canh-agent --release
strip "${CARGO_TARGET_DIR:-target}/release/canh-agent"
cargo deb -p canh-agent --no-build

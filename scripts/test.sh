#!/usr/bin/env bash
# Runs every test of Canh: formatting, lints, unit and end-to-end tests with the real clients.
# Installs what the tests need (Debian packages, Python clients) first. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canh-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

need_apt=()
for pair in logger:bsdutils curl:curl openssl:openssl python3:python3 pip3:python3-pip \
            ip:iproute2 nft:nftables unshare:util-linux rsyslogd:rsyslog \
            chromium:chromium node:nodejs npm:npm dpkg-deb:dpkg; do
  bin=${pair%%:*}; pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$pkg")
done
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || [ -e /usr/lib/rsyslog/lmnsd_gtls.so ] \
  || need_apt+=(rsyslog-gnutls)
# libpcap compiles `canh sensor --bpf EXPR` filters (loaded at run time, not linked).
ldconfig -p 2>/dev/null | grep -q 'libpcap\.so\.0\.8' || need_apt+=(libpcap0.8)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

if ! python3 -c 'import elasticsearch, pygelf, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, aiosmtpd' 2>/dev/null; then
  step "pip install test clients"
  python3 -m pip install -q --disable-pip-version-check \
    "elasticsearch>=8,<9" pygelf opentelemetry-sdk opentelemetry-exporter-otlp-proto-http \
    "aiosmtpd==1.4.6" 2>&1 \
    | grep -v 'Running pip as the' || true
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "doc tests"
cargo test --workspace --doc --quiet

step "browser tests (web console, Chromium)"
browser=0
e2e/run.sh || browser=$?

# The agent's optional YARA scanning (feature `yara`, yara-x): linted and tested on its own
# build, before the plain agent binary below is built again for the upgrade tests.
step "canh-agent with YARA scanning (feature yara)"
yara=0
cargo clippy -p canh-agent --all-targets --features yara -- -D warnings || yara=$?
[ "$yara" -ne 0 ] || cargo nextest run -p canh-agent --features yara --no-fail-fast \
  --failure-output final -E 'test(/yara/)' || yara=$?

# The agent upgrade tests run the real `canh-agent` binary of its own package's build; built
# here so that the tests find it fresh instead of building it while other tests run.
step "canh-agent binary for the upgrade tests"
cargo build -p canh-agent --bin canh-agent

# Last, so that the closing lines are the summary of the whole test run.
step "tests"
tests=0
cargo nextest run --workspace --no-fail-fast --failure-output final || tests=$?
if [ "$browser" -ne 0 ]; then
  echo "browser tests FAILED (exit $browser): see the output of the browser step above" >&2
fi
if [ "$yara" -ne 0 ]; then
  echo "YARA tests FAILED (exit $yara): see the output of the YARA step above" >&2
fi
[ "$browser" -eq 0 ] && [ "$yara" -eq 0 ] && [ "$tests" -eq 0 ]

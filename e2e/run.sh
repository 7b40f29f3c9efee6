#!/usr/bin/env bash
# Browser tests of the web console. Builds the debug `canh`, starts `canh server` on free
# loopback ports with plain HTTP and a rule that matches an SSH password failure, creates
# agencies and users, then runs the Playwright tests (system Chromium, no browser download).
#
# Needs: chromium (Debian package), logger (util-linux), curl, node + npm.
# Screenshots land in docs/screenshots/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "e2e: $chromium not found; install it with: apt-get install -y chromium" >&2
  exit 1
fi
for tool in logger curl node npm; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool is required" >&2; exit 1; }
done

(cd "$root" && cargo build -p canh-cli)
target="${CARGO_TARGET_DIR:-$root/target}"
canh="$target/debug/canh"

(cd "$here" && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund; })

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "${E2E_KEEP:-}" = "" ]; then rm -rf "$work"; else echo "e2e: kept $work"; fi
}
trap cleanup EXIT

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}
http_port="$(free_port)"
syslog_port="$(free_port)"
while [ "$syslog_port" = "$http_port" ]; do syslog_port="$(free_port)"; done

mkdir -p "$work/rules" "$work/data"
# The rule the Rust detection test uses too.
cp "$root/crates/canh-server/tests/rules/ssh_root.yml" "$work/rules/ssh_root.yml"

export CANH_DATA_DIR="$work/data"
export CANH_SERVER__HTTP_TLS=false
export CANH_SOAR__SECURE_COOKIE=false
export CANH_DETECT__RULES_DIR="$work/rules"
export CANH_DETECT__SUPPRESS_SECS=0
export CANH_STORE__FLUSH_INTERVAL_MS=500
export CANH_LOG="${CANH_LOG:-warn}"

pw_admin="admin-e2e-$(date +%s)-pw"
pw_analyst="analyst-e2e-$(date +%s)-pw"
pw_viewer="viewer-e2e-$(date +%s)-pw"
pw_admin2="admin2-e2e-$(date +%s)-pw"
printf '%s' "$pw_admin" | "$canh" user add quantri --role administrator --password-stdin
# A second administrator for the language-switch test: the language chosen is stored on the
# account, and the other tests' administrator keeps none (its browser cookie decides).
printf '%s' "$pw_admin2" | "$canh" user add quantri-2 --role administrator --password-stdin
printf '%s' "$pw_analyst" | "$canh" user add truc-ban --role analyst --password-stdin

"$canh" server --http "127.0.0.1:$http_port" --syslog "127.0.0.1:$syslog_port" \
  >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$http_port"
for _ in $(seq 1 100); do
  if curl -fsS "$base/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/server.log" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "$base/health" >/dev/null

# Agencies: a province with two departments, created through the API as the administrator.
jar="$work/cookies"
curl -fsS -c "$jar" -H 'Content-Type: application/json' \
  -d "{\"name\":\"quantri\",\"password\":\"$pw_admin\"}" "$base/api/v1/auth/login" >/dev/null
mk_agency() {
  curl -fsS -b "$jar" -H 'Content-Type: application/json' -d "$1" "$base/api/v1/agencies" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log((j.agency||j).id);});'
}
province="$(mk_agency '{"code":"tinh-e2e","name":"UBND tỉnh Thử nghiệm","level":"province"}')"
agency_a="$(mk_agency "{\"code\":\"so-a\",\"name\":\"Sở Alpha\",\"level\":\"department\",\"parent_id\":$province}")"
agency_b="$(mk_agency "{\"code\":\"so-b\",\"name\":\"Sở Bêta\",\"level\":\"department\",\"parent_id\":$province}")"
printf '%s' "$pw_viewer" | "$canh" user add xem-so-b --role agency_viewer --agency "$agency_b" --password-stdin

export CANH_URL="$base" CANH_SYSLOG_PORT="$syslog_port" CHROMIUM_PATH="$chromium"
export E2E_ADMIN="quantri" E2E_ADMIN_PW="$pw_admin"
export E2E_ADMIN2="quantri-2" E2E_ADMIN2_PW="$pw_admin2"
export E2E_ANALYST="truc-ban" E2E_ANALYST_PW="$pw_analyst"
export E2E_VIEWER="xem-so-b" E2E_VIEWER_PW="$pw_viewer"
export E2E_AGENCY_A="$agency_a" E2E_AGENCY_B="$agency_b"
export E2E_SCREENSHOTS="$root/docs/screenshots" E2E_WORK="$work"
mkdir -p "$E2E_SCREENSHOTS"

start=$(date +%s)
status=0
(cd "$here" && node --test --test-concurrency=1 tests/) || status=$?
echo "e2e: browser tests took $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ]; then
  echo "e2e: server log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"

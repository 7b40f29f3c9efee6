#!/usr/bin/env bash
# Process telemetry under load: RATE process starts per second for SECS seconds, recorded by
# canh-agent (netlink process connector → on-disk spool → mutual TLS → server) and, side by
# side, by auditd with one execve rule. Prints per run: starts, events the server stored,
# the agent's CPU and peak RSS; then auditd's records and CPU. Needs root (netlink process
# connector, the audit subsystem), gcc, and auditd (apt-get install auditd).
#
# Usage: bench/agent_exec.sh CANH_BINARY CANH_AGENT_BINARY [RATE] [SECS] [RUNS]
#
# RATE 0 measures the agent at rest instead: every sensor of the packaged configuration on
# (processes, file integrity, logins, devices, network and module polls, inventory), connected
# to the server, nothing started; per run its CPU over SECS seconds and its peak RSS.
set -euo pipefail
canh=${1:?canh binary}
agent=${2:?canh-agent binary (release-fast build)}
rate=${3:-1000}
secs=${4:-20}
runs=${5:-3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
server_pid=""; agent_pid=""; auditd_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  if [ -n "$auditd_pid" ]; then
    auditctl -D >/dev/null 2>&1 || true
    auditctl -e 0 >/dev/null 2>&1 || true
    kill "$auditd_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -o "$work/spawn" "$here/spawn.c"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port); enrol=$(port); listen=$(port)
export CANH_SERVER__HTTP_TLS=false CANH_AGENTS__ENABLED=true CANH_LOG=warn \
  CANH_AGENTS__LISTEN=127.0.0.1:$listen CANH_AGENTS__ENROL_LISTEN=127.0.0.1:$enrol
"$canh" --data-dir "$work/data" server --http 127.0.0.1:$http --syslog 127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!
until curl -sf "http://127.0.0.1:$http/health" >/dev/null; do sleep 0.2; done
api_token=$(cat "$work/data/server.token")
api() { curl -sf -H "Authorization: Bearer $api_token" "$@"; }
out=$(api -X POST -H 'Content-Type: application/json' -d '{"ttl_secs":600}' \
  "http://127.0.0.1:$http/api/v1/agents/enrolment-tokens")
token=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
pin=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ca_pin"])')
if [ "$rate" = 0 ]; then
  # The packaged configuration with its defaults, state kept in the work directory.
  sed "s|^state_dir = .*|state_dir = \"$work/agent\"|" \
    "$here/../crates/canh-agent/packaging/canh-agent.toml" > "$work/agent.toml"
else
cat > "$work/agent.toml" <<CONF
state_dir = "$work/agent"
heartbeat_secs = 30
[sensors]
process = true
fim_paths = []
logins = false
devices = false
network_poll_secs = 0
modules_poll_secs = 0
[inventory]
interval_secs = 0
[upgrade]
enabled = false
CONF
fi
"$agent" enrol --config "$work/agent.toml" --server 127.0.0.1:$enrol --token "$token" --ca-pin "$pin" >/dev/null
"$agent" run --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
agent_pid=$!
sleep 3

# Process starts of /bin/true the server holds (the search's total over the last hour).
total() {
  api -G "http://127.0.0.1:$http/api/v1/search" --data-urlencode "q=$1" \
    --data-urlencode 'from=now-1h' --data-urlencode 'limit=1' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}
# Starts of the load generator's children, and those of them that still had their /proc entry
# when the agent looked (the others exited first: pid and parent only).
stored() { total 'process.parent.name:spawn AND event.type:start'; }
named() { total 'process.parent.name:spawn AND process.name:true AND event.type:start'; }
if [ "$rate" = 0 ]; then
  # Let the start-up work (baseline scan, first inventory) finish first.
  sleep 20
  for r in $(seq 1 "$runs"); do
    c0=$(cpu_ticks "$agent_pid")
    sleep "$secs"
    c1=$(cpu_ticks "$agent_pid")
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent_pid/status")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent_pid/status")
    awk -v r="$r" -v c=$((c1 - c0)) -v hz="$hz" -v t="$secs" -v rss="$rss" -v hwm="$hwm" \
      'BEGIN { printf "canh-agent at rest run=%s cpu=%.2f%% of one core over %s s rss_kb=%s peak_rss_kb=%s\n", r, 100*c/hz/t, t, rss, hwm }'
  done
  exit 0
fi
for r in $(seq 1 "$runs"); do
  before=$(stored); named_before=$(named); c0=$(cpu_ticks "$agent_pid")
  read -r started took < <("$work/spawn" "$rate" "$secs")
  c1=$(cpu_ticks "$agent_pid")
  # Wait until the server holds them all (or 30 s).
  for _ in $(seq 1 60); do
    now=$(stored); [ $((now - before)) -ge "$started" ] && break; sleep 0.5
  done
  got=$(( $(stored) - before )); with_name=$(( $(named) - named_before ))
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$agent_pid/status")
  overruns=$(grep -c 'overrun' "$work/agent.log" || true)
  awk -v r="$r" -v s="$started" -v g="$got" -v n="$with_name" -v t="$took" -v c=$((c1 - c0)) \
    -v hz="$hz" -v rss="$rss" -v o="$overruns" \
    'BEGIN { printf "canh-agent run=%s starts=%s stored=%s lost=%s with_executable=%s cpu=%.1f%% of one core peak_rss_kb=%s connector_overruns=%s\n", r, s, g, s-g, n, 100*c/hz/t, rss, o }'
done

if command -v auditd >/dev/null && auditctl -s >/dev/null 2>&1; then
  mkdir -p "$work/audit"
  cat > "$work/auditd.conf" <<CONF
log_file = $work/audit/audit.log
log_format = RAW
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 1024
max_log_file_action = IGNORE
space_left = 2
admin_space_left = 1
disk_full_action = IGNORE
disk_error_action = IGNORE
CONF
  auditd -n -c "$work" -s enable >/dev/null 2>&1 &
  auditd_pid=$!
  sleep 1
  auditctl -a always,exit -F arch=b64 -S execve -F exe=/usr/bin/true -k canh_bench >/dev/null
  for r in $(seq 1 "$runs"); do
    before=$(grep -c 'type=SYSCALL.*key="canh_bench"' "$work/audit/audit.log" 2>/dev/null || true)
    c0=$(cpu_ticks "$auditd_pid")
    read -r started took < <("$work/spawn" "$rate" "$secs")
    sleep 1
    c1=$(cpu_ticks "$auditd_pid")
    got=$(( $(grep -c 'type=SYSCALL.*key="canh_bench"' "$work/audit/audit.log" 2>/dev/null || true) - before ))
    awk -v r="$r" -v s="$started" -v g="$got" -v t="$took" -v c=$((c1 - c0)) -v hz="$hz" \
      'BEGIN { printf "auditd run=%s starts=%s records=%s lost=%s cpu=%.1f%% of one core (user space only)\n", r, s, g, s-g, 100*c/hz/t }'
  done
else
  echo "auditd: the audit subsystem is not available here"
fi

#!/usr/bin/env bash
# Durable ingest over syslog TCP: canh (socket → parse → WAL fsync → Parquet + index) side by side
# with rsyslog (imtcp → omfile), same sender, same lines. Prints one line per run and the medians.
#
# Usage: bench/ingest_syslog.sh CANH_BINARY [EVENTS] [RUNS]
# Needs: python3, rsyslog (apt-get install rsyslog), curl.
set -euo pipefail
canh=${1:?path to the canh binary (release-fast build)}
events=${2:-1000000}
runs=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_canh() {
  local dir=$work/canh-$1 port=$((20000 + RANDOM % 20000)) http=$((40000 + RANDOM % 20000))
  CANH_LOG=warn CANH_SERVER__HTTP_TLS=false "$canh" --data-dir "$dir" server --http 127.0.0.1:$http --syslog 127.0.0.1:$port >/dev/null 2>&1 &
  local pid=$!
  until curl -sf "http://127.0.0.1:$http/health" >/dev/null; do sleep 0.1; done
  local t0; t0=$(now_ms)
  python3 "$here/syslog_sender.py" 127.0.0.1 "$port" "$events" 2
  local t1; t1=$(now_ms)
  # Acknowledged into the WAL; now wait until everything is in Parquet and the index.
  until curl -sf "http://127.0.0.1:$http/health" | grep -q '"wal_pending_events":0'; do sleep 0.05; done
  local t2; t2=$(now_ms)
  local rss; rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  local stored; stored=$(curl -s "http://127.0.0.1:$http/metrics" | awk -F' ' '/^canh_ingest_events_total\{source="syslog_tcp"/ {print $2}')
  kill $pid; wait $pid 2>/dev/null || true
  local disk; disk=$(du -sk "$dir/events" | cut -f1)
  echo "canh run=$1 events=$stored wal_s=$(( t1 - t0 ))ms indexed_s=$(( t2 - t0 ))ms eps_wal=$(( events * 1000 / (t1 - t0) )) eps_indexed=$(( events * 1000 / (t2 - t0) )) peak_rss_kb=$rss disk_kb=$disk"
}

run_rsyslog() {
  local dir=$work/rsyslog-$1 port=$((20000 + RANDOM % 20000))
  mkdir -p "$dir"
  cat > "$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir")
module(load="imtcp")
input(type="imtcp" port="$port" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="$dir/out.log" template="raw")
CONF
  rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/pid" >/dev/null 2>&1 &
  local pid=$!
  until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done
  local t0; t0=$(now_ms)
  python3 "$here/syslog_sender.py" 127.0.0.1 "$port" "$events" 2
  until [ "$(wc -l < "$dir/out.log" 2>/dev/null || echo 0)" -ge "$events" ]; do sleep 0.05; done
  local t1; t1=$(now_ms)
  local rss; rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  echo "rsyslog run=$1 wall=$(( t1 - t0 ))ms eps=$(( events * 1000 / (t1 - t0) )) peak_rss_kb=$rss disk_kb=$(du -sk "$dir/out.log" | cut -f1)"
}

for r in $(seq 1 "$runs"); do
  run_canh "$r" | tee -a "$work/canh.txt"
  run_rsyslog "$r" | tee -a "$work/rsyslog.txt"
done
c_wal=$(grep -o 'eps_wal=[0-9]*' "$work/canh.txt" | cut -d= -f2 | median)
c_idx=$(grep -o 'eps_indexed=[0-9]*' "$work/canh.txt" | cut -d= -f2 | median)
r_eps=$(grep -o ' eps=[0-9]*' "$work/rsyslog.txt" | cut -d= -f2 | median)
echo "median: canh acknowledged (WAL) $c_wal ev/s, canh stored+indexed $c_idx ev/s, rsyslog to file $r_eps ev/s"
awk -v a="$c_idx" -v b="$r_eps" 'BEGIN { printf "ratio canh stored+indexed / rsyslog: %.2f\n", a / b }'

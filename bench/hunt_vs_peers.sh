#!/usr/bin/env bash
# Sigma hunting over EVTX files: `canh hunt` side by side with Chainsaw and Hayabusa on the same
# files and the same SigmaHQ Windows rules. For every tool, set and run it records user+sys CPU
# seconds, wall time and peak RSS (GNU time -v) and the number of hits; it prints every run, the
# medians and events per CPU-second (the fair unit: canh uses every core, the peers do not).
#
# Usage:
#   bench/hunt_vs_peers.sh --canh BIN [--chainsaw BIN --chainsaw-mapping YML]
#                          [--hayabusa BIN --hayabusa-config DIR [--hayabusa-rules DIR]]
#                          [--runs N] [--sets LIST] [--rules DIR] [--out DIR]
#
#   --sets      comma list of: evtx (datasets/evtx), regression (the SigmaHQ regression .evtx),
#               evtx10 (ten hard-linked copies of evtx). Default: evtx,regression
#   --rules     Sigma rules for every tool. Default: datasets/sigma/rules/windows
#   --hayabusa-config  Hayabusa's config directory (the `config/` of its rules repository).
#   --hayabusa-rules   rules for Hayabusa only (e.g. its own converted Sigma rules); default --rules.
#   --out       keep outputs and results.tsv here (default: a temporary directory, removed).
#
# Events per set are counted by canh's own summary line ("N files, E events, ..."), so every tool
# is divided by the same number. Hits are one line per (rule, event) in each tool's JSONL output;
# per-rule counts of the last run go to hits_by_rule.tsv for comparison.
# Needs: GNU time (/usr/bin/time), python3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
datasets=$(cd "$here/../../shared/datasets" && pwd)

canh="" chainsaw="" mapping="" hayabusa="" hconfig="" hrules="" runs=3 sets="evtx,regression" out=""
rules="$datasets/sigma/rules/windows"
while [ $# -gt 0 ]; do
  case $1 in
    --canh) canh=$2; shift 2 ;;
    --chainsaw) chainsaw=$2; shift 2 ;;
    --chainsaw-mapping) mapping=$2; shift 2 ;;
    --hayabusa) hayabusa=$2; shift 2 ;;
    --hayabusa-config) hconfig=$2; shift 2 ;;
    --hayabusa-rules) hrules=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --rules) rules=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$canh" ] || { echo "--canh BIN is required" >&2; exit 2; }
if [ -n "$chainsaw" ] && [ -z "$mapping" ]; then
  echo "--chainsaw needs --chainsaw-mapping (its mappings/sigma-event-logs-all.yml)" >&2; exit 2
fi
if [ -n "$hayabusa" ] && [ -z "$hconfig" ]; then
  echo "--hayabusa needs --hayabusa-config (the config/ folder of hayabusa-rules)" >&2; exit 2
fi
[ -x /usr/bin/time ] || { echo "GNU time is needed (apt-get install time)" >&2; exit 2; }

if [ -n "$out" ]; then
  mkdir -p "$out"; work=$(cd "$out" && pwd)
else
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/sets" "$work/runs"

# Stage the sets: hard links where the file system allows, copies otherwise; only .evtx files.
link_or_copy() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
stage_set() {
  local name=$1 dir=$work/sets/$1
  rm -rf "$dir"; mkdir -p "$dir"
  case $name in
    evtx)
      (cd "$datasets/evtx" && find . -name '*.evtx' -print0) | while IFS= read -r -d '' f; do
        mkdir -p "$dir/$(dirname "$f")"; link_or_copy "$datasets/evtx/$f" "$dir/$f"
      done ;;
    regression)
      find "$datasets/sigma/regression_data" -name '*.evtx' -print0 | while IFS= read -r -d '' f; do
        link_or_copy "$f" "$dir/$(basename "$f")"
      done ;;
    evtx10)
      [ -d "$work/sets/evtx" ] || stage_set evtx
      for i in 0 1 2 3 4 5 6 7 8 9; do cp -rl "$work/sets/evtx" "$dir/copy$i" 2>/dev/null \
        || cp -r "$work/sets/evtx" "$dir/copy$i"; done ;;
    *) echo "unknown set: $name" >&2; exit 2 ;;
  esac
}

# One measured run: GNU time around the tool, niced (the machine is shared).
timed() {
  local tag=$1; shift
  /usr/bin/time -v -o "$work/runs/$tag.time" nice -n 10 "$@" \
    >"$work/runs/$tag.stdout" 2>"$work/runs/$tag.stderr" || {
    echo "FAILED ($tag): $*" >&2; tail -5 "$work/runs/$tag.stderr" >&2; return 1; }
}
tget() { awk -F': ' -v k="$2" '$1 ~ k {print $2}' "$work/runs/$1.time" | head -1; }
wall_s() { # h:mm:ss or m:ss.ss -> seconds
  tget "$1" 'Elapsed' | awk -F: '{s=0; for (i=1; i<=NF; i++) s=s*60+$i; printf "%.2f", s}'
}

run_canh() { # set run
  timed "canh-$1-$2" "$canh" hunt "$work/sets/$1" --rules "$rules" --format jsonl \
    --data-dir "$work/canh-data"
  cp "$work/runs/canh-$1-$2.stdout" "$work/runs/canh-$1-$2.jsonl"
}
run_chainsaw() {
  rm -f "$work/runs/chainsaw-$1-$2.jsonl"
  timed "chainsaw-$1-$2" "$chainsaw" hunt "$work/sets/$1" -s "$rules" --mapping "$mapping" \
    --jsonl -o "$work/runs/chainsaw-$1-$2.jsonl" --skip-errors
}
run_hayabusa() {
  rm -f "$work/runs/hayabusa-$1-$2.jsonl"
  # Hayabusa 4.x. Its channel filter drops rules without a `Channel` condition, so plain SigmaHQ
  # rules load but never fire; give it its own converted rules with --hayabusa-rules.
  timed "hayabusa-$1-$2" "$hayabusa" dfir-timeline -d "$work/sets/$1" -r "${hrules:-$rules}" \
    -c "$hconfig" -t jsonl -o "$work/runs/hayabusa-$1-$2.jsonl" -w -q -K -C -m informational \
    --enable-deprecated-rules --enable-unsupported-rules --enable-noisy-rules
}

hits_of() { # jsonl output -> number of hit lines
  if [ -f "$1" ]; then grep -c . "$1" || true; else echo 0; fi
}

tools="canh"
[ -n "$chainsaw" ] && tools="$tools chainsaw"
[ -n "$hayabusa" ] && tools="$tools hayabusa"

res=$work/results.tsv
printf 'tool\tset\trun\tevents\tuser_s\tsys_s\tcpu_s\twall_s\tpeak_rss_mb\thits\tev_per_cpu_s\tload1\n' >"$res"
for set in ${sets//,/ }; do
  stage_set "$set"
  # Event count for this set: canh's summary line (one untimed warm-up run that also warms caches).
  "$canh" hunt "$work/sets/$set" --rules "$rules" --format jsonl --data-dir "$work/canh-data" \
    >/dev/null 2>"$work/count-$set.txt"
  events=$(grep -Eo '[0-9]+ events' "$work/count-$set.txt" | tail -1 | cut -d' ' -f1)
  echo "set $set: $events events ($(find "$work/sets/$set" -name '*.evtx' | wc -l) files)"
  for run in $(seq 1 "$runs"); do
    for tool in $tools; do
      load1=$(cut -d' ' -f1 /proc/loadavg)
      "run_$tool" "$set" "$run" || continue
      tag=$tool-$set-$run
      user=$(tget "$tag" 'User time'); sys=$(tget "$tag" 'System time')
      rss=$(tget "$tag" 'Maximum resident set size')
      hits=$(hits_of "$work/runs/$tag.jsonl")
      awk -v t="$tool" -v s="$set" -v r="$run" -v e="$events" -v u="$user" -v y="$sys" \
        -v w="$(wall_s "$tag")" -v m="$rss" -v h="$hits" -v l="$load1" 'BEGIN {
          c = u + y; printf "%s\t%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%.0f\t%s\n",
          t, s, r, e, u, y, c, w, m / 1024, h, (c > 0 ? e / c : 0), l }' | tee -a "$res"
    done
  done
done

echo
echo "== medians (per tool and set) =="
python3 - "$res" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
groups = {}
for r in rows:
    groups.setdefault((r["set"], r["tool"]), []).append(r)
med = {}
print("set\ttool\tevents\tcpu_s\tev_per_cpu_s\twall_s\tpeak_rss_mb\thits\truns(cpu_s)")
for (s, t), rs in groups.items():
    m = lambda k: statistics.median(float(r[k]) for r in rs)
    med[(s, t)] = m("ev_per_cpu_s")
    print(f"{s}\t{t}\t{rs[0]['events']}\t{m('cpu_s'):.2f}\t{m('ev_per_cpu_s'):.0f}\t"
          f"{m('wall_s'):.2f}\t{m('peak_rss_mb'):.1f}\t{int(m('hits'))}\t"
          + ",".join(r["cpu_s"] for r in rs))
for (s, t), v in med.items():
    if t != "canh" and (s, "canh") in med and v > 0:
        print(f"{s}: canh/{t} events per CPU-second = {med[(s, 'canh')] / v:.1f}x")
PY

# Hits per rule (last run of each tool and set), keyed by rule id where the tool gives one.
python3 - "$work" "$sets" "$runs" $tools <<'PY' >"$work/hits_by_rule.tsv"
import json, sys, os, collections
work, sets, runs, tools = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4:]
def rule_key(tool, o):
    if tool == "canh":
        return o.get("rule.id") or o.get("rule.title")
    if tool == "chainsaw":
        return (o.get("sigma") or {}).get("id") or o.get("id") or o.get("name")
    return o.get("RuleID") or o.get("RuleTitle")
print("set\trule\t" + "\t".join(tools))
for s in sets:
    counts = {}
    for t in tools:
        c = collections.Counter()
        p = os.path.join(work, "runs", f"{t}-{s}-{runs}.jsonl")
        if os.path.exists(p):
            for line in open(p, errors="replace"):
                line = line.strip()
                if line:
                    try:
                        c[rule_key(t, json.loads(line))] += 1
                    except ValueError:
                        pass
        counts[t] = c
    for k in sorted(set().union(*counts.values()), key=str):
        print(f"{s}\t{k}\t" + "\t".join(str(counts[t].get(k, 0)) for t in tools))
PY
echo "per-rule hits: $work/hits_by_rule.tsv; all runs: $res"

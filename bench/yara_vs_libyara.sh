#!/usr/bin/env bash
# YARA scanning: the agent's scanner (yara-x, feature `yara`) side by side with the `yara`
# command (libyara; Debian package `yara`) on the same rules and files, one thread each.
#
# Usage: bench/yara_vs_libyara.sh YARA_SCAN_EXAMPLE RULES_DIR TARGET_DIR [RUNS]
#
#   YARA_SCAN_EXAMPLE  the agent's example, built with
#                      cargo build -p canh-agent --features yara --profile release-fast --example yara_scan
#   RULES_DIR          a folder of .yar files (every file must compile with both engines)
#   TARGET_DIR         files to scan (e.g. /usr/bin)
#
# Canh reads, hashes (SHA-256) and scans every file once per content, as the agent does with
# new executables; `yara -p 1 -r` scans every file with rules compiled beforehand by `yarac`.
# For each run: wall time, user+sys CPU seconds and peak RSS (GNU time), and the matches; then
# the medians. Canh's line also gives its own scan rate (compilation left out).
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,15p "$0"; exit 2; }
canh=$1 rules=$2 target=$3 runs=${4:-3}
command -v yara >/dev/null && command -v yarac >/dev/null || { echo "needs the yara package" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

yarac "$rules"/*.yar "$work/rules.yarc"
# Read the files once so that every run starts with them in the page cache.
cat "$(find "$target" -type f | head -1)" >/dev/null
find "$target" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true

printf 'tool\trun\twall_s\tcpu_s\tpeak_rss_kb\tmatches\n' > "$work/results.tsv"
for run in $(seq 1 "$runs"); do
  /usr/bin/time -f '%e %U %S %M' -o "$work/t" "$canh" "$rules" "$target" > "$work/canh.out"
  read -r wall user sys rss < "$work/t"
  m=$(grep -c '^match ' "$work/canh.out" || true)
  printf 'canh\t%s\t%s\t%s\t%s\t%s\n' "$run" "$wall" "$(echo "$user + $sys" | bc)" "$rss" "$m" >> "$work/results.tsv"
  grep -E "^(rules|files):|^scanned" "$work/canh.out" | sed 's/^/  canh: /'
  /usr/bin/time -f '%e %U %S %M' -o "$work/t" yara -p 1 -N -C "$work/rules.yarc" -r "$target" > "$work/yara.out" 2>/dev/null || true
  read -r wall user sys rss < "$work/t"
  m=$(cut -d' ' -f2- "$work/yara.out" | sort -u | wc -l)
  printf 'yara\t%s\t%s\t%s\t%s\t%s\n' "$run" "$wall" "$(echo "$user + $sys" | bc)" "$rss" "$m" >> "$work/results.tsv"
done
column -t "$work/results.tsv"
python3 - "$work/results.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = {}
for tool in ("canh", "yara"):
    r = [x for x in rows if x["tool"] == tool]
    med[tool] = {k: statistics.median(float(x[k]) for x in r) for k in ("wall_s", "cpu_s", "peak_rss_kb")}
    print(f"median {tool}: wall {med[tool]['wall_s']:.2f} s, cpu {med[tool]['cpu_s']:.2f} s, "
          f"peak RSS {med[tool]['peak_rss_kb'] / 1024:.0f} MB")
print(f"CPU time yara / canh: {med['yara']['cpu_s'] / med['canh']['cpu_s']:.2f}x")
PY

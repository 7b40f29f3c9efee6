#!/usr/bin/env bash
# Canh sensor vs Suricata, side by side on the same captures: one worker each, comparable EVE
# outputs, with and without the ET Open rules. Median of RUNS runs (default 3).
#
# Usage:
#   bench/sensor_vs_suricata.sh CANH_BIN SURICATA_BIN SURICATA_YAML [WORK_DIR]
#
#   CANH_BIN       the `canh` binary (release build)
#   SURICATA_BIN   the `suricata` binary (e.g. src/suricata of a build tree)
#   SURICATA_YAML  a suricata.yaml (e.g. the one `configure` writes into the build tree); the
#                  script derives its own copies from it (outputs, rule files), the file itself is
#                  not changed
#   WORK_DIR       where the merged captures, configs, logs and results go
#                  (default: ${TMPDIR:-/tmp}/canh-sensor-vs-suricata)
#
# Environment: RUNS (default 3), CAPTURES (default "app-5x bench-5x"), MODES (default
# "meta etopen"), COPIES ("octet3", the default, or "tcprewrite": how copies 2-5 are made,
# see below), CANH_ARGS (extra sensor arguments, e.g. "--no-ddos"; default none, so the
# sensor runs as shipped, scan/flood detection included).
#
# Needs: mergecap, editcap, capinfos (wireshark-common), tcprewrite (tcpreplay), GNU time
# (/usr/bin/time), python3 with PyYAML (python3-yaml), sha256sum.
#
# Data (resolved from this script's location): ../shared/datasets/pcap and
# ../shared/datasets/et-open/rules next to the repository.
#
# Captures, built deterministically (same input files give byte-identical output):
#   app-base.pcap   = mergecap -F pcap -a  malware-c2/*.pcap lateral-movement/*.pcap scans/*/*.pcap
#                     (file order: bash glob order under LC_ALL=C; 44,450 packets)
#   bench-base.pcap = the same files, then dos/*.pcap dos/*.pcapng (112,938 packets)
#   rK.pcap         = tcprewrite --seed=K --fixcsum of the base, K = 1..4 (every IP address
#                     remapped by a seeded hash, so each copy is new flows with the same payloads)
#                     Caveat: that remap is not one-to-one (distinct addresses can land on one
#                     address, some land in 127/8 or 224/4), so copies 2-5 carry merged flows and
#                     parser errors the original does not have. COPIES=octet3 instead shifts the
#                     third octet of every IPv4 address (c -> (c + 37*K) mod 256, in the IPv4
#                     header and in ARP), with the IPv4 and TCP/UDP checksums updated
#                     incrementally (RFC 1624): a bijection that keeps private, multicast and
#                     broadcast addresses in their class, payloads and timestamps unchanged.
#   X-5x.pcap       = mergecap -F pcap -a  base r1 r2 r3 r4   (5 copies)
#   one.pcap        = editcap -r app-base.pcap one.pcap 1    (the first packet only)
#
# Runs, per capture and mode, tools alternating back to back:
#   canh:     canh sensor -r CAP -l DIR --data-dir DIR/data [-S FILE for every ET Open *.rules]
#   suricata: suricata -c DERIVED.yaml --runmode single -v -r CAP -l DIR
#             (DERIVED.yaml: SURICATA_YAML with `outputs` replaced by one eve-log that has
#             alert, anomaly, http, dns, tls, smtp, ftp, ssh, dhcp, stats, flow; every other
#             output (fast, stats.log, pcap-log, file-store, tls-store, ...) removed; for the
#             etopen mode the same *.rules files as rule-files; for meta no rule files)
#   Both under /usr/bin/time -v (peak RSS); wall time measured around the process.
#   Processing time:
#     canh      wall(CAP) - median wall(one.pcap, same mode)   (the sensor prints no split)
#     suricata  its own "time elapsed" (from the end of rule loading to the end of the packet
#               threads, end-of-capture flow flush included); wall - median wall(one.pcap) is
#               reported too
#   Load time: median wall of the one-packet run (start-up, rule load, one packet, shut-down).
#
# Output: WORK_DIR/results/runs.tsv (every run), counts.tsv (EVE records per event type, first
# run of each cell), summary.md (medians and ratios).
set -euo pipefail
export LC_ALL=C

if [[ $# -lt 3 || $# -gt 4 ]]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi
CANH=$(readlink -f "$1")
SURI=$(readlink -f "$2")
SURI_YAML=$(readlink -f "$3")
WORK=${4:-${TMPDIR:-/tmp}/canh-sensor-vs-suricata}
RUNS=${RUNS:-3}
CAPTURES=${CAPTURES:-"app-5x bench-5x"}
MODES=${MODES:-"meta etopen"}
read -r -a CANH_EXTRA <<< "${CANH_ARGS:-}"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=$(readlink -f "$SCRIPT_DIR/../../shared/datasets")
PCAPS="$DATA/pcap"
RULES_DIR="$DATA/et-open/rules"

for tool in mergecap editcap capinfos tcprewrite python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "missing GNU time (/usr/bin/time)" >&2; exit 1; }
[[ -x "$CANH" && -x "$SURI" && -f "$SURI_YAML" ]] || { echo "bad binary/yaml argument" >&2; exit 1; }
[[ -d "$PCAPS" && -d "$RULES_DIR" ]] || { echo "datasets not found under $DATA" >&2; exit 1; }

mkdir -p "$WORK/pcap" "$WORK/runs" "$WORK/results"
RULE_FILES=("$RULES_DIR"/*.rules)

# ---------------------------------------------------------------- captures
remap_octet3() { # K IN OUT  (classic pcap, Ethernet; see the header comment)
    python3 - "$@" <<'PY'
import struct, sys
k, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
shift = (37 * k) % 256

def new_addr(a):
    return a[:2] + bytes([(a[2] + shift) % 256]) + a[3:]

def fold(x):
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x

def update(cksum, old, new):  # RFC 1624: HC' = ~(~HC + ~m + m')
    x = (~cksum & 0xFFFF)
    for i in range(0, len(old), 2):
        x += (~struct.unpack("!H", old[i:i + 2])[0] & 0xFFFF) + struct.unpack("!H", new[i:i + 2])[0]
    return ~fold(x) & 0xFFFF

with open(src, "rb") as f, open(dst, "wb") as o:
    o.write(f.read(24))
    while len(h := f.read(16)) == 16:
        incl = struct.unpack("<I", h[8:12])[0]
        p = bytearray(f.read(incl))
        et = p[12:14]
        if et == b"\x08\x00" and len(p) >= 34:
            old, new = bytes(p[26:34]), new_addr(p[26:30]) + new_addr(p[30:34])
            p[26:34] = new
            p[24:26] = struct.pack("!H", update(struct.unpack("!H", p[24:26])[0], old, new))
            ihl, proto = (p[14] & 15) * 4, p[23]
            frag_off = struct.unpack("!H", p[20:22])[0] & 0x1FFF
            l4 = 14 + ihl
            if frag_off == 0 and proto in (6, 17):
                at = l4 + (16 if proto == 6 else 6)
                if len(p) >= at + 2:
                    c = struct.unpack("!H", p[at:at + 2])[0]
                    if not (proto == 17 and c == 0):  # UDP without checksum stays so
                        c = update(c, old, new)
                        if proto == 17 and c == 0:
                            c = 0xFFFF
                        p[at:at + 2] = struct.pack("!H", c)
        elif et == b"\x08\x06" and len(p) >= 42 and p[16:18] == b"\x08\x00":
            p[28:32] = new_addr(p[28:32])
            p[38:42] = new_addr(p[38:42])
        o.write(h)
        o.write(p)
PY
}

build_captures() {
    local out="$WORK/pcap"
    (
        cd "$PCAPS"
        local app=(malware-c2/*.pcap lateral-movement/*.pcap scans/*/*.pcap)
        local dos=(dos/*.pcap dos/*.pcapng)
        [[ -f "$out/app-base.pcap" ]] || mergecap -F pcap -a -w "$out/app-base.pcap" "${app[@]}"
        [[ -f "$out/bench-base.pcap" ]] ||
            mergecap -F pcap -a -w "$out/bench-base.pcap" "${app[@]}" "${dos[@]}"
    )
    local base k
    for base in app bench; do
        for k in 1 2 3 4; do
            [[ -f "$out/$base-r$k.pcap" ]] && continue
            if [[ ${COPIES:-octet3} == octet3 ]]; then
                remap_octet3 "$k" "$out/$base-base.pcap" "$out/$base-r$k.pcap"
            else
                tcprewrite --seed=$k --fixcsum \
                    --infile="$out/$base-base.pcap" --outfile="$out/$base-r$k.pcap" \
                    >> "$WORK/results/tcprewrite.log" 2>&1
            fi
        done
        [[ -f "$out/$base-5x.pcap" ]] || mergecap -F pcap -a -w "$out/$base-5x.pcap" \
            "$out/$base-base.pcap" "$out/$base-r1.pcap" "$out/$base-r2.pcap" \
            "$out/$base-r3.pcap" "$out/$base-r4.pcap"
    done
    [[ -f "$out/one.pcap" ]] || editcap -r "$out/app-base.pcap" "$out/one.pcap" 1
    (cd "$out" && sha256sum app-5x.pcap bench-5x.pcap one.pcap) > "$WORK/results/captures.sha256"
    : > "$WORK/results/captures.tsv"
    local c
    for c in app-5x bench-5x one; do
        # packets, data bytes (sum of captured packet lengths)
        printf '%s\t%s\t%s\n' "$c" \
            "$(capinfos -M -c -T -r "$out/$c.pcap" | tail -1 | cut -f2)" \
            "$(capinfos -M -d -T -r "$out/$c.pcap" | tail -1 | cut -f2)" \
            >> "$WORK/results/captures.tsv"
    done
}

# ---------------------------------------------------------------- suricata configs
derive_yaml() { # MODE OUT
    python3 - "$SURI_YAML" "$1" "$2" "$RULES_DIR" "${RULE_FILES[@]##*/}" <<'PY'
import sys, yaml
src, mode, out, rules_dir, *rule_files = sys.argv[1:]
with open(src) as f:
    text = f.read()
cfg = yaml.safe_load(text)
types = [
    {"alert": {"tagged-packets": True}},
    {"anomaly": {"enabled": True}},
    {"http": {"extended": True}},
    {"dns": {"enabled": True}},
    {"tls": {"extended": True}},
    {"smtp": {"extended": True}},
    "ftp",
    "ssh",
    {"dhcp": {"enabled": True, "extended": False}},
    {"stats": {"totals": True, "threads": False, "deltas": False}},
    "flow",
]
cfg["outputs"] = [
    {"eve-log": {"enabled": True, "filetype": "regular", "filename": "eve.json",
                 "types": types}},
]
cfg.setdefault("stats", {})["enabled"] = True
cfg["default-rule-path"] = rules_dir
cfg["rule-files"] = rule_files if mode == "etopen" else []
cfg["classification-file"] = rules_dir + "/classification.config"
with open(out, "w") as f:
    f.write("%YAML 1.1\n---\n")
    yaml.safe_dump(cfg, f, default_flow_style=False, sort_keys=False)
PY
}

# ---------------------------------------------------------------- one run
now_ns() { date +%s%N; }

run_one() { # TOOL MODE CAPTURE RUN
    local tool=$1 mode=$2 cap=$3 run=$4
    local dir="$WORK/runs/$tool-$mode-$cap-$run"
    rm -rf "$dir"
    mkdir -p "$dir"
    local load t0 t1 rc=0
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(now_ns)
    if [[ $tool == canh ]]; then
        local args=(sensor -r "$WORK/pcap/$cap.pcap" -l "$dir" --data-dir "$dir/data"
            ${CANH_EXTRA[@]+"${CANH_EXTRA[@]}"})
        if [[ $mode == etopen ]]; then
            local f
            for f in "${RULE_FILES[@]}"; do args+=(-S "$f"); done
        fi
        (cd "$dir" && /usr/bin/time -v -o "$dir/time.txt" "$CANH" "${args[@]}") \
            > "$dir/stdout.txt" 2> "$dir/stderr.txt" || rc=$?
    else
        (cd "$dir" && /usr/bin/time -v -o "$dir/time.txt" "$SURI" -c "$WORK/suricata-$mode.yaml" \
            --runmode single -v -r "$WORK/pcap/$cap.pcap" -l "$dir") \
            > "$dir/stdout.txt" 2> "$dir/stderr.txt" || rc=$?
    fi
    t1=$(now_ns)
    if [[ $rc -ne 0 ]]; then
        echo "run failed ($rc): $tool $mode $cap $run, see $dir" >&2
        exit 1
    fi
    local wall rss elapsed
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/time.txt")
    elapsed=""
    if [[ $tool == suricata ]]; then
        elapsed=$(grep -ho 'time elapsed [0-9.]*s' "$dir"/stdout.txt "$dir"/stderr.txt \
            "$dir"/suricata.log 2>/dev/null | head -1 | sed 's/time elapsed \([0-9.]*\)s/\1/')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$mode" "$cap" "$run" "$wall" \
        "${elapsed:--}" "$rss" "$load" >> "$WORK/results/runs.tsv"
    echo "  $tool $mode $cap run $run: wall ${wall}s elapsed ${elapsed:--} rss ${rss}kB load $load"
    if [[ $run -eq 1 ]]; then
        # EVE records per event type (compact or spaced JSON alike)
        grep -o '"event_type": *"[a-z_0-9]*"' "$dir/eve.json" | sed 's/.*"\([a-z_0-9]*\)"$/\1/' |
            sort | uniq -c | awk -v t="$tool" -v m="$mode" -v c="$cap" \
            '{ printf "%s\t%s\t%s\t%s\t%s\n", t, m, c, $2, $1 }' >> "$WORK/results/counts.tsv"
    fi
    if [[ $cap != one ]]; then
        rm -f "$dir/eve.json" # large; counts are kept
    fi
}

# ---------------------------------------------------------------- main
echo "building captures in $WORK/pcap"
build_captures
cat "$WORK/results/captures.tsv"
for mode in $MODES; do derive_yaml "$mode" "$WORK/suricata-$mode.yaml"; done

printf 'tool\tmode\tcapture\trun\twall_s\tsuricata_elapsed_s\tmax_rss_kb\tload1\n' \
    > "$WORK/results/runs.tsv"
: > "$WORK/results/counts.tsv"
{
    echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(nproc) cores, $(uname -r)"
    echo "canh: $CANH ($(sha256sum "$CANH" | cut -c1-16))"
    echo "suricata: $("$SURI" -V 2>&1 | head -1)"
    echo "et-open rule files: ${#RULE_FILES[@]}"
    echo "canh extra args: ${CANH_ARGS:-none}"
    echo "copies: ${COPIES:-octet3}"
    echo "loadavg at start: $(cat /proc/loadavg)"
} > "$WORK/results/env.txt"

for mode in $MODES; do
    for run in $(seq 1 "$RUNS"); do
        for tool in canh suricata; do run_one "$tool" "$mode" one "$run"; done
    done
    for cap in $CAPTURES; do
        for run in $(seq 1 "$RUNS"); do
            for tool in canh suricata; do run_one "$tool" "$mode" "$cap" "$run"; done
        done
    done
done
echo "loadavg at end: $(cat /proc/loadavg)" >> "$WORK/results/env.txt"

# ---------------------------------------------------------------- medians
python3 - "$WORK/results" <<'PY' | tee "$WORK/results/summary.md"
import csv, statistics, sys
res = sys.argv[1]
caps = {}
with open(f"{res}/captures.tsv") as f:
    for name, pkts, data in csv.reader(f, delimiter="\t"):
        caps[name] = (int(pkts), int(data))
runs = {}
with open(f"{res}/runs.tsv") as f:
    for r in csv.DictReader(f, delimiter="\t"):
        runs.setdefault((r["tool"], r["mode"], r["capture"]), []).append(r)
med = statistics.median

def col(rs, k):
    return [float(r[k]) for r in rs if r[k] not in ("", "-")]

print(open(f"{res}/env.txt").read())
print("| tool | mode | capture | packets | MB | wall s (median) | processing s | pkt/s | MB/s |"
      " load s (1-pkt wall) | max RSS MB | runs: wall s | runs: load1 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
out = {}
for (tool, mode, cap), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
    if cap == "one":
        continue
    pkts, data = caps[cap]
    wall = med(col(rs, "wall_s"))
    one = med(col(runs[(tool, mode, "one")], "wall_s"))
    if tool == "suricata":
        proc = med(col(rs, "suricata_elapsed_s"))
        alt = f" (wall-1pkt {wall - one:.3f})"
    else:
        proc = wall - one
        alt = ""
    rss = med(col(rs, "max_rss_kb")) / 1024
    out[(tool, mode, cap)] = (proc, rss, one)
    print(f"| {tool} | {mode} | {cap} | {pkts} | {data/1e6:.1f} | {wall:.3f} | {proc:.3f}{alt} |"
          f" {pkts/proc/1e3:.0f} k | {data/1e6/proc:.1f} | {one:.3f} | {rss:.0f} |"
          f" {', '.join(r['wall_s'] for r in rs)} | {', '.join(r['load1'] for r in rs)} |")
print()
print("| mode | capture | canh/suricata throughput | canh/suricata peak RSS | canh/suricata load |")
print("|---|---|---|---|---|")
for (tool, mode, cap), (proc, rss, one) in sorted(out.items()):
    if tool != "canh" or ("suricata", mode, cap) not in out:
        continue
    sp, sr, so = out[("suricata", mode, cap)]
    print(f"| {mode} | {cap} | {sp/proc:.2f}x | {rss/sr:.2f}x | {one/so:.2f}x |")
print()
counts = {}
with open(f"{res}/counts.tsv") as f:
    for tool, mode, cap, et, n in csv.reader(f, delimiter="\t"):
        counts.setdefault((mode, cap), {}).setdefault(et, {})[tool] = int(n)
for (mode, cap), ets in sorted(counts.items()):
    print(f"records per event type, {mode} {cap} (canh / suricata):")
    for et in sorted(ets):
        print(f"  {et:12} {ets[et].get('canh', 0):>9} {ets[et].get('suricata', 0):>9}")
PY

#!/usr/bin/env bash
# QSESS.SET throughput with and without a GeoIP database configured, in the same run; writes bench/results/geo.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'EOF'
Usage: bench/geo.sh [--rounds N] [--requests N] [--networks N]

  --rounds N     A/B rounds per workload (default 5); the order alternates (A B, B A, ...)
  --requests N   QSESS.SET requests per run (default 300000)
  --networks N   IPv4 networks in the synthetic City database (default 1000000, about 60 MB,
                 the size of GeoLite2-City)

Builds qsess-module and the fixture generator in release, generates a GeoLite2-City-sized synthetic
database (nothing is downloaded), starts a private redis-server on a free loopback port and runs
redis-benchmark -P 16 -c 50 -r 100000 with QSESS.SET (300-byte DATA, IP 203.0.113.7, a 111-byte
Chrome user agent) on an emptied keyspace, alternately without a database (A) and with one (B):

  create+update    default modes: the address is looked up when a session is created (about a quarter
                   of the requests: 100,000 ids drawn 400,000 times); updates with the same address
                   look nothing up
  every-write      qsess.ip-mode none and qsess.ua-mode none: with no address stored, every SET looks
                   its address up, and every SET summarises its user agent (through the cache)
  random-address   every SET moves its session (100,000 ids) to a new pseudo-random IPv4 address, so
                   every SET looks up an address it has not looked up before, walking cold parts of the
                   60 MB tree: the worst case. redis-benchmark cannot make addresses, so these requests
                   come from a pre-generated file through redis-cli --pipe (one connection, pipelined)

It also times CONFIG SET qsess.geoip-db with SLOWLOG (how long a swap holds Redis) and the uncached
cost of one device summary (cargo run --release -p qsess-record --example device_cost).
EOF
}

rounds=5
requests=300000
networks=1000000
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --requests) requests=${2:?--requests needs a number}; shift ;;
        --networks) networks=${2:?--networks needs a number}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "geo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

readonly CLIENTS=50 PIPELINE=16 KEYSPACE=100000 DATA_SIZE=300 IP=203.0.113.7
readonly UA='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36'

helper() { python3 bench/helper.py "$@"; }
step() { printf '\n==> %s\n' "$*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qsess-geo-bench.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "cargo build --release (qsess-module, qsess-geoip-fixtures, device_cost)"
cargo build --release -p qsess-module --message-format=json-render-diagnostics >"$tmp/cargo.json"
cdylib=$(helper cdylib <"$tmp/cargo.json")
cargo build --release -q -p qsess-tests --bin qsess-geoip-fixtures
cargo build --release -q -p qsess-record --example device_cost
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

step "generate a synthetic City database with $networks IPv4 networks"
db=$tmp/bench-City.mmdb
start_ns=$(date +%s%N)
"$target_dir/release/qsess-geoip-fixtures" --bench "$networks" "$db"
generate_ms=$(((($(date +%s%N) - start_ns)) / 1000000))
db_bytes=$(stat -c %s "$db")

step "device summary cost without the cache"
"$target_dir/release/examples/device_cost" | tee "$tmp/device_cost.txt"

port=$(helper free-port)
rcli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" \
    --loadmodule "$cdylib" &
server_pid=$!
for _ in $(seq 100); do
    [[ $(rcli PING 2>/dev/null || true) == PONG ]] && break
    sleep 0.1
done
[[ $(rcli PING 2>/dev/null || true) == PONG ]] || { echo "geo.sh: redis-server did not start" >&2; tail "$tmp/redis.log" >&2; exit 1; }

step "how long CONFIG SET qsess.geoip-db holds Redis (SLOWLOG, microseconds)"
rcli CONFIG SET slowlog-log-slower-than 0 >/dev/null
rcli SLOWLOG RESET >/dev/null
swap_us=()
for _ in 1 2 3; do
    rcli CONFIG SET qsess.geoip-db "$db" >/dev/null
    rcli CONFIG SET qsess.geoip-db "" >/dev/null
done
# redis-cli prints each SLOWLOG entry one element a line: id, time, duration (us), the arguments, client.
mapfile -t swap_us < <(rcli SLOWLOG GET 100 | python3 -c '
import sys
path, lines = sys.argv[1], [line.rstrip("\n") for line in sys.stdin]
print("\n".join(lines[i - 3] for i in range(3, len(lines) - 1)
                if lines[i] == "qsess.geoip-db" and lines[i + 1] == path))' "$db")
rcli CONFIG SET slowlog-log-slower-than 10000 >/dev/null
echo "CONFIG SET with the ${db_bytes}-byte database: ${swap_us[*]:-?} us"

data=$(helper payload "$DATA_SIZE")
results=$tmp/results.txt
: >"$results"

# The random-address requests, generated once with a fixed seed.
python3 - "$tmp/random-address.resp" "$requests" "$KEYSPACE" "$data" "$UA" <<'PY'
import random, sys
path, count, keyspace, data, ua = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = random.Random(20251125)
def resp(*words):
    out = [b"*%d\r\n" % len(words)]
    for word in words:
        b = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)
with open(path, "wb") as f:
    for i in range(count):
        n = rng.randrange(keyspace)
        ip = ".".join(str(rng.randrange(1, 224) if k == 0 else rng.randrange(256)) for k in range(4))
        f.write(resp("QSESS.SET", f"sid:{n:012d}", "DATA", data, "USER", f"user:{n:012d}", "IP", ip, "UA", ua))
PY

run() {
    local workload=$1 variant=$2 round=$3 out ops usec
    rcli FLUSHALL >/dev/null
    rcli CONFIG RESETSTAT >/dev/null
    if [[ $variant == A ]]; then rcli CONFIG SET qsess.geoip-db "" >/dev/null; else rcli CONFIG SET qsess.geoip-db "$db" >/dev/null; fi
    if [[ $workload == random-address ]]; then
        local start_ns end_ns
        start_ns=$(date +%s%N)
        out=$(rcli --pipe <"$tmp/random-address.resp")
        end_ns=$(date +%s%N)
        grep -q '^errors: 0, replies:' <<<"$out" || { echo "geo.sh: errors in redis-cli --pipe: $out" >&2; exit 1; }
        ops=$(python3 -c "print($requests * 1e9 / ($end_ns - $start_ns))")
    else
        out=$(redis-benchmark -h 127.0.0.1 -p "$port" -q --csv -c "$CLIENTS" -P "$PIPELINE" -r "$KEYSPACE" -n "$requests" \
            QSESS.SET "sid:__rand_int__" DATA "$data" USER "user:__rand_int__" IP "$IP" UA "$UA")
        ops=$(helper rps <<<"$out")
    fi
    # Time Redis spent inside QSESS.SET per call: the module's own cost, less disturbed than throughput
    # by other work on the machine.
    usec=$(rcli INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_qsess\.set:.*usec_per_call=\([0-9.]*\).*/\1/p')
    echo "$workload $variant $round $ops ${usec:-0}" >>"$results"
    printf '  %-14s round %d  %s  %10.0f ops/s  %6.2f us/call in Redis\n' "$workload" "$round" \
        "$([[ $variant == A ]] && echo 'no database  ' || echo 'with database')" "$ops" "${usec:-0}"
}

for workload in create+update every-write random-address; do
    if [[ $workload == every-write ]]; then
        rcli CONFIG SET qsess.ip-mode none >/dev/null
        rcli CONFIG SET qsess.ua-mode none >/dev/null
    else
        rcli CONFIG SET qsess.ip-mode full >/dev/null
        rcli CONFIG SET qsess.ua-mode full >/dev/null
    fi
    step "$workload: $rounds A/B rounds of $requests QSESS.SET"
    for round in $(seq "$rounds"); do
        if ((round % 2 == 1)); then order=(A B); else order=(B A); fi
        for variant in "${order[@]}"; do run "$workload" "$variant" "$round"; done
    done
done

# A check that the runs with a database did locate: the last session written has a location.
rcli CONFIG SET qsess.geoip-db "$db" >/dev/null
rcli QSESS.SET geo-check IP "$IP" >/dev/null
location=$(rcli QSESS.PEEK geo-check | python3 -c 'import sys; w=[l.rstrip("\n") for l in sys.stdin]; print(w[w.index("loc")+1] if "loc" in w else "(none)")')
errors=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_error_replies://p')

step "results"
out=bench/results/geo.md
python3 - "$results" "$out" <<EOF
import statistics, sys
from collections import defaultdict
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
runs = defaultdict(dict)
usec = defaultdict(dict)
for workload, variant, round_, ops, per_call in rows:
    runs[workload].setdefault(int(round_), {})[variant] = float(ops)
    usec[workload].setdefault(int(round_), {})[variant] = float(per_call)
lines = []
lines.append("# QSESS.SET with and without a GeoIP database")
lines.append("")
lines.append("- Command: \`bench/geo.sh --rounds $rounds --requests $requests --networks $networks\`; $(date -u '+%Y-%m-%d %H:%M UTC'), qsess commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' + uncommitted changes')")
lines.append("- Machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(redis-server --version | cut -d' ' -f1-3); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)")
lines.append("- redis-benchmark -P $PIPELINE -c $CLIENTS -r $KEYSPACE -n $requests: QSESS.SET sid:__rand_int__ DATA <$DATA_SIZE B> USER user:__rand_int__ IP $IP UA <111 B Chrome>; random-address: the same through redis-cli --pipe with a pseudo-random IPv4 address per request; FLUSHALL before every run")
lines.append("- Database: synthetic GeoLite2-City layout, $networks IPv4 + $((networks / 4)) IPv6 networks, $db_bytes bytes, generated in $generate_ms ms; $IP resolves to \"$location\"")
lines.append("- A = no database (\`qsess.geoip-db \"\"\`), B = the database; rounds alternate A B / B A; error replies during the runs: $errors")
lines.append("")
lines.append("Throughput is what the clients saw; µs/call is the time Redis spent inside QSESS.SET (INFO commandstats), which other work on the shared machine disturbs less. The cost of a lookup is the difference of the µs/call medians; its share of throughput is that difference over the time one request takes (1 / A ops/s).")
lines.append("")
lines.append("| workload | lookups | A ops/s | B ops/s | B/A median (min–max) | A µs/call | B µs/call | lookup cost | share of a request |")
lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
what = {
    "create+update": "on creation only (~25% of requests)",
    "every-write": "every request, one hot address (ip-mode none, ua-mode none)",
    "random-address": "every request, a new random address (redis-cli --pipe)",
}
workloads = ("create+update", "every-write", "random-address")
for workload in workloads:
    per_round = runs[workload]
    a = [per_round[r]["A"] for r in sorted(per_round)]
    b = [per_round[r]["B"] for r in sorted(per_round)]
    ratios = [per_round[r]["B"] / per_round[r]["A"] for r in sorted(per_round)]
    ua = statistics.median(usec[workload][r]["A"] for r in per_round)
    ub = statistics.median(usec[workload][r]["B"] for r in per_round)
    share = (ub - ua) / (1e6 / statistics.median(a))
    lines.append(f"| {workload} | {what[workload]} | {statistics.median(a):,.0f} | {statistics.median(b):,.0f} | {statistics.median(ratios):.3f} ({min(ratios):.2f}–{max(ratios):.2f}) | {ua:.2f} | {ub:.2f} | {ub - ua:+.2f} µs | {share:+.1%} |")
lines.append("")
lines.append("## Per round")
lines.append("")
lines.append("| workload | round | A ops/s | B ops/s | A µs/call | B µs/call |")
lines.append("|---|---:|---:|---:|---:|---:|")
for workload in workloads:
    for r in sorted(runs[workload]):
        lines.append(f"| {workload} | {r} | {runs[workload][r]['A']:,.0f} | {runs[workload][r]['B']:,.0f} | {usec[workload][r]['A']:.2f} | {usec[workload][r]['B']:.2f} |")
lines.append("")
lines.append("## Other costs")
lines.append("")
lines.append("- CONFIG SET qsess.geoip-db with this database (open, map, check, swap; SLOWLOG): ${swap_us[*]:-?} µs")
lines.append("- Device summary without the cache (\`cargo run --release -p qsess-record --example device_cost\`):")
lines.append("")
lines.append("\`\`\`")
lines.extend(open("$tmp/device_cost.txt").read().rstrip().splitlines())
lines.append("\`\`\`")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo
echo "written to $out"

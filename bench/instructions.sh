#!/usr/bin/env bash
# Instructions per request of QSESS.GET and of a save (QSESS.SET without USER), counted by callgrind in a
# redis-server with the given module build: the figure to compare two builds by when throughput is noisy.
#   bench/instructions.sh target/release/libqsess.so [label]
# 20,000 sessions (300-byte DATA, the benchmark's agent), redis-benchmark -c 10 -P 16 -n 20000 per command,
# touch-granularity-ms a day so no GET writes; counters are zeroed before and dumped after each command's
# run, so the count is Redis's whole work for those requests (valgrind runs SHA-256 in software, which
# adds about 3,500 instructions to every qsess command on any build).
set -euo pipefail

module=$(realpath "${1:?usage: bench/instructions.sh <libqsess.so> [label]}")
label=${2:-$(basename "$module")}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
requests=20000
work=$(mktemp -d "${TMPDIR:-/tmp}/qsess-instructions.XXXXXX")
valgrind_pid=
cleanup() {
    if [[ -n $valgrind_pid ]]; then
        kill "$valgrind_pid" 2>/dev/null || true
        wait "$valgrind_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 bench/helper.py resp-module-set "$work/sessions.resp" "$requests" 10 300
port=$(python3 bench/helper.py free-port)
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" \
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --logfile "$work/redis.log" --loadmodule "$module" touch-granularity-ms 86400000 >"$work/valgrind.log" 2>&1 &
valgrind_pid=$!
for _ in $(seq 1 150); do
    redis-cli -p "$port" PING >/dev/null 2>&1 && break
    sleep 0.2
done
redis-cli -p "$port" --pipe <"$work/sessions.resp" >/dev/null
redis-cli -p "$port" DEL 'qs:{0}:chg' >/dev/null

count() {
    local name=$1 dump instructions
    shift
    callgrind_control -z "$valgrind_pid" >/dev/null 2>&1
    redis-benchmark -p "$port" -c 10 -P 16 -n "$requests" -r "$requests" -q "$@" >/dev/null
    callgrind_control -d "$name" "$valgrind_pid" >/dev/null 2>&1
    sleep 1
    dump=$(ls -t "$work"/callgrind.*.* | head -1)
    instructions=$(callgrind_annotate "$dump" | grep -m1 'PROGRAM TOTALS' | tr -d ',' | grep -oE '[0-9]+' | head -1)
    echo "$label $name: $((instructions / requests)) instructions per request"
}

mapfile -d '' -t save < <(python3 bench/helper.py bench-command qsess_save 300 session_write.lua=- \
    session_write_minimal.lua=- session_read.lua=- byuser.lua=-)
count get QSESS.GET 'sid:__rand_int__'
count save "${save[@]}"
redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait "$valgrind_pid" 2>/dev/null || true
valgrind_pid=

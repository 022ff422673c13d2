#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Profiles mycelia-shimd (started by mycelia-node, as in run.sh) under wrk load on POST
# /api/generate and prints its hot spots. Run by hand when the benchmark says shimd is slow.
#
# Usage: bench/profile.sh [BUILD_DIR] [MODE]
#   MODE callgrind: shimd runs under valgrind --tool=callgrind (user-space instructions, exact,
#                   ~50x slower, so throughput numbers of that run mean nothing);
#   MODE perf:      perf record -e cpu-clock -g attached to the running shimd (sampled, includes
#                   kernel time, no slow-down).
#   MODE strace:    strace -c attached to the running shimd: system calls per request (slows it).
#   Default: perf if `perf stat -e instructions` works on this machine, else callgrind.
# Environment: PROFILE_DURATION (s of load, default 10), PROFILE_CONNECTIONS (default 64),
#   PROFILE_OUT (directory for the raw profile and the report; default a new /tmp directory, kept).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
BUILD_DIR=$(cd "${1:-$SRC_DIR/build}" && pwd)
MODE=${2:-}
DURATION=${PROFILE_DURATION:-10}
CONNECTIONS=${PROFILE_CONNECTIONS:-64}
MODEL=llama3.2

if [[ -z $MODE ]]; then
        if [[ $(perf stat -e instructions true 2>&1 || true) == *"not supported"* ]]; then
                MODE=callgrind
        else
                MODE=perf
        fi
fi
[[ $MODE == callgrind || $MODE == perf || $MODE == strace ]] || { echo "profile.sh: MODE is callgrind, perf or strace" >&2; exit 2; }
[[ $DURATION =~ ^[0-9]+$ ]] && (( DURATION >= 1 && DURATION <= 600 )) || { echo "profile.sh: PROFILE_DURATION 1..600" >&2; exit 2; }
command -v "$( [[ $MODE == callgrind ]] && echo valgrind || echo "$MODE")" >/dev/null || { echo "profile.sh: $MODE tool missing" >&2; exit 2; }

RUN_DIR=$(mktemp -d /tmp/mycelia-profile.XXXXXX)
OUT_DIR=${PROFILE_OUT:-$RUN_DIR}
mkdir -p "$OUT_DIR"
PIDS=()
cleanup() {
        local pid i
        trap - EXIT INT TERM
        for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
        for (( i = 0; i < 100; i++ )); do
                local alive=0
                for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
                (( alive )) || break
                sleep 0.1
        done
        for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
        wait 2>/dev/null || true
        echo "profile.sh: raw data and logs in $RUN_DIR" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "profile.sh: $*" >&2; exit 1; }

wait_line() {
        local file=$1 regex=$2 pid=$3 tries=$4 i line
        for (( i = 0; i < tries; i++ )); do
                line=$(grep -m1 -E "$regex" "$file" 2>/dev/null || true)
                [[ -n $line ]] && { echo "$line"; return 0; }
                kill -0 "$pid" 2>/dev/null || return 1
                sleep 0.1
        done
        return 1
}

ninja -C "$BUILD_DIR" >"$RUN_DIR/ninja.log" 2>&1 || die "build failed, see $RUN_DIR/ninja.log"
DOUBLE=$BUILD_DIR/tests/ollama-double/ollama-double
NODE=$BUILD_DIR/services/node/mycelia-node
SHIMD=$BUILD_DIR/services/shimd/mycelia-shimd
ROUTERD=$BUILD_DIR/services/routerd/mycelia-routerd
for b in "$DOUBLE" "$NODE" "$SHIMD" "$ROUTERD"; do [[ -x $b ]] || die "$b is not built"; done

"$DOUBLE" --listen 127.0.0.1:0 --models "$MODEL" --tokens 10 --token-delay-ms 0 \
        --num-parallel 1024 --max-queue 4096 >"$RUN_DIR/double.log" 2>&1 &
PIDS+=($!)
line=$(wait_line "$RUN_DIR/double.log" 'listening on http://' "${PIDS[0]}" 100) || die "the double did not start"
DOUBLE_URL=${line##*listening on }

mkdir -p "$RUN_DIR/libexec" "$RUN_DIR/node"
ln -s "$ROUTERD" "$RUN_DIR/libexec/"
if [[ $MODE == callgrind ]]; then
        # The launcher starts this wrapper; exec keeps the pid, so READY=1 still comes from "its" daemon.
        printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%q --dump-instr=no %q "$@"\n' \
                "$OUT_DIR/callgrind.out" "$SHIMD" >"$RUN_DIR/libexec/mycelia-shimd"
        chmod +x "$RUN_DIR/libexec/mycelia-shimd"
else
        ln -s "$SHIMD" "$RUN_DIR/libexec/"
fi
"$NODE" --name bench --api 127.0.0.1:0 --upstream "$DOUBLE_URL" --state-dir "$RUN_DIR/node" \
        --libexec-dir "$RUN_DIR/libexec" --log-level warning >"$RUN_DIR/node.log" 2>"$RUN_DIR/node.err" &
NODE_PID=$!
PIDS+=("$NODE_PID")
line=$(wait_line "$RUN_DIR/node.log" '^mycelia-node: ready api=' "$NODE_PID" 600) || die "mycelia-node not ready: $(tail -5 "$RUN_DIR/node.err")"
line=${line#*api=}
SHIM_URL=${line%% *}
SHIM_PID=
for pid in $(ps -o pid= --ppid "$NODE_PID"); do
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'mycelia-shimd' && SHIM_PID=$pid
done
[[ -n $SHIM_PID ]] || die "shimd's pid not found"

# The reports below cut long listings with head; a reader that stops early is no error.
set +o pipefail
WRK=(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency -s "$BENCH_DIR/post-generate.lua" "$SHIM_URL/api/generate")
echo "profile.sh: $MODE on mycelia-shimd pid $SHIM_PID, load: ${WRK[*]}" >&2
if [[ $MODE == perf ]]; then
        perf record -e cpu-clock -F 1999 -g -p "$SHIM_PID" -o "$OUT_DIR/perf.data" -- sleep "$DURATION" \
                >"$RUN_DIR/perf-record.log" 2>&1 &
        PERF_PID=$!
        timeout $(( DURATION + 30 )) "${WRK[@]}" >"$OUT_DIR/wrk.txt" 2>&1 || true
        wait "$PERF_PID" || true
        {
                echo "## perf, self time by object (shimd pid $SHIM_PID, ${DURATION}s of ${WRK[*]})"
                perf report -i "$OUT_DIR/perf.data" --stdio --no-children -g none --sort dso 2>/dev/null | grep -E '^ +[0-9]' | head -10
                echo
                echo "## perf, self time by symbol"
                perf report -i "$OUT_DIR/perf.data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null | grep -E '^ +[0-9]' | head -40
                echo
                echo "## perf, inclusive (children) by symbol"
                perf report -i "$OUT_DIR/perf.data" --stdio --children -g none --sort symbol 2>/dev/null | grep -E '^ +[0-9]' | head -40
        } >"$OUT_DIR/report.txt"
elif [[ $MODE == strace ]]; then
        timeout $(( DURATION + 30 )) strace -c -f -p "$SHIM_PID" -o "$OUT_DIR/strace.txt" &
        STRACE_PID=$!
        sleep 0.5
        timeout $(( DURATION + 30 )) "${WRK[@]}" >"$OUT_DIR/wrk.txt" 2>&1 || true
        sleep 0.2
        kill -INT "$STRACE_PID" 2>/dev/null || true
        wait "$STRACE_PID" || true
        requests=$(grep -m1 '^BENCH ' "$OUT_DIR/wrk.txt" | sed 's/.*requests=\([0-9]*\).*/\1/')
        {
                echo "## strace -c, shimd pid $SHIM_PID, ${DURATION}s of ${WRK[*]} ($requests requests)"
                echo "calls per request:"
                awk -v n="${requests:-0}" 'NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" && n > 0 {
                        printf "  %-14s %6.2f\n", $NF, $4 / n }' "$OUT_DIR/strace.txt" | sort -k2 -rn | head -15
                echo
                cat "$OUT_DIR/strace.txt"
        } >"$OUT_DIR/report.txt"
else
        timeout $(( DURATION + 30 )) "${WRK[@]}" >"$OUT_DIR/wrk.txt" 2>&1 || true
        # SIGTERM: shimd exits and callgrind writes its file. Stop the launcher, which stops shimd.
        kill -TERM "$NODE_PID"
        for (( i = 0; i < 300; i++ )); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
        [[ -s $OUT_DIR/callgrind.out ]] || die "no callgrind output (see $RUN_DIR/node.err)"
        {
                echo "## callgrind, self instructions by function (${DURATION}s of ${WRK[*]})"
                callgrind_annotate --inclusive=no "$OUT_DIR/callgrind.out" 2>/dev/null | sed -n '1,60p'
                echo
                echo "## callgrind, inclusive"
                callgrind_annotate --inclusive=yes "$OUT_DIR/callgrind.out" 2>/dev/null | sed -n '1,60p'
        } >"$OUT_DIR/report.txt"
fi
grep -m1 '^BENCH ' "$OUT_DIR/wrk.txt" >&2 || true
cat "$OUT_DIR/report.txt"

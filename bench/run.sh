#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Benchmark by hand (never part of meson test): the Ollama test double directly, mycelia-shimd in
# front of it, and nginx in front of it, side by side in one run. See bench/README.md.
#
# Usage: bench/run.sh [BUILD_DIR]        (default: build/ in the source tree; set up and built if needed)
# Environment: BENCH_DURATION (s per wrk run, default 10), BENCH_CONNECTIONS (default 64),
#   BENCH_STREAM_REQUESTS (default 200), BENCH_STREAM_CONCURRENCY (default 16),
#   BENCH_SLOW_REQUESTS (default 20), BENCH_KEEP=1 keeps the run directory,
#   BENCH_ONLY="direct shim nginx1 nginxauto" limits the paths measured, BENCH_OUT=FILE overrides the
#   results file.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
COMMAND_LINE="$0${*:+ $*}"
BUILD_DIR=${1:-$SRC_DIR/build}
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
STREAM_REQUESTS=${BENCH_STREAM_REQUESTS:-200}
STREAM_CONCURRENCY=${BENCH_STREAM_CONCURRENCY:-16}
SLOW_REQUESTS=${BENCH_SLOW_REQUESTS:-20}
SLOW_DELAY_MS=20
TOKENS=10
MODEL=llama3.2
DOUBLE_NUM_PARALLEL=1024
DOUBLE_MAX_QUEUE=4096
STAMP=$(date +%Y-%m-%d-%H%M%S)
OUT=${BENCH_OUT:-$BENCH_DIR/results-$STAMP.md}

for n in DURATION CONNECTIONS STREAM_REQUESTS STREAM_CONCURRENCY SLOW_REQUESTS; do
        if ! [[ ${!n} =~ ^[0-9]+$ ]] || (( ${!n} < 1 || ${!n} > 100000 )); then
                echo "run.sh: $n must be a number between 1 and 100000" >&2
                exit 2
        fi
done
for tool in wrk nginx curl python3; do
        command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed" >&2; exit 2; }
done

RUN_DIR=$(mktemp -d /tmp/mycelia-bench.XXXXXX)
PIDS=()
NODE_CHILDREN=()
OK=0

cleanup() {
        local pid i
        trap - EXIT INT TERM
        # The launcher stops its own daemons on SIGTERM; they are only killed here if it failed to.
        for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do
                kill -TERM "${PIDS[i]}" 2>/dev/null || true
        done
        for (( i = 0; i < 100; i++ )); do
                local alive=0
                for pid in "${PIDS[@]}" "${NODE_CHILDREN[@]}"; do
                        kill -0 "$pid" 2>/dev/null && alive=1
                done
                (( alive )) || break
                sleep 0.1
        done
        for pid in "${PIDS[@]}" "${NODE_CHILDREN[@]}"; do
                kill -KILL "$pid" 2>/dev/null || true
        done
        wait 2>/dev/null || true
        if (( OK )) && [[ -z ${BENCH_KEEP:-} ]]; then
                rm -rf "$RUN_DIR"
        else
                echo "run.sh: logs kept in $RUN_DIR" >&2
        fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "run.sh: $*" >&2; }
# Prints a command so that it can be pasted back into a shell.
quote() { local q; q=$(printf '%q ' "$@"); echo "${q% }"; }
die() { log "$*"; exit 1; }

# Waits (bounded) until FILE has a line matching REGEX; prints the line.
wait_line() {
        local file=$1 regex=$2 pid=$3 i line
        for (( i = 0; i < 200; i++ )); do
                line=$(grep -m1 -E "$regex" "$file" 2>/dev/null || true)
                if [[ -n $line ]]; then
                        echo "$line"
                        return 0
                fi
                kill -0 "$pid" 2>/dev/null || return 1
                sleep 0.1
        done
        return 1
}

free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
        local port=$1 i
        for (( i = 0; i < 100; i++ )); do
                (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
                sleep 0.1
        done
        return 1
}

# ---- build ----
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
        log "setting up $BUILD_DIR"
        meson setup "$BUILD_DIR" "$SRC_DIR" >"$RUN_DIR/meson-setup.log" 2>&1 || die "meson setup failed, see $RUN_DIR/meson-setup.log"
fi
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
log "building in $BUILD_DIR"
if ! ninja -C "$BUILD_DIR" >"$RUN_DIR/ninja.log" 2>&1; then
        log "ninja failed (see $RUN_DIR/ninja.log); using whatever binaries exist"
fi

DOUBLE=$BUILD_DIR/tests/ollama-double/ollama-double
NODE=$BUILD_DIR/services/node/mycelia-node
SHIMD=$BUILD_DIR/services/shimd/mycelia-shimd
ROUTERD=$BUILD_DIR/services/routerd/mycelia-routerd
STREAM=$BUILD_DIR/bench/mycelia-stream-bench
[[ -x $DOUBLE ]] || die "$DOUBLE is missing: the test double is needed"
if [[ ! -x $STREAM ]]; then
        STREAM=$RUN_DIR/mycelia-stream-bench
        cc -std=gnu11 -O2 -o "$STREAM" "$BENCH_DIR/stream-client.c" || die "cannot build stream-client.c"
fi

TARGETS=(direct shim nginx1 nginxauto)
[[ -n ${BENCH_ONLY:-} ]] && read -r -a TARGETS <<<"$BENCH_ONLY"
declare -A URL PIDOF_TARGET LABEL
NGINX_AUTO_WORKERS=$(nproc)
LABEL[direct]="direct (ollama-double)"
LABEL[shim]="mycelia-shimd"
LABEL[nginx1]="nginx, 1 worker"
LABEL[nginxauto]="nginx, auto ($NGINX_AUTO_WORKERS workers)"

want() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

# ---- the Ollama test double ----
DOUBLE_CMD=("$DOUBLE" --listen 127.0.0.1:0 --models "$MODEL" --tokens "$TOKENS" --token-delay-ms 0
            --num-parallel "$DOUBLE_NUM_PARALLEL" --max-queue "$DOUBLE_MAX_QUEUE")
"${DOUBLE_CMD[@]}" >"$RUN_DIR/double.log" 2>&1 &
DOUBLE_PID=$!
PIDS+=("$DOUBLE_PID")
line=$(wait_line "$RUN_DIR/double.log" 'listening on http://' "$DOUBLE_PID") || die "the double did not start: $(tail -5 "$RUN_DIR/double.log")"
DOUBLE_URL=${line##*listening on }
DOUBLE_ADDR=${DOUBLE_URL#http://}
URL[direct]=$DOUBLE_URL
PIDOF_TARGET[direct]=$DOUBLE_PID

# ---- mycelia-shimd, as users run it: mycelia-node with its private bus and routerd ----
NODE_CMD=()
if want shim; then
        if [[ -x $NODE && -x $SHIMD && -x $ROUTERD ]]; then
                mkdir -p "$RUN_DIR/libexec" "$RUN_DIR/node"
                ln -s "$SHIMD" "$ROUTERD" "$RUN_DIR/libexec/"
                NODE_CMD=("$NODE" --name bench --api 127.0.0.1:0 --upstream "$DOUBLE_URL"
                          --state-dir "$RUN_DIR/node" --libexec-dir "$RUN_DIR/libexec" --log-level warning)
                "${NODE_CMD[@]}" >"$RUN_DIR/node.log" 2>"$RUN_DIR/node.err" &
                NODE_PID=$!
                PIDS+=("$NODE_PID")
                if line=$(wait_line "$RUN_DIR/node.log" '^mycelia-node: ready api=' "$NODE_PID"); then
                        line=${line#*api=}
                        URL[shim]=${line%% *}
                        for pid in $(ps -o pid= --ppid "$NODE_PID"); do
                                NODE_CHILDREN+=("$pid")
                                [[ $(cat "/proc/$pid/comm" 2>/dev/null) == mycelia-shimd ]] && PIDOF_TARGET[shim]=$pid
                        done
                        [[ -n ${PIDOF_TARGET[shim]:-} ]] || log "mycelia-shimd's pid not found: no CPU figures for it"
                else
                        log "mycelia-node did not become ready: $(tail -5 "$RUN_DIR/node.err")"
                fi
        else
                log "mycelia-node/shimd/routerd not built in $BUILD_DIR: no shim row"
        fi
fi

# ---- nginx, one worker and one per core ----
NGINX_CMDS=()
start_nginx() {
        local name=$1 workers=$2 port dir
        port=$(free_port)
        dir=$RUN_DIR/$name
        mkdir -p "$dir"
        sed -e "s|@WORKERS@|$workers|g" -e "s|@RUNDIR@|$dir|g" -e "s|@UPSTREAM@|$DOUBLE_ADDR|g" \
            -e "s|@PORT@|$port|g" -e "s|@USER_LINE@|$( (( EUID == 0 )) && echo 'user root;')|" \
            "$BENCH_DIR/nginx.conf.in" >"$dir/nginx.conf"
        local cmd=(nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" -g 'daemon off;')
        NGINX_CMDS+=("$(quote "${cmd[@]}")")
        "${cmd[@]}" >"$dir/stdout.log" 2>&1 &
        local pid=$!
        PIDS+=("$pid")
        wait_port "$port" || die "nginx ($name) did not start: $(tail -5 "$dir/nginx-error.log" "$dir/stdout.log")"
        URL[$name]=http://127.0.0.1:$port
        PIDOF_TARGET[$name]=$pid
}
want nginx1 && start_nginx nginx1 1
want nginxauto && start_nginx nginxauto auto

# Only paths that came up are measured.
ACTIVE=()
for t in "${TARGETS[@]}"; do
        [[ -n ${URL[$t]:-} ]] && ACTIVE+=("$t")
done

# ---- sanity: every path answers both requests before anything is timed ----
for t in "${ACTIVE[@]}"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${URL[$t]}/api/version") || true
        [[ $code == 200 ]] || die "${LABEL[$t]} answered $code to GET /api/version"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' \
               -d "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"stream\":false}" "${URL[$t]}/api/generate") || true
        [[ $code == 200 ]] || die "${LABEL[$t]} answered $code to POST /api/generate"
done

CLK_TCK=$(getconf CLK_TCK)
# CPU time (clock ticks) of a path's own processes: the double for direct, the proxy otherwise
# (nginx: master and workers).
cpu_ticks() {
        local t=$1 pid total=0 pids
        [[ -n ${PIDOF_TARGET[$t]:-} ]] || { echo -1; return; }
        pids="${PIDOF_TARGET[$t]}"
        [[ $t == nginx* ]] && pids+=" $(ps -o pid= --ppid "${PIDOF_TARGET[$t]}" | tr '\n' ' ')"
        for pid in $pids; do
                local stat
                stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
                stat=${stat##*) }
                read -r -a f <<<"$stat"
                total=$(( total + f[11] + f[12] ))
        done
        echo "$total"
}

RESULTS=$RUN_DIR/results.txt
: >"$RESULTS"
COMMANDS=$RUN_DIR/commands.log
: >"$COMMANDS"

record() { echo "$1 $2 $3" >>"$RESULTS"; }

# wrk_run TARGET TEST CONNECTIONS SCRIPT PATH [SECONDS]
wrk_run() {
        local t=$1 test=$2 conns=$3 script=$4 path=$5 secs=${6:-$DURATION} before after out line
        local cmd=(wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$script" "${URL[$t]}$path")
        quote "${cmd[@]}" >>"$COMMANDS"
        out=$RUN_DIR/wrk-$t-$test.txt
        before=$(cpu_ticks "$t")
        timeout $(( secs + 30 )) "${cmd[@]}" >"$out" 2>&1 || true
        after=$(cpu_ticks "$t")
        line=$(grep -m1 '^BENCH ' "$out" || true)
        [[ -n $line ]] || { log "wrk gave no result for $t $test: $(tail -3 "$out")"; return 0; }
        (( before >= 0 )) && line+=" cpu_ticks=$(( after - before ))"
        record "$t" "$test" "${line#BENCH }"
}

# stream_run TARGET TEST REQUESTS CONCURRENCY
stream_run() {
        local t=$1 test=$2 n=$3 k=$4 out line
        local cmd=("$STREAM" --url "${URL[$t]}" --model "$MODEL" --requests "$n" --concurrency "$k" --warmup 5)
        quote "${cmd[@]}" >>"$COMMANDS"
        out=$RUN_DIR/stream-$t-$test.txt
        timeout 300 "${cmd[@]}" >"$out" 2>&1 || true
        line=$(grep -m1 '^BENCH ' "$out" || true)
        [[ -n $line ]] || { log "stream client gave no result for $t $test: $(tail -3 "$out")"; return 0; }
        record "$t" "$test" "${line#BENCH }"
}

set_token_delay() {
        curl -s -f --max-time 5 -o /dev/null -H 'Content-Type: application/json' \
             -d "{\"token_delay_ms\":$1}" "$DOUBLE_URL/__double/faults" || die "cannot set the double's token delay"
}

log "command: $COMMAND_LINE"
log "measuring: ${ACTIVE[*]} (about $(( ${#ACTIVE[@]} * (4 * DURATION + 2 + 10) )) s)"
# Fixed order: each test runs on every path back to back, so they see the same machine state.
for t in "${ACTIVE[@]}"; do
        wrk_run "$t" warmup "$CONNECTIONS" "$BENCH_DIR/post-generate.lua" /api/generate 2
done
for t in "${ACTIVE[@]}"; do wrk_run "$t" version-c$CONNECTIONS "$CONNECTIONS" "$BENCH_DIR/report.lua" /api/version; done
for t in "${ACTIVE[@]}"; do wrk_run "$t" generate-c$CONNECTIONS "$CONNECTIONS" "$BENCH_DIR/post-generate.lua" /api/generate; done
for t in "${ACTIVE[@]}"; do wrk_run "$t" version-c1 1 "$BENCH_DIR/report.lua" /api/version; done
for t in "${ACTIVE[@]}"; do wrk_run "$t" generate-c1 1 "$BENCH_DIR/post-generate.lua" /api/generate; done
for t in "${ACTIVE[@]}"; do stream_run "$t" stream0-k1 "$STREAM_REQUESTS" 1; done
for t in "${ACTIVE[@]}"; do stream_run "$t" stream0-k$STREAM_CONCURRENCY $(( STREAM_REQUESTS * 4 )) "$STREAM_CONCURRENCY"; done
set_token_delay "$SLOW_DELAY_MS"
for t in "${ACTIVE[@]}"; do stream_run "$t" stream$SLOW_DELAY_MS-k1 "$SLOW_REQUESTS" 1; done
for t in "${ACTIVE[@]}"; do stream_run "$t" stream$SLOW_DELAY_MS-k$STREAM_CONCURRENCY $(( SLOW_REQUESTS * 4 )) "$STREAM_CONCURRENCY"; done
set_token_delay 0
DOUBLE_STATS=$(curl -s --max-time 5 "$DOUBLE_URL/__double/stats" || true)

# ---- report ----
{
        echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "nproc=$(nproc)"
        echo "cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
        echo "kernel=$(uname -r)"
        echo "commit=$(git -C "$SRC_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$SRC_DIR" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "command=$COMMAND_LINE"
        echo "build_dir=$BUILD_DIR"
        echo "buildtype=$(meson introspect --buildoptions "$BUILD_DIR" 2>/dev/null | python3 -c 'import json,sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"), "?"))' 2>/dev/null || echo '?')"
        echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
        echo "wrk=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
        echo "duration=$DURATION"
        echo "connections=$CONNECTIONS"
        echo "stream_concurrency=$STREAM_CONCURRENCY"
        echo "slow_delay_ms=$SLOW_DELAY_MS"
        echo "tokens=$TOKENS"
        echo "clk_tck=$CLK_TCK"
        echo "double_cmd=$(quote "${DOUBLE_CMD[@]}")"
        (( ${#NODE_CMD[@]} )) && echo "node_cmd=$(quote "${NODE_CMD[@]}")"
        for c in "${NGINX_CMDS[@]}"; do echo "nginx_cmd=$c"; done
        echo "double_stats=$DOUBLE_STATS"
        for t in "${ACTIVE[@]}"; do echo "label.$t=${LABEL[$t]}"; done
        echo "targets=${ACTIVE[*]}"
} >"$RUN_DIR/meta.txt"

python3 "$BENCH_DIR/report.py" "$RUN_DIR/meta.txt" "$RESULTS" "$COMMANDS" >"$OUT"
cat "$OUT"
log "written to $OUT"
OK=1

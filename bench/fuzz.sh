#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs every libFuzzer harness of tests/fuzz for SECONDS each (default 60), from scratch copies
# of the committed corpora, and prints one table row per harness: runs, runs/s, coverage (cov:
# of libFuzzer's last line), features (ft:), corpus size at the end, crashes. For RESULTS.md;
# tools/fuzz is the CI step. Crash inputs are kept in the scratch directory it names.
#
#   bench/fuzz.sh [SECONDS]
set -eu
cd "$(dirname "$0")/.."
each=${1:-60}
builddir=${MYCELIA_FUZZ_BUILD_DIR:-build-fuzz}
MYCELIA_FUZZ_BUILD_DIR=$builddir tools/fuzz --build-only

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mycelia-fuzz-bench.XXXXXX")
echo "bench/fuzz.sh: ${each}s per harness; scratch in $scratch ($(nproc) CPUs, one harness at a time)"
echo
printf '| %-22s | %10s | %8s | %6s | %6s | %7s | %7s |\n' harness runs runs/s cov ft corpus crashes
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ------------------------ ------------ ---------- -------- -------- --------- ---------
crashed=0
for f in tests/fuzz/fuzz-*.c; do
        h=$(basename "$f" .c)
        max_len=$(awk -v n="$h" '$1 == n { print $2; found = 1 } END { if (!found) print 4096 }' tests/fuzz/max-len)
        mkdir -p "$scratch/$h/corpus" "$scratch/$h/crashes"
        cp tests/fuzz/corpus/"$h"/* "$scratch/$h/corpus/" 2>/dev/null || true
        # Keep going after a crash, so that one harness's bug does not hide the others' numbers.
        "$builddir/tests/fuzz/$h" "$scratch/$h/corpus" -max_total_time="$each" -max_len="$max_len" \
                -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -fork=1 -ignore_crashes=1 \
                -ignore_timeouts=1 -ignore_ooms=1 \
                -artifact_prefix="$scratch/$h/crashes/" >"$scratch/$h/log" 2>&1 || true
        # -fork=1 prints per-job stats; the last "#N ... cov: C ft: F corp: K" line has the totals.
        last=$(grep -E '^#[0-9]+' "$scratch/$h/log" | tail -n 1)
        runs=$(echo "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
        cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
        ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
        corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
        crashes=$(find "$scratch/$h/crashes" -type f | wc -l)
        [ "$crashes" -eq 0 ] || crashed=1
        printf '| %-22s | %10s | %8s | %6s | %6s | %7s | %7s |\n' "$h" "${runs:-?}" \
                "$(( ${runs:-0} / each ))" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
done
echo
if [ "$crashed" -ne 0 ]; then
        echo "bench/fuzz.sh: crashes found: $scratch/*/crashes (add each, once fixed, to tests/fuzz/corpus/<harness>/)"
        exit 1
fi
rm -rf "$scratch"

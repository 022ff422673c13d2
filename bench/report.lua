-- SPDX-License-Identifier: LGPL-2.1-or-later
-- wrk done() hook shared by the bench scripts: prints one machine-readable line that run.sh
-- parses (latencies in microseconds), so no one has to parse wrk's human units.

function done(summary, latency, requests)
        local secs = summary.duration / 1e6
        local e = summary.errors
        io.write(string.format(
                "BENCH requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
                "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
                summary.requests, secs, summary.requests / secs,
                latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
                e.connect, e.read, e.write, e.status, e.timeout))
end

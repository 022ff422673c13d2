/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The times myceliactl takes on its command line (audit --since), as journalctl takes them: a
 * local date and time, a time today, now/today/yesterday, @EPOCH, or a span back from now ("-1h",
 * "10min ago"). Pure but for the local time zone (mktime()). */
#pragma once

#include "macro.h"

/* *ret: microseconds since the epoch. now: the same, the present. -EINVAL for anything else. */
int ctl_time_parse(const char *s, usec_t now, usec_t *ret);

/* A span: "1h", "30min", "1h 30min", "2d", "90s", "1.5h" is not one (whole numbers only). Units:
 * us, ms, s/sec/second(s), m/min/minute(s), h/hour(s), d/day(s), w/week(s). */
int ctl_time_span_parse(const char *s, usec_t *ret);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Clock readings in microseconds. Pure cores never call these: they take time as an argument,
 * so tests can drive them with a fake clock. */
#include <sys/time.h>
#include <time.h>

#include "macro.h"

static usec_t timespec_to_usec(const struct timespec *ts) {
        return (usec_t) ts->tv_sec * USEC_PER_SEC + (usec_t) ts->tv_nsec / NSEC_PER_USEC;
}

usec_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return timespec_to_usec(&ts);
}

usec_t now_realtime_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return timespec_to_usec(&ts);
}

struct timeval usec_to_timeval(usec_t u) {
        return (struct timeval) { .tv_sec = (time_t) (u / USEC_PER_SEC), .tv_usec = (suseconds_t) (u % USEC_PER_SEC) };
}

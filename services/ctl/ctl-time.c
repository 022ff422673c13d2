/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parses the --since of myceliactl audit: the forms journalctl's --since takes that people type
 * (docs/audit.md lists them), without the rest of systemd's calendar syntax. */
#include <ctype.h>
#include <stdio.h>
#include <time.h>

#include "ctl-time.h"

int ctl_time_span_parse(const char *s, usec_t *ret) {
        static const struct {
                const char *name;
                usec_t mult;
        } units[] = {
                { "us", 1 },
                { "ms", USEC_PER_MSEC },
                { "seconds", USEC_PER_SEC }, { "second", USEC_PER_SEC }, { "sec", USEC_PER_SEC }, { "s", USEC_PER_SEC },
                { "minutes", 60 * USEC_PER_SEC }, { "minute", 60 * USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },
                { "hours", 3600 * USEC_PER_SEC }, { "hour", 3600 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC },
                { "days", 86400 * USEC_PER_SEC }, { "day", 86400 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC },
                { "weeks", 7 * 86400 * USEC_PER_SEC }, { "week", 7 * 86400 * USEC_PER_SEC },
                { "w", 7 * 86400 * USEC_PER_SEC },
        };
        const char *p = s;
        usec_t total = 0;
        bool any = false;

        if (!s)
                return -EINVAL;
        for (;;) {
                unsigned long long n = 0;
                size_t k, best = 0;
                usec_t mult = 0;

                while (*p == ' ')
                        p++;
                if (*p == '\0')
                        break;
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                for (; isdigit((unsigned char) *p); p++) {
                        if (n > (UINT64_MAX - 9) / 10)
                                return -ERANGE;
                        n = n * 10 + (unsigned long long) (*p - '0');
                }
                while (*p == ' ')
                        p++;
                /* The longest unit name that the text starts with, ending at a space, a digit
                 * or the end. */
                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        k = strlen(units[i].name);
                        if (strneq(p, units[i].name, k) && (p[k] == '\0' || p[k] == ' ' || isdigit((unsigned char) p[k])) &&
                            k > best) {
                                best = k;
                                mult = units[i].mult;
                        }
                }
                if (best == 0)
                        return -EINVAL;
                p += best;
                if (n > (UINT64_MAX - total) / mult)
                        return -ERANGE;
                total += (usec_t) n * mult;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *ret = total;
        return 0;
}

static usec_t local_midnight(usec_t now, int days_back) {
        time_t t = (time_t) (now / USEC_PER_SEC);
        struct tm tm;

        (void) localtime_r(&t, &tm);
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_mday -= days_back;
        tm.tm_isdst = -1;
        return (usec_t) mktime(&tm) * USEC_PER_SEC;
}

/* "YYYY-MM-DD[( |T)HH:MM[:SS]]" or "HH:MM[:SS]" (today), local time. */
static int parse_calendar(const char *s, usec_t now, usec_t *ret) {
        int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, n = 0, k;
        time_t t = (time_t) (now / USEC_PER_SEC), r;
        struct tm tm;

        (void) localtime_r(&t, &tm);
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10) {
                s += n;
                if (*s == '\0')
                        goto done;
                if (*s != ' ' && *s != 'T')
                        return -EINVAL;
                s++;
        } else {
                y = tm.tm_year + 1900;
                mo = tm.tm_mon + 1;
                d = tm.tm_mday;
        }
        n = 0;
        k = sscanf(s, "%2d:%2d%n:%2d%n", &h, &mi, &n, &sec, &n);
        if (k < 2 || s[n] != '\0' || (n != 5 && n != 8))
                return -EINVAL;
done:
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
                return -EINVAL;
        tm = (struct tm) { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                           .tm_sec = sec, .tm_isdst = -1 };
        r = mktime(&tm);
        /* mktime() normalises 31 February to 3 March: refuse what it had to move. */
        if (r == (time_t) -1 || tm.tm_mday != d || tm.tm_mon != mo - 1)
                return -EINVAL;
        *ret = (usec_t) r * USEC_PER_SEC;
        return 0;
}

int ctl_time_parse(const char *s, usec_t now, usec_t *ret) {
        _cleanup_free_ char *copy = NULL;
        usec_t span;
        size_t n;
        int r;

        if (isempty(s))
                return -EINVAL;
        if (streq(s, "now")) {
                *ret = now;
                return 0;
        }
        if (streq(s, "today") || streq(s, "yesterday")) {
                *ret = local_midnight(now, streq(s, "yesterday"));
                return 0;
        }
        if (s[0] == '@') {
                unsigned long long sec;
                char *end;

                if (!isdigit((unsigned char) s[1]))
                        return -EINVAL;
                errno = 0;
                sec = strtoull(s + 1, &end, 10);
                if (errno != 0 || *end != '\0' || sec > UINT64_MAX / USEC_PER_SEC)
                        return -EINVAL;
                *ret = (usec_t) sec * USEC_PER_SEC;
                return 0;
        }
        n = strlen(s);
        if (s[0] == '-' || (n > 4 && streq(s + n - 4, " ago"))) {
                copy = strndup(s[0] == '-' ? s + 1 : s, s[0] == '-' ? n - 1 : n - 4);
                if (!copy)
                        return -ENOMEM;
                r = ctl_time_span_parse(copy, &span);
                if (r < 0)
                        return r;
                *ret = span > now ? 0 : now - span;
                return 0;
        }
        return parse_calendar(s, now, ret);
}

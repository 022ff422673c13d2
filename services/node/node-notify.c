/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parser for sd_notify datagrams (READY=1, STATUS=, WATCHDOG=1, STOPPING=1 and Mycelia's
 * X_MYCELIA_API=/X_MYCELIA_MESH=). Anything a daemon sends is untrusted input: bounded, no crash. */
#include <stdio.h>

#include "node-notify.h"

static bool char_is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool notify_address_valid(const char *s) {
        const char *colon, *host_end;
        unsigned long port = 0;
        size_t len;

        if (isempty(s))
                return false;
        len = strlen(s);
        if (len >= NOTIFY_ADDRESS_MAX)
                return false;

        if (s[0] == '[') {
                host_end = strchr(s, ']');
                if (!host_end || host_end == s + 1 || host_end[1] != ':')
                        return false;
                /* Hex digits, ':' and '.', and a "%scope" suffix. */
                for (const char *p = s + 1; p < host_end; p++)
                        if (!char_is_alnum(*p) && *p != ':' && *p != '.' && *p != '%')
                                return false;
                colon = host_end + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || colon == s)
                        return false;
                /* An IPv4 address or a host name. */
                for (const char *p = s; p < colon; p++)
                        if (!char_is_alnum(*p) && *p != '.' && *p != '-' && *p != '_')
                                return false;
        }

        /* 1..5 digits, 1..65535. */
        if (colon[1] == '\0' || strlen(colon + 1) > 5)
                return false;
        for (const char *p = colon + 1; *p; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                port = port * 10 + (unsigned long) (*p - '0');
        }
        return port >= 1 && port <= 65535;
}

static bool value_is(const char *value, size_t value_len, const char *want) {
        return value_len == strlen(want) && memcmp(value, want, value_len) == 0;
}

static bool copy_address(char *dst, const char *value, size_t value_len) {
        char buf[NOTIFY_ADDRESS_MAX];

        if (value_len >= sizeof(buf))
                return false;
        memcpy(buf, value, value_len);
        buf[value_len] = '\0';
        if (!notify_address_valid(buf))
                return false;
        memcpy(dst, buf, value_len + 1);
        return true;
}

static void copy_status(char *dst, const char *value, size_t value_len) {
        size_t n = MIN(value_len, (size_t) NOTIFY_STATUS_MAX - 1);

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) value[i];

                /* Keep log lines one line each; UTF-8 bytes (>= 0x80) pass. */
                dst[i] = c < 0x20 || c == 0x7f ? '?' : (char) c;
        }
        dst[n] = '\0';
}

int notify_message_parse(const char *buf, size_t len, NotifyMessage *ret) {
        NotifyMessage m = {};
        const char *p = buf, *end = buf + len;

        if (len > NOTIFY_MESSAGE_MAX)
                return -EMSGSIZE;
        if (len > 0 && memchr(buf, '\0', len))
                return -EBADMSG;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                const char *line_end = nl ?: end;
                const char *eq = memchr(p, '=', (size_t) (line_end - p));
                size_t key_len, value_len;
                const char *value;

                if (line_end == p) {
                        /* Empty line: systemd tolerates them, so do we. */
                        p = line_end + 1;
                        continue;
                }
                if (!eq) {
                        m.n_ignored++;
                        p = nl ? nl + 1 : end;
                        continue;
                }
                key_len = (size_t) (eq - p);
                value = eq + 1;
                value_len = (size_t) (line_end - value);

#define KEY_IS(k) (key_len == strlen(k) && memcmp(p, (k), key_len) == 0)
                if (KEY_IS("READY") && value_is(value, value_len, "1"))
                        m.ready = true;
                else if (KEY_IS("WATCHDOG") && value_is(value, value_len, "1"))
                        m.watchdog = true;
                else if (KEY_IS("STOPPING") && value_is(value, value_len, "1"))
                        m.stopping = true;
                else if (KEY_IS("STATUS")) {
                        copy_status(m.status, value, value_len);
                        m.has_status = true;
                } else if (KEY_IS("X_MYCELIA_API") && copy_address(m.api, value, value_len))
                        m.has_api = true;
                else if (KEY_IS("X_MYCELIA_MESH") && copy_address(m.mesh, value, value_len))
                        m.has_mesh = true;
                else
                        m.n_ignored++;
#undef KEY_IS

                p = nl ? nl + 1 : end;
        }

        *ret = m;
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the base URL parser (common/http-url.c) that takes --upstream-url and peers' addresses
 * from gossip. Input: the URL. */
#include "fuzz.h"
#include "http-url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        HttpBaseUrl u;
        char *url;

        url = fuzz_strndup(data, size);
        if (!url)
                return 0;
        if (http_base_url_parse(url, &u) >= 0) {
                fuzz_check(memchr(u.host, '\0', sizeof(u.host)));
                fuzz_check(memchr(u.hostport, '\0', sizeof(u.hostport)));
                fuzz_check(memchr(u.prefix, '\0', sizeof(u.prefix)));
                fuzz_check(u.host[0] != '\0');
        }
        free(url);
        return 0;
}

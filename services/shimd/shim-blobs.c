/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Digest forms and the blobs of a create body (shim-blobs.h): what the shim checks before it
 * asks shardd or this node's Ollama about a blob. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "shim-blobs.h"

bool shim_digest_valid(const char *s) {
        return s && strncmp(s, "sha256", 6) == 0 && (s[6] == ':' || s[6] == '-') && strlen(s + 7) == 64 &&
               strspn(s + 7, "0123456789abcdefABCDEF") == 64;
}

/* Adds the digests of one map to ret, each once. */
static int create_blobs_add(json_object *map, ShimCreateBlobs *ret) {
        if (!json_object_is_type(map, json_type_object))
                return 0;
        json_object_object_foreach(map, name, value) {
                char digest[SHIM_DIGEST_LEN + 1];
                const char *s = json_object_get_string(value);
                bool seen = false;

                (void) name;
                if (!json_object_is_type(value, json_type_string) || !shim_digest_valid(s))
                        continue;
                memcpy(digest, "sha256:", 7);
                for (size_t i = 7; i <= SHIM_DIGEST_LEN; i++)
                        digest[i] = (char) tolower((unsigned char) s[i]);
                for (size_t i = 0; !seen && i < ret->n; i++)
                        seen = streq(ret->digest[i], digest);
                if (seen)
                        continue;
                if (ret->n >= SHIM_CREATE_BLOBS_MAX)
                        return -E2BIG;
                memcpy(ret->digest[ret->n++], digest, sizeof(digest));
        }
        return 0;
}

int shim_create_blobs(json_object *body, ShimCreateBlobs *ret) {
        static const char *const maps[] = { "files", "adapters" };
        ShimCreateBlobs blobs = {};
        int r;

        for (size_t i = 0; json_object_is_type(body, json_type_object) && i < ELEMENTSOF(maps); i++) {
                json_object_object_foreach(body, key, value) {
                        if (!strcaseeq(key, maps[i]))
                                continue;
                        r = create_blobs_add(value, &blobs);
                        if (r < 0)
                                return r;
                }
        }
        *ret = blobs;
        return 0;
}

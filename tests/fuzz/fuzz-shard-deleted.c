/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the list of deleted collections read back from STATE_DIR (services/shardd/
 * shard-deleted.c): parsed, formatted and parsed again to the same entries. Input: the file. */
#include "fuzz.h"
#include "shard-deleted.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ShardDeletedList l = {}, again = {};
        size_t text_size;
        char *text = NULL;

        if (shard_deleted_parse(&l, (const char *) data, size) < 0)
                goto finish;
        fuzz_check(l.n <= SHARD_DELETED_MAX);
        if (shard_deleted_format(&l, &text, &text_size) < 0)
                goto finish;
        fuzz_check(shard_deleted_parse(&again, text, text_size) == 0);
        fuzz_check(again.n == l.n);
        for (size_t i = 0; i < l.n; i++)
                fuzz_check(shard_deleted_contains(&again, l.v[i].name, l.v[i].created_ms));

finish:
        free(text);
        shard_deleted_done(&again);
        shard_deleted_done(&l);
        return 0;
}

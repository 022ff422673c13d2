/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the API's tokens file (services/shimd/shim-tokens.c), which anyone in group mycelia's
 * editor of choice may have written: the whole input is the file. Every token taken must have a
 * valid name and survive api_token_line_format() and a second parse unchanged. The first line is
 * also given to the Bearer header parser, the listener address check and the scope of a target. */
#include "fuzz.h"
#include "api-tokens.h"
#include "shim-request.h"

static void check_round_trip(const ApiToken *t) {
        _cleanup_(api_tokens_freep) ApiTokens *again = NULL;
        _cleanup_free_ char *line = NULL;

        fuzz_check(api_token_name_valid(t->name));
        if (api_token_line_format(t->name, t->hash, t->models, t->n_models, &line) < 0)
                return;         /* out of memory */
        fuzz_check(!strchr(line, '\n'));
        if (api_tokens_parse(line, strlen(line), NULL, NULL, &again) < 0)
                return;
        fuzz_check(again->n == 1);
        fuzz_check(streq(again->tokens[0].name, t->name));
        fuzz_check(memcmp(again->tokens[0].hash, t->hash, API_TOKEN_HASH_SIZE) == 0);
        fuzz_check(again->tokens[0].n_models == t->n_models);
        for (size_t i = 0; i < t->n_models; i++)
                fuzz_check(streq(again->tokens[0].models[i], t->models[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(api_tokens_freep) ApiTokens *t = NULL;
        _cleanup_free_ char *first = NULL;
        const uint8_t *rest = data, *line;
        size_t rest_size = size, line_size, len;
        const char *secret;

        if (api_tokens_parse((const char *) data, size, NULL, NULL, &t) >= 0) {
                for (size_t i = 0; i < t->n; i++) {
                        check_round_trip(&t->tokens[i]);
                        /* Names and hashes are unique in what was taken. */
                        fuzz_check(api_tokens_find_name(t, t->tokens[i].name) == &t->tokens[i]);
                        fuzz_check(api_tokens_find(t, t->tokens[i].hash) == &t->tokens[i]);
                }
        }

        line = fuzz_next_line(&rest, &rest_size, &line_size);
        first = fuzz_strndup(line, line_size);
        if (!first)
                return 0;
        if (api_token_bearer_parse(first, &secret, &len) >= 0)
                fuzz_check(len > 0 && secret >= first && secret + len <= first + strlen(first));
        (void) api_address_is_loopback(first);
        (void) shim_token_scope("POST", first);
        (void) shim_token_scope("GET", first);
        return 0;
}

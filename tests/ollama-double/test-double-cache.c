/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of the Ollama test double's prompt cache (slots remembering evaluated prompts, as in
 * Ollama's runner) and of the prompt rendering that makes a conversation's turns share a prefix. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "double-cache.h"
#include "double-text.h"
#include "unit-test.h"

#define MODEL "llama3.2:latest"

static DoubleCache *cache_new(unsigned slots, size_t max_prefix, size_t max_bytes, DoubleCachePolicy policy) {
        DoubleCache *c = NULL;

        ck_assert_int_eq(double_cache_new(&(DoubleCacheConfig) {
                                .slots = slots,
                                .max_prefix = max_prefix,
                                .max_bytes = max_bytes,
                                .max_models = 4,
                                .policy = policy,
                         }, &c), 0);
        return c;
}

/* One whole request: acquire, evaluate, answer, release. */
static DoubleCacheLease cache_turn(DoubleCache *c, const char *model, const char *prompt, const char *answer) {
        DoubleCacheLease l;

        ck_assert_int_eq(double_cache_acquire(c, model, prompt, strlen(prompt), &l), 0);
        ck_assert_int_eq(double_cache_release(c, &l, true, answer, strlen(answer)), 0);
        return l;
}

static void assert_slot(DoubleCache *c, const char *model, unsigned slot, const char *want, bool busy) {
        const char *bytes = NULL;
        size_t len = 0;
        bool b = !busy;

        ck_assert_int_eq(double_cache_peek(c, model, slot, &bytes, &len, &b), 0);
        ck_assert_uint_eq(len, strlen(want));
        if (len > 0)
                ck_assert_int_eq(memcmp(bytes, want, len), 0);
        ck_assert(b == busy);
}

START_TEST(test_config_bounds) {
        DoubleCache *c = NULL;
        DoubleCacheConfig ok = {
                .slots = 1, .max_prefix = 16, .max_bytes = 16, .max_models = 1, .policy = DOUBLE_CACHE_LONGEST,
        }, bad;

        ck_assert_int_eq(double_cache_new(&ok, &c), 0);
        c = double_cache_free(c);
        ck_assert_ptr_null(c);
        ck_assert_ptr_null(double_cache_free(NULL));

        bad = ok, bad.slots = 0;
        ck_assert_int_eq(double_cache_new(&bad, &c), -EINVAL);
        bad = ok, bad.slots = DOUBLE_CACHE_MAX_SLOTS + 1;
        ck_assert_int_eq(double_cache_new(&bad, &c), -EINVAL);
        bad = ok, bad.max_prefix = 0;
        ck_assert_int_eq(double_cache_new(&bad, &c), -EINVAL);
        bad = ok, bad.max_prefix = DOUBLE_CACHE_MAX_PREFIX + 1, bad.max_bytes = DOUBLE_CACHE_MAX_BYTES;
        ck_assert_int_eq(double_cache_new(&bad, &c), -EINVAL);
        bad = ok, bad.max_bytes = 15;
        ck_assert_int_eq(double_cache_new(&bad, &c), -EINVAL);
        bad = ok, bad.max_models = 0;
        ck_assert_int_eq(double_cache_new(&bad, &c), -EINVAL);
        bad = ok, bad.policy = 7;
        ck_assert_int_eq(double_cache_new(&bad, &c), -EINVAL);
        ck_assert_ptr_null(c);

        bad = ok, bad.slots = DOUBLE_CACHE_MAX_SLOTS, bad.max_prefix = DOUBLE_CACHE_MAX_PREFIX,
        bad.max_bytes = DOUBLE_CACHE_MAX_BYTES;
        ck_assert_int_eq(double_cache_new(&bad, &c), 0);
        c = double_cache_free(c);
}
END_TEST

START_TEST(test_first_request) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(2, 1024, 4096, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease l;

        ck_assert_int_eq(double_cache_acquire(c, MODEL, "", 0, &l), -EINVAL);
        ck_assert_int_eq(double_cache_peek(c, MODEL, 0, NULL, NULL, NULL), -ENOENT);

        /* an empty cache: everything is prefill, and the first slot is taken */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "hello", 5, &l), 0);
        ck_assert_uint_eq(l.slot, 0);
        ck_assert_uint_eq(l.hit_bytes, 0);
        ck_assert_uint_eq(l.prefill_bytes, 5);
        ck_assert_uint_eq(double_cache_busy(c), 1);
        /* busy, it holds its prompt */
        assert_slot(c, MODEL, 0, "hello", true);
        assert_slot(c, MODEL, 1, "", false);
        ck_assert_int_eq(double_cache_peek(c, MODEL, 2, NULL, NULL, NULL), -EINVAL);

        /* released: the prompt and what was generated, as the runner's slot keeps them */
        ck_assert_int_eq(double_cache_release(c, &l, true, " world", 6), 0);
        assert_slot(c, MODEL, 0, "hello world", false);
        ck_assert_uint_eq(double_cache_busy(c), 0);
        ck_assert_uint_eq(double_cache_bytes(c), 11);
        ck_assert_int_eq(double_cache_release(c, &l, true, "", 0), -ESTALE);
        l.slot = 2;
        ck_assert_int_eq(double_cache_release(c, &l, true, "", 0), -EINVAL);
}
END_TEST

START_TEST(test_longest_prefix) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(3, 1024, 4096, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease a, b, l;

        /* fill slots 0 and 1 with two conversations (each free slot is taken while the other is busy) */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "SYS:alpha", 9, &a), 0);
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "SYS:beta", 8, &b), 0);
        ck_assert_uint_eq(a.slot, 0);
        ck_assert_uint_eq(b.slot, 1);
        /* slot 0 is busy: the shared "SYS:" is found in slot 1 only, and 1 is busy too */
        ck_assert_uint_eq(b.hit_bytes, 0);
        ck_assert_int_eq(double_cache_release(c, &a, true, "-A", 2), 0);
        ck_assert_int_eq(double_cache_release(c, &b, true, "-B", 2), 0);
        assert_slot(c, MODEL, 0, "SYS:alpha-A", false);
        assert_slot(c, MODEL, 1, "SYS:beta-B", false);

        /* the next turn of beta goes to slot 1 and pays only for its new part */
        l = cache_turn(c, MODEL, "SYS:beta-B+more", "!");
        ck_assert_uint_eq(l.slot, 1);
        ck_assert_uint_eq(l.hit_bytes, 10);
        ck_assert_uint_eq(l.prefill_bytes, 5);
        assert_slot(c, MODEL, 1, "SYS:beta-B+more!", false);

        /* of alpha: slot 0 */
        l = cache_turn(c, MODEL, "SYS:alpha-A+x", "");
        ck_assert_uint_eq(l.slot, 0);
        ck_assert_uint_eq(l.hit_bytes, 11);
        ck_assert_uint_eq(l.prefill_bytes, 2);

        /* a prompt sharing a partial prefix: the slot sharing the most is taken and cut back */
        l = cache_turn(c, MODEL, "SYS:alphx", "?");
        ck_assert_uint_eq(l.slot, 0);
        ck_assert_uint_eq(l.hit_bytes, 8);
        ck_assert_uint_eq(l.prefill_bytes, 1);
        assert_slot(c, MODEL, 0, "SYS:alphx?", false);
        /* slot 2 never got anything: a longer prefix elsewhere always wins over an empty slot */
        assert_slot(c, MODEL, 2, "", false);
}
END_TEST

START_TEST(test_busy_skipped) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(2, 1024, 4096, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease a, b, x;

        (void) cache_turn(c, MODEL, "conversation", " one");
        /* slot 0 holds the prefix but is busy: the second request gets slot 1 and no hit */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "conversation one, two", 21, &a), 0);
        ck_assert_uint_eq(a.slot, 0);
        ck_assert_uint_eq(a.hit_bytes, 16);
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "conversation one, three", 23, &b), 0);
        ck_assert_uint_eq(b.slot, 1);
        ck_assert_uint_eq(b.hit_bytes, 0);
        ck_assert_uint_eq(b.prefill_bytes, 23);
        /* all busy */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "conversation", 12, &x), -EBUSY);
        ck_assert_uint_eq(double_cache_busy(c), 2);
        /* another model has slots of its own */
        ck_assert_int_eq(double_cache_acquire(c, "other:latest", "conversation", 12, &x), 0);
        ck_assert_uint_eq(x.slot, 0);
        ck_assert_uint_eq(x.hit_bytes, 0);
        ck_assert_int_eq(double_cache_release(c, &x, true, "", 0), 0);
        ck_assert_int_eq(double_cache_release(c, &a, true, "", 0), 0);
        ck_assert_int_eq(double_cache_release(c, &b, true, "", 0), 0);
        assert_slot(c, MODEL, 0, "conversation one, two", false);
        assert_slot(c, MODEL, 1, "conversation one, three", false);
}
END_TEST

START_TEST(test_whole_prompt_cached) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(1, 1024, 4096, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease l;

        (void) cache_turn(c, MODEL, "same prompt", " answer");
        /* the same prompt again: found whole, yet its last byte is evaluated to sample from */
        l = cache_turn(c, MODEL, "same prompt", " answer");
        ck_assert_uint_eq(l.hit_bytes, 10);
        ck_assert_uint_eq(l.prefill_bytes, 1);
        /* a prefix of what the slot holds: the same */
        l = cache_turn(c, MODEL, "same", "");
        ck_assert_uint_eq(l.hit_bytes, 3);
        ck_assert_uint_eq(l.prefill_bytes, 1);
        assert_slot(c, MODEL, 0, "same", false);
        /* a one-byte prompt found whole: nothing to reuse */
        l = cache_turn(c, MODEL, "s", "");
        ck_assert_uint_eq(l.hit_bytes, 0);
        ck_assert_uint_eq(l.prefill_bytes, 1);
}
END_TEST

START_TEST(test_release_not_evaluated) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(1, 1024, 4096, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease l;

        (void) cache_turn(c, MODEL, "abcdef", "");
        /* the client left during the prefill: the slot keeps only what was reused */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "abcXYZ", 6, &l), 0);
        ck_assert_uint_eq(l.hit_bytes, 3);
        ck_assert_int_eq(double_cache_release(c, &l, false, "ignored", 7), 0);
        assert_slot(c, MODEL, 0, "abc", false);
        ck_assert_uint_eq(double_cache_bytes(c), 3);
        /* evaluated, nothing generated (a failure before the first token) */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "abcXYZ", 6, &l), 0);
        ck_assert_int_eq(double_cache_release(c, &l, true, NULL, 0), 0);
        assert_slot(c, MODEL, 0, "abcXYZ", false);
}
END_TEST

START_TEST(test_ties_lowest_index) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(3, 1024, 4096, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease l;

        /* Ollama's default: equal prefixes (here none) go to the lowest free index, so sequential
         * conversations keep overwriting slot 0 even with free slots beside it */
        for (int i = 0; i < 3; i++) {
                char p[16];

                (void) snprintf(p, sizeof(p), "%c-conv", 'a' + i);
                l = cache_turn(c, MODEL, p, "");
                ck_assert_uint_eq(l.slot, 0);
                ck_assert_uint_eq(l.hit_bytes, 0);
        }
        assert_slot(c, MODEL, 0, "c-conv", false);
        assert_slot(c, MODEL, 1, "", false);
}
END_TEST

START_TEST(test_multiuser_lru) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(2, 1024, 4096, DOUBLE_CACHE_MULTIUSER);
        DoubleCacheLease l;

        /* slot 0 is empty: the prompt extends all it holds */
        l = cache_turn(c, MODEL, "S|a1", ">A1");
        ck_assert_uint_eq(l.slot, 0);
        /* b shares "S|" with slot 0 but does not extend it: the least recently used free slot
         * (1, never used) takes it, seeded with that prefix */
        l = cache_turn(c, MODEL, "S|b1", ">B1");
        ck_assert_uint_eq(l.slot, 1);
        ck_assert_uint_eq(l.hit_bytes, 2);
        /* both conversations now keep their slot */
        l = cache_turn(c, MODEL, "S|a1>A1|a2", ">A2");
        ck_assert_uint_eq(l.slot, 0);
        ck_assert_uint_eq(l.hit_bytes, 7);
        l = cache_turn(c, MODEL, "S|b1>B1|b2", ">B2");
        ck_assert_uint_eq(l.slot, 1);
        ck_assert_uint_eq(l.hit_bytes, 7);
        /* a third evicts the least recently used: slot 0 (a), not 1 (b, used last) */
        l = cache_turn(c, MODEL, "S|c1", ">C1");
        ck_assert_uint_eq(l.slot, 0);
        ck_assert_uint_eq(l.hit_bytes, 2);
        assert_slot(c, MODEL, 0, "S|c1>C1", false);
        assert_slot(c, MODEL, 1, "S|b1>B1|b2>B2", false);
}
END_TEST

START_TEST(test_multiuser_busy) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(2, 1024, 4096, DOUBLE_CACHE_MULTIUSER);
        DoubleCacheLease a, b, x;

        (void) cache_turn(c, MODEL, "shared prefix", "");
        /* slot 0 taken for a continuation ... */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "shared prefix, one", 18, &a), 0);
        ck_assert_uint_eq(a.slot, 0);
        ck_assert_uint_eq(a.hit_bytes, 13);
        /* ... a second request forks what busy slot 0 holds into the free slot 1 */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "shared prefix, two", 18, &b), 0);
        ck_assert_uint_eq(b.slot, 1);
        ck_assert_uint_eq(b.hit_bytes, 15);
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "x", 1, &x), -EBUSY);
        ck_assert_int_eq(double_cache_release(c, &a, true, "", 0), 0);
        ck_assert_int_eq(double_cache_release(c, &b, true, "", 0), 0);
}
END_TEST

START_TEST(test_max_prefix) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(1, 8, 64, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease l;

        /* a slot remembers max_prefix bytes: the rest of the answer is not kept */
        l = cache_turn(c, MODEL, "abcdef", "ghijkl");
        ck_assert_uint_eq(l.prefill_bytes, 6);
        assert_slot(c, MODEL, 0, "abcdefgh", false);
        l = cache_turn(c, MODEL, "abcdefghijkl", "");
        ck_assert_uint_eq(l.hit_bytes, 8);
        ck_assert_uint_eq(l.prefill_bytes, 4);
        /* a prompt cut at max_prefix is no prefix an answer could extend: the answer is dropped */
        assert_slot(c, MODEL, 0, "abcdefgh", false);
        ck_assert_uint_eq(double_cache_bytes(c), 8);
}
END_TEST

START_TEST(test_max_bytes) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(2, 8, 12, DOUBLE_CACHE_MULTIUSER);
        DoubleCacheLease a, b;

        /* two models of two slots, 12 bytes in all: the least recently used free slot goes */
        (void) cache_turn(c, MODEL, "aaaa", "");        /* llama slot 0, used 1 */
        (void) cache_turn(c, "m2", "bbbb", "");         /* m2 slot 0, used 2 */
        (void) cache_turn(c, MODEL, "cccc", "");        /* llama slot 1, used 3 */
        ck_assert_uint_eq(double_cache_bytes(c), 12);
        ck_assert_uint_eq(double_cache_get_stats(c)->evictions, 0);
        (void) cache_turn(c, "m2", "dddd", "");         /* m2 slot 1: evicts llama slot 0 */
        ck_assert_uint_eq(double_cache_get_stats(c)->evictions, 1);
        assert_slot(c, MODEL, 0, "", false);
        assert_slot(c, "m2", 0, "bbbb", false);
        assert_slot(c, MODEL, 1, "cccc", false);
        assert_slot(c, "m2", 1, "dddd", false);
        ck_assert_uint_eq(double_cache_bytes(c), 12);

        /* busy slots cannot be evicted: a request gets what is left of the budget */
        ck_assert_int_eq(double_cache_acquire(c, MODEL, "cccc1234", 8, &a), 0);       /* extends slot 1 */
        ck_assert_uint_eq(a.slot, 1);
        /* a took 8 bytes, evicting the least recently used free slot, m2's 0 */
        ck_assert_uint_eq(double_cache_get_stats(c)->evictions, 2);
        assert_slot(c, "m2", 0, "", false);
        ck_assert_int_eq(double_cache_acquire(c, "m2", "bbbb5678", 8, &b), 0);
        ck_assert_uint_eq(b.slot, 0);
        ck_assert_uint_eq(b.hit_bytes, 0);
        /* b evicts m2's slot 1 and, with a's 8 bytes busy, gets the 4 left */
        ck_assert_uint_eq(double_cache_get_stats(c)->evictions, 3);
        assert_slot(c, MODEL, 1, "cccc1234", true);
        assert_slot(c, "m2", 0, "bbbb", true);
        assert_slot(c, "m2", 1, "", false);
        ck_assert_uint_eq(double_cache_bytes(c), 12);
        ck_assert_int_eq(double_cache_release(c, &a, true, "", 0), 0);
        /* cut short of its prompt, b's slot does not take the answer */
        ck_assert_int_eq(double_cache_release(c, &b, true, "xx", 2), 0);
        assert_slot(c, "m2", 0, "bbbb", false);
        ck_assert_uint_eq(double_cache_bytes(c), 12);
}
END_TEST

START_TEST(test_max_models) {
        _cleanup_(double_cache_freep) DoubleCache *c = NULL;
        DoubleCacheLease l;

        ck_assert_int_eq(double_cache_new(&(DoubleCacheConfig) {
                                .slots = 1, .max_prefix = 8, .max_bytes = 64, .max_models = 2,
                         }, &c), 0);
        (void) cache_turn(c, "a", "x", "");
        (void) cache_turn(c, "b", "x", "");
        ck_assert_int_eq(double_cache_acquire(c, "c", "x", 1, &l), -ENOSPC);
        (void) cache_turn(c, "a", "x", "");
}
END_TEST

START_TEST(test_drop_model) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(2, 64, 256, DOUBLE_CACHE_LONGEST);
        DoubleCacheLease a, l;

        ck_assert_int_eq(double_cache_acquire(c, MODEL, "busy one", 8, &a), 0);
        ck_assert_uint_eq(a.slot, 0);
        (void) cache_turn(c, MODEL, "kept", " until unload");
        (void) cache_turn(c, "other", "other model", "");
        assert_slot(c, MODEL, 1, "kept until unload", false);
        double_cache_drop_model(c, MODEL);
        double_cache_drop_model(c, "never seen");
        /* the free slot now, the busy one when it is released */
        assert_slot(c, MODEL, 1, "", false);
        assert_slot(c, MODEL, 0, "busy one", true);
        ck_assert_int_eq(double_cache_release(c, &a, true, "!", 1), 0);
        assert_slot(c, MODEL, 0, "", false);
        assert_slot(c, "other", 0, "other model", false);
        ck_assert_uint_eq(double_cache_bytes(c), 11);
        /* reloaded: a miss */
        l = cache_turn(c, MODEL, "kept until unload", "");
        ck_assert_uint_eq(l.hit_bytes, 0);
}
END_TEST

START_TEST(test_stats) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(1, 1024, 4096, DOUBLE_CACHE_LONGEST);
        const DoubleCacheStats *s = double_cache_get_stats(c);

        (void) cache_turn(c, MODEL, "0123456789", "ab");
        (void) cache_turn(c, MODEL, "0123456789abcd", "");
        (void) cache_turn(c, MODEL, "zzz", "");
        ck_assert_uint_eq(s->lookups, 3);
        ck_assert_uint_eq(s->hits, 1);
        ck_assert_uint_eq(s->hit_bytes, 12);
        ck_assert_uint_eq(s->prefill_bytes, 10 + 2 + 3);
}
END_TEST

/* ---- rendering -------------------------------------------------------------------------- */

static json_object *messages_new(const char *json) {
        json_object *o = json_tokener_parse(json);

        ck_assert_ptr_nonnull(o);
        return o;
}

static char *render_chat(const char *json, bool openai, size_t *ret_len) {
        _cleanup_json_ json_object *m = messages_new(json);
        char *text = NULL;
        size_t len = 0;

        ck_assert_int_eq(double_text_render_chat(m, openai, &text, &len), 0);
        ck_assert_uint_eq(strlen(text), len);
        if (ret_len)
                *ret_len = len;
        return text;
}

START_TEST(test_render_chat) {
        _cleanup_dfree_ char *t1 = NULL, *t2 = NULL, *oai = NULL, *cont = NULL, *img = NULL, *img2 = NULL,
                              *gen = NULL, *raw = NULL;
        size_t len;

        t1 = render_chat("[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"}]",
                         false, &len);
        ck_assert_str_eq(t1, "<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>");

        /* the next turn starts with the previous prompt and its answer */
        t2 = render_chat("[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
                         "{\"role\":\"assistant\",\"content\":\"Hello.\"},{\"role\":\"user\",\"content\":\"More\"}]",
                         false, NULL);
        ck_assert_int_eq(strncmp(t2, t1, len), 0);
        ck_assert_int_eq(strncmp(t2 + len, "Hello.", 6), 0);

        /* OpenAI text parts render as the same text */
        oai = render_chat("[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                          "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"H\"},{\"type\":\"text\",\"text\":\"i\"}]}]",
                          true, NULL);
        ck_assert_str_eq(oai, t1);

        /* a last assistant message is continued, not answered */
        cont = render_chat("[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hel\"}]",
                           false, NULL);
        ck_assert_str_eq(cont, "<|user|>Hi<|end|><|assistant|>Hel");

        /* images by digest: equal images, equal bytes; different images differ */
        img = render_chat("[{\"role\":\"user\",\"content\":\"see\",\"images\":[\"aGVsbG8=\"]}]", false, NULL);
        img2 = render_chat("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"aGVsbG8=\"}},"
                           "{\"type\":\"text\",\"text\":\"see\"}]}]", true, NULL);
        ck_assert_str_eq(img, img2);
        ck_assert_ptr_nonnull(strstr(img, "<|image:"));
        free(img2);
        img2 = render_chat("[{\"role\":\"user\",\"content\":\"see\",\"images\":[\"d29ybGQ=\"]}]", false, NULL);
        ck_assert_str_ne(img, img2);

        /* no messages: only the answer's start */
        free(cont);
        cont = render_chat("[]", false, NULL);
        ck_assert_str_eq(cont, "<|assistant|>");

        /* generate: system + prompt render as chat's [system, user]; raw is the prompt itself */
        ck_assert_int_eq(double_text_render_generate("Be brief.", 9, "Hi", 2, NULL, false, &gen, &len), 0);
        ck_assert_str_eq(gen, t1);
        ck_assert_int_eq(double_text_render_generate("Be brief.", 9, "Hi", 2, NULL, true, &raw, &len), 0);
        ck_assert_str_eq(raw, "Hi");
        free(gen);
        ck_assert_int_eq(double_text_render_generate(NULL, 0, "Hi", 2, NULL, false, &gen, &len), 0);
        ck_assert_str_eq(gen, "<|user|>Hi<|end|><|assistant|>");
}
END_TEST

/* What the double does for /api/chat: render, acquire, answer, release with the answer. */
static DoubleCacheLease chat_turn(DoubleCache *c, json_object *messages, const char *answer) {
        _cleanup_dfree_ char *text = NULL;
        DoubleCacheLease l;
        size_t len;

        ck_assert_int_eq(double_text_render_chat(messages, false, &text, &len), 0);
        ck_assert_int_eq(double_cache_acquire(c, MODEL, text, len, &l), 0);
        ck_assert_int_eq(double_cache_release(c, &l, true, answer, strlen(answer)), 0);
        return l;
}

static void add_message(json_object *messages, const char *role, const char *content) {
        json_object *m = json_object_new_object();

        (void) json_object_object_add(m, "role", json_object_new_string(role));
        (void) json_object_object_add(m, "content", json_object_new_string(content));
        (void) json_object_array_add(messages, m);
}

START_TEST(test_conversation) {
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(1, DOUBLE_CACHE_MAX_PREFIX, DOUBLE_CACHE_MAX_BYTES,
                                                                 DOUBLE_CACHE_LONGEST);
        _cleanup_json_ json_object *a = json_object_new_array(), *b = json_object_new_array();
        _cleanup_dfree_ char *system = malloc(4097);
        DoubleCacheLease l;
        /* what two conversations with this system prompt share: it, and the next header */
        size_t shared = strlen("<|system|>") + 4096 + strlen("<|end|>") + strlen("<|user|>");

        memset(system, 's', 4096);
        system[4096] = '\0';
        add_message(a, "system", system);
        add_message(b, "system", system);

        /* conversation a, three turns on one slot: each pays only for what is new */
        add_message(a, "user", "first question");
        l = chat_turn(c, a, "First answer.");
        ck_assert_uint_eq(l.hit_bytes, 0);
        add_message(a, "assistant", "First answer.");
        add_message(a, "user", "second question");
        l = chat_turn(c, a, "Second answer.");
        /* new: the answer's end, the question, the next answer's start */
        ck_assert_uint_eq(l.prefill_bytes, strlen("<|end|><|user|>second question<|end|><|assistant|>"));
        add_message(a, "assistant", "Second answer.");
        add_message(a, "user", "third");
        l = chat_turn(c, a, "Third.");
        ck_assert_uint_eq(l.prefill_bytes, strlen("<|end|><|user|>third<|end|><|assistant|>"));

        /* conversation b interleaved on the same slot: only the system prompt is reused */
        add_message(b, "user", "other question");
        l = chat_turn(c, b, "Other answer.");
        ck_assert_uint_eq(l.hit_bytes, shared);
        /* back to a: its history was overwritten, the system prompt is all that is left */
        add_message(a, "assistant", "Third.");
        add_message(a, "user", "fourth");
        l = chat_turn(c, a, "Fourth.");
        ck_assert_uint_eq(l.hit_bytes, shared);
}
END_TEST

START_TEST(test_generated_text_extends) {
        /* The double stores the answer's tokens as it sent them; a client that sends them back as
         * the assistant's message extends the slot exactly. */
        _cleanup_(double_cache_freep) DoubleCache *c = cache_new(1, DOUBLE_CACHE_MAX_PREFIX, DOUBLE_CACHE_MAX_BYTES,
                                                                 DOUBLE_CACHE_LONGEST);
        _cleanup_json_ json_object *a = json_object_new_array();
        _cleanup_dfree_ char *answer = NULL;
        DoubleCacheLease l;

        add_message(a, "user", "Why is the sky blue?");
        ck_assert_int_eq(double_text_generate(double_text_seed(MODEL, "Why is the sky blue?", 20), 16, &answer), 0);
        (void) chat_turn(c, a, answer);
        add_message(a, "assistant", answer);
        add_message(a, "user", "And at night?");
        l = chat_turn(c, a, "");
        ck_assert_uint_eq(l.prefill_bytes, strlen("<|end|><|user|>And at night?<|end|><|assistant|>"));
}
END_TEST

static Suite *double_cache_suite(void) {
        Suite *s = suite_create("double-cache");
        TCase *tc = tcase_create("cache");
        TCase *tr = tcase_create("render");

        tcase_add_test(tc, test_config_bounds);
        tcase_add_test(tc, test_first_request);
        tcase_add_test(tc, test_longest_prefix);
        tcase_add_test(tc, test_busy_skipped);
        tcase_add_test(tc, test_whole_prompt_cached);
        tcase_add_test(tc, test_release_not_evaluated);
        tcase_add_test(tc, test_ties_lowest_index);
        tcase_add_test(tc, test_multiuser_lru);
        tcase_add_test(tc, test_multiuser_busy);
        tcase_add_test(tc, test_max_prefix);
        tcase_add_test(tc, test_max_bytes);
        tcase_add_test(tc, test_max_models);
        tcase_add_test(tc, test_drop_model);
        tcase_add_test(tc, test_stats);
        suite_add_tcase(s, tc);
        tcase_add_test(tr, test_render_chat);
        tcase_add_test(tr, test_conversation);
        tcase_add_test(tr, test_generated_text_extends);
        suite_add_tcase(s, tr);
        return s;
}

int main(void) {
        return unit_test_run(double_cache_suite());
}

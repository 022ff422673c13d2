/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The binary encoding of SWIM messages and their sealing with XChaCha20-Poly1305. Every length
 * is checked before it is used; a decoder never reads past the buffer it was given. */
#include <sodium.h>

#include "hex.h"
#include "swim-wire.h"

/* Contexts of the two keyed hashes of a mesh key: the id byte and the gossip subkey. */
static const char key_id_context[] = "mycelia swim key id v1";
static const char key_aead_context[] = "mycelia swim seal v1";

void swim_key_derive(const uint8_t mesh_key[SWIM_KEY_SIZE], SwimKey *ret) {
        uint8_t h[crypto_generichash_BYTES];

        /* Idempotent; picks the fastest implementations. It only fails without a random
         * source, and nothing here needs libsodium's randomness. */
        if (sodium_init() < 0) {
        }
        crypto_generichash(h, sizeof(h), (const uint8_t *) key_id_context, strlen(key_id_context),
                           mesh_key, SWIM_KEY_SIZE);
        ret->id = h[0];
        crypto_generichash(ret->aead, sizeof(ret->aead), (const uint8_t *) key_aead_context,
                           strlen(key_aead_context), mesh_key, SWIM_KEY_SIZE);
        sodium_memzero(h, sizeof(h));
}

uint8_t swim_key_id(const uint8_t key[SWIM_KEY_SIZE]) {
        SwimKey k;

        swim_key_derive(key, &k);
        sodium_memzero(k.aead, sizeof(k.aead));
        return k.id;
}

int swim_seal(const SwimKey *key, const uint8_t nonce[SWIM_NONCE_SIZE], const void *plain, size_t plain_size,
              void *out, size_t out_size) {
        uint8_t *o = out;
        unsigned long long clen;

        if (plain_size > SIZE_MAX - SWIM_SEAL_OVERHEAD || out_size < plain_size + SWIM_SEAL_OVERHEAD)
                return -ENOBUFS;
        o[0] = SWIM_PROTOCOL_VERSION;
        o[1] = key->id;
        memcpy(o + 2, nonce, SWIM_NONCE_SIZE);
        if (crypto_aead_xchacha20poly1305_ietf_encrypt(o + SWIM_SEAL_HEADER_SIZE, &clen, plain, plain_size,
                                                       o, 2, NULL, nonce, key->aead) < 0)
                return -EIO;
        return (int) (SWIM_SEAL_HEADER_SIZE + clen);
}

int swim_open(const SwimKey *keys, size_t n_keys, const void *data, size_t size, size_t max_size,
              void *plain, size_t plain_size) {
        const uint8_t *d = data;
        unsigned long long plen;

        if (size > max_size)
                return -EMSGSIZE;
        if (size < 2)
                return -EBADMSG;
        if (d[0] != SWIM_PROTOCOL_VERSION)
                return -EPROTONOSUPPORT;
        if (size < SWIM_SEAL_OVERHEAD)
                return -EBADMSG;
        if (plain_size < size - SWIM_SEAL_OVERHEAD)
                return -ENOBUFS;

        for (size_t i = 0; i < n_keys; i++) {
                if (keys[i].id != d[1])
                        continue;
                if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL,
                                                               d + SWIM_SEAL_HEADER_SIZE,
                                                               size - SWIM_SEAL_HEADER_SIZE,
                                                               d, 2, d + 2, keys[i].aead) == 0)
                        return (int) plen;
        }
        return -EKEYREJECTED;
}

/* --- writer and reader --- */

void swim_writer_init_fixed(SwimWriter *w, void *buf, size_t size) {
        *w = (SwimWriter) { .buf = buf, .alloc = size, .max = size };
}

void swim_writer_init_growable(SwimWriter *w, size_t max) {
        *w = (SwimWriter) { .max = max, .growable = true };
}

void swim_writer_done(SwimWriter *w) {
        if (w->growable)
                free(w->buf);
        w->buf = NULL;
        w->len = w->alloc = 0;
}

void swim_writer_put(SwimWriter *w, const void *p, size_t n) {
        if (w->overflow)
                return;
        if (n > w->max - w->len) {
                w->overflow = true;
                return;
        }
        if (w->len + n > w->alloc) {
                size_t a;
                uint8_t *b;

                if (!w->growable) {
                        w->overflow = true;
                        return;
                }
                a = MAX(w->alloc * 2, (size_t) 4096);
                a = MAX(a, w->len + n);
                a = MIN(a, w->max);
                b = realloc(w->buf, a);
                if (!b) {
                        w->overflow = true;
                        return;
                }
                w->buf = b;
                w->alloc = a;
        }
        if (n > 0)
                memcpy(w->buf + w->len, p, n);
        w->len += n;
}

void swim_writer_u8(SwimWriter *w, uint8_t v) {
        swim_writer_put(w, &v, 1);
}

void swim_writer_u16(SwimWriter *w, uint16_t v) {
        uint8_t b[2] = { v >> 8, v };

        swim_writer_put(w, b, sizeof(b));
}

void swim_writer_u32(SwimWriter *w, uint32_t v) {
        uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

        swim_writer_put(w, b, sizeof(b));
}

void swim_writer_u64(SwimWriter *w, uint64_t v) {
        swim_writer_u32(w, (uint32_t) (v >> 32));
        swim_writer_u32(w, (uint32_t) v);
}

void swim_reader_init(SwimReader *r, const void *p, size_t n) {
        *r = (SwimReader) { .p = p, .left = n };
}

const uint8_t *swim_reader_take(SwimReader *r, size_t n) {
        const uint8_t *p;

        if (r->error || n > r->left) {
                r->error = true;
                return NULL;
        }
        p = r->p;
        r->p += n;
        r->left -= n;
        return p;
}

uint8_t swim_reader_u8(SwimReader *r) {
        const uint8_t *p = swim_reader_take(r, 1);

        return p ? p[0] : 0;
}

uint16_t swim_reader_u16(SwimReader *r) {
        const uint8_t *p = swim_reader_take(r, 2);

        return p ? (uint16_t) (p[0] << 8 | p[1]) : 0;
}

uint32_t swim_reader_u32(SwimReader *r) {
        const uint8_t *p = swim_reader_take(r, 4);

        return p ? (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3] : 0;
}

uint64_t swim_reader_u64(SwimReader *r) {
        uint64_t hi = swim_reader_u32(r);

        return hi << 32 | swim_reader_u32(r);
}

void swim_header_write(SwimWriter *w, const SwimHeader *h) {
        swim_writer_u8(w, h->kind);
        swim_writer_put(w, h->sender, SWIM_ID_SIZE);
        swim_writer_u64(w, h->session);
        swim_writer_u64(w, h->seq);
        swim_writer_u32(w, h->incarnation);
        swim_writer_u64(w, h->meta_version);
}

int swim_header_read(SwimReader *r, SwimHeader *ret) {
        const uint8_t *id;
        SwimHeader h;

        h.kind = swim_reader_u8(r);
        id = swim_reader_take(r, SWIM_ID_SIZE);
        h.session = swim_reader_u64(r);
        h.seq = swim_reader_u64(r);
        h.incarnation = swim_reader_u32(r);
        h.meta_version = swim_reader_u64(r);
        if (r->error)
                return -EBADMSG;
        if (!IN_SET(h.kind, SWIM_KIND_DATAGRAM, SWIM_KIND_PUSH_PULL_REQUEST, SWIM_KIND_PUSH_PULL_REPLY))
                return -EBADMSG;
        memcpy(h.sender, id, SWIM_ID_SIZE);
        *ret = h;
        return 0;
}

int swim_msg_next(SwimReader *r, uint8_t *ret_type, SwimReader *ret_body) {
        const uint8_t *body;
        uint8_t type;
        uint16_t len;

        if (r->error)
                return -EBADMSG;
        if (r->left == 0)
                return 0;
        type = swim_reader_u8(r);
        len = swim_reader_u16(r);
        body = swim_reader_take(r, len);
        if (!body)
                return -EBADMSG;
        *ret_type = type;
        swim_reader_init(ret_body, body, len);
        return 1;
}

size_t swim_msg_begin(SwimWriter *w, uint8_t type) {
        size_t offset = w->len;

        swim_writer_u8(w, type);
        swim_writer_u16(w, 0);
        return offset;
}

void swim_msg_end(SwimWriter *w, size_t offset) {
        size_t len;

        if (w->overflow)
                return;
        len = w->len - offset - SWIM_MSG_HEADER_SIZE;
        if (len > SWIM_MSG_BODY_MAX) {
                w->overflow = true;
                return;
        }
        w->buf[offset + 1] = (uint8_t) (len >> 8);
        w->buf[offset + 2] = (uint8_t) len;
}

void swim_load_write(SwimWriter *w, uint32_t in_flight, uint32_t capacity) {
        size_t o = swim_msg_begin(w, SWIM_MSG_LOAD);

        swim_writer_u32(w, in_flight);
        swim_writer_u32(w, capacity);
        swim_msg_end(w, o);
}

int swim_load_read(SwimReader *body, uint32_t *ret_in_flight, uint32_t *ret_capacity) {
        uint32_t in_flight, capacity;

        if (body->left != SWIM_LOAD_BODY_SIZE)
                return -EBADMSG;
        in_flight = swim_reader_u32(body);
        capacity = swim_reader_u32(body);
        if (body->error)
                return -EBADMSG;
        *ret_in_flight = in_flight;
        *ret_capacity = capacity;
        return 0;
}

/* Addresses travel as [4|6][4 or 16 bytes][port u16], independent of the host's AF_* values. */
void swim_addr_write(SwimWriter *w, const SwimAddr *a) {
        if (a->family == AF_INET6) {
                swim_writer_u8(w, 6);
                swim_writer_put(w, a->addr, 16);
        } else {
                swim_writer_u8(w, 4);
                swim_writer_put(w, a->addr, 4);
        }
        swim_writer_u16(w, a->port);
}

int swim_addr_read(SwimReader *r, SwimAddr *ret) {
        SwimAddr a = {};
        const uint8_t *p;
        uint8_t f;

        f = swim_reader_u8(r);
        if (f == 4) {
                a.family = AF_INET;
                p = swim_reader_take(r, 4);
                if (p)
                        memcpy(a.addr, p, 4);
        } else if (f == 6) {
                a.family = AF_INET6;
                p = swim_reader_take(r, 16);
                if (p)
                        memcpy(a.addr, p, 16);
        } else
                return -EBADMSG;
        a.port = swim_reader_u16(r);
        if (r->error)
                return -EBADMSG;
        *ret = a;
        return 0;
}

bool swim_meta_key_valid(const char *key, size_t len) {
        if (len < 1 || len > SWIM_META_KEY_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = key[i];

                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || IN_SET(c, '_', '.', '-')))
                        return false;
        }
        return true;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): names and values
 * end up in D-Bus strings, which must be valid UTF-8, or every Members read would fail. */
static bool utf8_valid(const char *s, size_t len) {
        const uint8_t *p = (const uint8_t *) s, *end = p + len;

        while (p < end) {
                uint32_t c = *p;
                size_t n;

                if (c < 0x80) {
                        p++;
                        continue;
                }
                if (c >= 0xC2 && c <= 0xDF)
                        n = 1, c &= 0x1F;
                else if (c >= 0xE0 && c <= 0xEF)
                        n = 2, c &= 0x0F;
                else if (c >= 0xF0 && c <= 0xF4)
                        n = 3, c &= 0x07;
                else
                        return false;
                if ((size_t) (end - p) <= n)
                        return false;
                for (size_t i = 1; i <= n; i++) {
                        if ((p[i] & 0xC0) != 0x80)
                                return false;
                        c = (c << 6) | (p[i] & 0x3F);
                }
                if ((n == 2 && c < 0x800) || (n == 3 && (c < 0x10000 || c > 0x10FFFF)) ||
                    (c >= 0xD800 && c <= 0xDFFF))
                        return false;
                p += n + 1;
        }
        return true;
}

bool swim_meta_value_valid(const char *value, size_t len) {
        return !memchr(value, '\0', len) && !memchr(value, '\n', len) && utf8_valid(value, len);
}

bool swim_name_valid(const char *name, size_t len) {
        if (len > SWIM_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)
                        return false;
        return utf8_valid(name, len);
}

void swim_record_write(SwimWriter *w, const uint8_t id[SWIM_ID_SIZE], SwimState state, uint32_t incarnation,
                       uint64_t meta_version, const char *name, const SwimAddr *addr,
                       char *const *meta_keys, char *const *meta_values, size_t n_meta) {
        size_t l = strlen(name);

        swim_writer_put(w, id, SWIM_ID_SIZE);
        swim_writer_u8(w, (uint8_t) state);
        swim_writer_u32(w, incarnation);
        swim_writer_u64(w, meta_version);
        swim_writer_u8(w, (uint8_t) MIN(l, (size_t) SWIM_NAME_MAX));
        swim_writer_put(w, name, MIN(l, (size_t) SWIM_NAME_MAX));
        swim_addr_write(w, addr);
        swim_writer_u8(w, (uint8_t) n_meta);
        for (size_t i = 0; i < n_meta; i++) {
                size_t kl = strlen(meta_keys[i]), vl = strlen(meta_values[i]);

                swim_writer_u8(w, (uint8_t) kl);
                swim_writer_put(w, meta_keys[i], kl);
                swim_writer_u16(w, (uint16_t) vl);
                swim_writer_put(w, meta_values[i], vl);
        }
}

int swim_record_read(SwimReader *r, SwimRecord *ret) {
        const uint8_t *p;
        size_t total = 0;
        uint8_t l;

        p = swim_reader_take(r, SWIM_ID_SIZE);
        if (!p)
                return -EBADMSG;
        memcpy(ret->id, p, SWIM_ID_SIZE);
        ret->state = swim_reader_u8(r);
        ret->incarnation = swim_reader_u32(r);
        ret->meta_version = swim_reader_u64(r);
        l = swim_reader_u8(r);
        p = swim_reader_take(r, l);
        if (!p || ret->state >= _SWIM_STATE_MAX || !swim_name_valid((const char *) p, l))
                return -EBADMSG;
        memcpy(ret->name, p, l);
        ret->name[l] = '\0';
        if (swim_addr_read(r, &ret->addr) < 0)
                return -EBADMSG;

        ret->n_meta = swim_reader_u8(r);
        if (r->error || ret->n_meta > SWIM_META_KEYS_MAX)
                return -EBADMSG;
        for (size_t i = 0; i < ret->n_meta; i++) {
                SwimMetaRef *m = &ret->meta[i];
                uint16_t vl;

                l = swim_reader_u8(r);
                p = swim_reader_take(r, l);
                if (!p || !swim_meta_key_valid((const char *) p, l))
                        return -EBADMSG;
                memcpy(m->key, p, l);
                m->key[l] = '\0';
                /* Sorted and unique, so that a record has exactly one encoding. */
                if (i > 0 && strcmp(ret->meta[i - 1].key, m->key) >= 0)
                        return -EBADMSG;
                vl = swim_reader_u16(r);
                p = swim_reader_take(r, vl);
                if (!p || !swim_meta_value_valid((const char *) p, vl))
                        return -EBADMSG;
                m->value = (const char *) p;
                m->value_len = vl;
                total += l + vl;
                if (total > SWIM_META_SIZE_MAX)
                        return -EBADMSG;
        }
        /* A record is a whole message body: trailing bytes mean it is not what we think. */
        if (r->error || r->left != 0)
                return -EBADMSG;
        return 0;
}

int swim_id_from_string(const char *s, uint8_t ret[SWIM_ID_SIZE]) {
        uint8_t id[SWIM_ID_SIZE];

        if (!s || strlen(s) != NODE_ID_LEN)
                return -EINVAL;
        for (size_t i = 0; i < SWIM_ID_SIZE; i++) {
                int a = unhexchar(s[2 * i]), b = unhexchar(s[2 * i + 1]);

                if (a < 0 || b < 0)
                        return -EINVAL;
                id[i] = (uint8_t) (a << 4 | b);
        }
        memcpy(ret, id, SWIM_ID_SIZE);
        return 0;
}

void swim_id_to_string(const uint8_t id[SWIM_ID_SIZE], char ret[NODE_ID_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < SWIM_ID_SIZE; i++) {
                ret[2 * i] = hex[id[i] >> 4];
                ret[2 * i + 1] = hex[id[i] & 15];
        }
        ret[NODE_ID_LEN] = '\0';
}

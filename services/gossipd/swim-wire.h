/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The binary encoding of SWIM messages and the sealing of whole messages with the mesh key
 * (XChaCha20-Poly1305). Pure: swim.c, the unit tests and fuzzers drive it; docs/gossip-protocol.md. */
#pragma once

#include "swim.h"

/* Sealed message: [version][key id][24-byte nonce][ciphertext][16-byte tag]; AAD = first 2 bytes. */
#define SWIM_NONCE_SIZE 24
#define SWIM_TAG_SIZE 16
#define SWIM_SEAL_HEADER_SIZE (2 + SWIM_NONCE_SIZE)
#define SWIM_SEAL_OVERHEAD (SWIM_SEAL_HEADER_SIZE + SWIM_TAG_SIZE)
#define SWIM_ID_SIZE 16

/* A mesh key as swim uses it: the key id byte, and the AEAD key derived from the mesh key (the
 * mesh key itself also feeds the HTTP authenticator, so gossip seals with a subkey). */
typedef struct SwimKey {
        uint8_t id;
        uint8_t aead[SWIM_KEY_SIZE];
} SwimKey;

void swim_key_derive(const uint8_t mesh_key[SWIM_KEY_SIZE], SwimKey *ret);

/* Seals plain into out (out_size >= plain_size + SWIM_SEAL_OVERHEAD). Returns the sealed size. */
int swim_seal(const SwimKey *key, const uint8_t nonce[SWIM_NONCE_SIZE], const void *plain, size_t plain_size,
              void *out, size_t out_size);
/* Opens a sealed message with the first of keys[] whose id matches and whose tag verifies.
 * plain must hold size - SWIM_SEAL_OVERHEAD bytes. Checks in this order: -EMSGSIZE above
 * max_size, -EBADMSG shorter than the version and key id, -EPROTONOSUPPORT another version,
 * -EBADMSG shorter than the seal overhead, -EKEYREJECTED no key opens it. Returns the
 * plaintext size. */
int swim_open(const SwimKey *keys, size_t n_keys, const void *data, size_t size, size_t max_size,
              void *plain, size_t plain_size);

/* --- plaintext --- */

typedef enum SwimKind {
        SWIM_KIND_DATAGRAM = 1,
        SWIM_KIND_PUSH_PULL_REQUEST = 2,
        SWIM_KIND_PUSH_PULL_REPLY = 3,
} SwimKind;

/* Every plaintext starts with this: the sender, its session (random per swim_new) and the
 * session's sequence number, for replay protection. */
typedef struct SwimHeader {
        uint8_t kind;
        uint8_t sender[SWIM_ID_SIZE];
        uint64_t session;
        uint64_t seq;
        /* The version of the sender's own record: a receiver holding an older one missed an
         * update and asks the sender for it. */
        uint32_t incarnation;
        uint64_t meta_version;
} SwimHeader;
#define SWIM_HEADER_SIZE (1 + SWIM_ID_SIZE + 8 + 8 + 4 + 8)

/* After the header: messages, each [type u8][length u16 BE][body]. Unknown types are skipped. */
typedef enum SwimMsgType {
        SWIM_MSG_PING = 1,      /* seq u32, target id (all zero: whoever receives it) */
        SWIM_MSG_ACK = 2,       /* seq u32 */
        SWIM_MSG_PING_REQ = 3,  /* seq u32, target id, target address */
        SWIM_MSG_ALIVE = 4,     /* member record, state alive */
        SWIM_MSG_SUSPECT = 5,   /* id, incarnation u32 */
        SWIM_MSG_DEAD = 6,      /* id, incarnation u32 */
        SWIM_MSG_LEFT = 7,      /* id, incarnation u32 */
        SWIM_MSG_MEMBER = 8,    /* member record, any state (push-pull) */
        SWIM_MSG_LOAD = 9,      /* in_flight u32, capacity u32: the sender's own load (datagrams) */
} SwimMsgType;
#define SWIM_MSG_HEADER_SIZE 3
#define SWIM_MSG_BODY_MAX UINT16_MAX

/* A growable (up to max) or fixed output buffer; any write past max sets overflow. */
typedef struct SwimWriter {
        uint8_t *buf;
        size_t len, alloc, max;
        bool growable, overflow;
} SwimWriter;

void swim_writer_init_fixed(SwimWriter *w, void *buf, size_t size);
void swim_writer_init_growable(SwimWriter *w, size_t max);
void swim_writer_done(SwimWriter *w);           /* frees a growable buffer */
void swim_writer_put(SwimWriter *w, const void *p, size_t n);
void swim_writer_u8(SwimWriter *w, uint8_t v);
void swim_writer_u16(SwimWriter *w, uint16_t v);
void swim_writer_u32(SwimWriter *w, uint32_t v);
void swim_writer_u64(SwimWriter *w, uint64_t v);

typedef struct SwimReader {
        const uint8_t *p;
        size_t left;
        bool error;             /* a read went past the end; every later read returns zeros */
} SwimReader;

void swim_reader_init(SwimReader *r, const void *p, size_t n);
const uint8_t *swim_reader_take(SwimReader *r, size_t n);
uint8_t swim_reader_u8(SwimReader *r);
uint16_t swim_reader_u16(SwimReader *r);
uint32_t swim_reader_u32(SwimReader *r);
uint64_t swim_reader_u64(SwimReader *r);

void swim_header_write(SwimWriter *w, const SwimHeader *h);
int swim_header_read(SwimReader *r, SwimHeader *ret);

/* Reads the next message: 1 with type and body set, 0 at the end, -EBADMSG when truncated. */
int swim_msg_next(SwimReader *r, uint8_t *ret_type, SwimReader *ret_body);
/* Starts a message; swim_msg_end() fills in its length. Returns the offset to pass on. */
size_t swim_msg_begin(SwimWriter *w, uint8_t type);
void swim_msg_end(SwimWriter *w, size_t offset);

/* A whole LOAD message, and its body read back: exactly SWIM_LOAD_BODY_SIZE bytes, -EBADMSG
 * otherwise. */
#define SWIM_LOAD_BODY_SIZE 8
#define SWIM_LOAD_MSG_SIZE (SWIM_MSG_HEADER_SIZE + SWIM_LOAD_BODY_SIZE)
void swim_load_write(SwimWriter *w, uint32_t in_flight, uint32_t capacity);
int swim_load_read(SwimReader *body, uint32_t *ret_in_flight, uint32_t *ret_capacity);

void swim_addr_write(SwimWriter *w, const SwimAddr *a);
int swim_addr_read(SwimReader *r, SwimAddr *ret);

typedef struct SwimMetaRef {
        char key[SWIM_META_KEY_MAX + 1];
        const char *value;      /* points into the decoded buffer, not NUL-terminated */
        size_t value_len;
} SwimMetaRef;

/* A member record as it travels: in ALIVE and MEMBER messages. */
typedef struct SwimRecord {
        uint8_t id[SWIM_ID_SIZE];
        uint8_t state;          /* SwimState */
        uint32_t incarnation;
        uint64_t meta_version;
        char name[SWIM_NAME_MAX + 1];
        SwimAddr addr;
        size_t n_meta;
        SwimMetaRef meta[SWIM_META_KEYS_MAX];
} SwimRecord;

/* keys sorted, unique and valid (swim_meta_key_valid), values valid, sizes within limits. */
void swim_record_write(SwimWriter *w, const uint8_t id[SWIM_ID_SIZE], SwimState state, uint32_t incarnation,
                       uint64_t meta_version, const char *name, const SwimAddr *addr,
                       char *const *meta_keys, char *const *meta_values, size_t n_meta);
/* Decodes and validates a whole message body as a record: -EBADMSG on anything out of spec. */
int swim_record_read(SwimReader *r, SwimRecord *ret);

bool swim_meta_key_valid(const char *key, size_t len);
bool swim_meta_value_valid(const char *value, size_t len);
bool swim_name_valid(const char *name, size_t len);

/* 32 hex digits <-> 16 bytes (lowercase out). */
int swim_id_from_string(const char *s, uint8_t ret[SWIM_ID_SIZE]);
void swim_id_to_string(const uint8_t id[SWIM_ID_SIZE], char ret[NODE_ID_LEN + 1]);

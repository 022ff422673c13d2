#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Derives the known-answer vectors of test-mesh-auth.c and test-swim-wire.c from the documented
# formats, independently of the C code. Run by hand (/usr/bin/python3 tests/unit/kat-vectors.py).
"""Known-answer vectors for the X-Mycelia-Auth authenticator and the gossip wire format.

The bytes printed here are computed from docs/mesh-forwarding.md ("The authenticator") and
docs/gossip-protocol.md ("Wire format", "Keys and rotation") alone, without libsodium and without
looking at what the C code produces: hashlib's BLAKE2b and hmac for mesh-auth and the key
derivation, and for the AEAD XChaCha20-Poly1305 built here from a pure-Python HChaCha20 and the
ChaCha20-Poly1305 (IETF) of python3-cryptography (Debian's, in /usr/bin/python3). HChaCha20 and
the whole AEAD are checked against the test vectors of draft-irtf-cfrg-xchacha first.

tests/unit/test-mesh-auth.c and tests/unit/test-swim-wire.c hold these bytes as hex literals.
This script is not run by the test suite; when a vector has to change (a new format version), it
is changed here first and the output copied into the tests. A change to the C code that makes
the tests disagree with this script is a wire format change: a mixed-version mesh would break.
"""

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

# --- XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) ---


def _rotl32(v, n):
    return ((v << n) | (v >> (32 - n))) & 0xffffffff


def _quarter_round(x, a, b, c, d):
    x[a] = (x[a] + x[b]) & 0xffffffff
    x[d] = _rotl32(x[d] ^ x[a], 16)
    x[c] = (x[c] + x[d]) & 0xffffffff
    x[b] = _rotl32(x[b] ^ x[c], 12)
    x[a] = (x[a] + x[b]) & 0xffffffff
    x[d] = _rotl32(x[d] ^ x[a], 8)
    x[c] = (x[c] + x[d]) & 0xffffffff
    x[b] = _rotl32(x[b] ^ x[c], 7)


def hchacha20(key, nonce16):
    """The ChaCha20 state with the 16-byte nonce in place of counter and nonce, 20 rounds,
    no feed-forward; the subkey is words 0-3 and 12-15, little-endian."""
    assert len(key) == 32 and len(nonce16) == 16
    x = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]
    x += list(struct.unpack('<8I', key))
    x += list(struct.unpack('<4I', nonce16))
    for _ in range(10):
        _quarter_round(x, 0, 4, 8, 12)
        _quarter_round(x, 1, 5, 9, 13)
        _quarter_round(x, 2, 6, 10, 14)
        _quarter_round(x, 3, 7, 11, 15)
        _quarter_round(x, 0, 5, 10, 15)
        _quarter_round(x, 1, 6, 11, 12)
        _quarter_round(x, 2, 7, 8, 13)
        _quarter_round(x, 3, 4, 9, 14)
    return struct.pack('<8I', *(x[0:4] + x[12:16]))


def xchacha20poly1305_seal(key, nonce24, plain, ad):
    """ciphertext || tag."""
    assert len(nonce24) == 24
    subkey = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(subkey).encrypt(b'\0' * 4 + nonce24[16:], plain, ad)


def xchacha20poly1305_open(key, nonce24, sealed, ad):
    subkey = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(subkey).decrypt(b'\0' * 4 + nonce24[16:], sealed, ad)


def self_test():
    # draft-irtf-cfrg-xchacha-03, 2.2.1: Test Vector for the HChaCha20 Block Function.
    key = bytes(range(32))
    nonce = bytes.fromhex('000000090000004a0000000031415927')
    want = bytes.fromhex('82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc')
    assert hchacha20(key, nonce) == want, 'HChaCha20 disagrees with draft-irtf-cfrg-xchacha 2.2.1'

    # draft-irtf-cfrg-xchacha-03, A.3.1: AEAD_XChaCha20_Poly1305.
    key = bytes(range(0x80, 0xa0))
    nonce = bytes(range(0x40, 0x58))
    ad = bytes.fromhex('50515253c0c1c2c3c4c5c6c7')
    plain = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
             b"the future, sunscreen would be it.")
    want = bytes.fromhex(
        'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb'
        '731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452'
        '2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9'
        '21f9664c97637da9768812f615c68b13b52e'
        'c0875924c1c7987947deafd8780acf49')
    assert xchacha20poly1305_seal(key, nonce, plain, ad) == want, \
        'XChaCha20-Poly1305 disagrees with draft-irtf-cfrg-xchacha A.3.1'
    assert xchacha20poly1305_open(key, nonce, want, ad) == plain

    # BLAKE2b keyed (RFC 7693 through hashlib): the digest size is part of the parameter
    # block, so BLAKE2b-256 is not a prefix of BLAKE2b-512; say which one is meant.
    a = hashlib.blake2b(b'x', key=b'k', digest_size=32).digest()
    b = hashlib.blake2b(b'x', key=b'k', digest_size=64).digest()
    assert a != b[:32]


# --- shared inputs ---

MESH_KEY = bytes(range(0x00, 0x20))     # the mesh key of every vector
OTHER_KEY = bytes(range(0x20, 0x40))    # another mesh's key: must not open or verify anything


def blake2b_256(data, key=None):
    return hashlib.blake2b(data, key=key or b'', digest_size=32).digest()


# --- mesh-auth (docs/mesh-forwarding.md, "The authenticator") ---


def mesh_auth_subkey(mesh_key):
    return blake2b_256(b'mycelia-http-v1', key=mesh_key)


def mesh_auth_canonical(ts, nonce, method, uri, node_id, body):
    return '\n'.join(['v1', str(ts), nonce.hex(), method, uri, node_id, blake2b_256(body).hex()]).encode()


def mesh_auth_value(mesh_key, ts, nonce, method, uri, node_id, body):
    mac = hmac.new(mesh_auth_subkey(mesh_key),
                   mesh_auth_canonical(ts, nonce, method, uri, node_id, body), hashlib.sha256).hexdigest()
    return f'v1 {ts} {nonce.hex()} {mac}'


AUTH_VECTORS = [
    # name, ts, nonce, method, uri, node id, body
    ('KAT_POST', 1700000000, bytes.fromhex('deadbeef01234567'), 'POST', '/api/generate',
     'fedcba9876543210fedcba9876543210', b'{"model":"llama3.2","prompt":"hi"}'),
    ('KAT_GET', 18446744073709551615, bytes.fromhex('0001020304050607'), 'GET', '/api/tags?verbose=1',
     '00112233445566778899aabbccddeeff', b''),
]

# --- swim (docs/gossip-protocol.md) ---

SWIM_PROTOCOL_VERSION = 1
KIND_DATAGRAM, KIND_PUSH_PULL_REQUEST, KIND_PUSH_PULL_REPLY = 1, 2, 3
MSG_PING, MSG_ACK, MSG_PING_REQ, MSG_ALIVE, MSG_SUSPECT, MSG_DEAD, MSG_LEFT, MSG_MEMBER, MSG_LOAD = range(1, 10)
STATE_ALIVE, STATE_SUSPECT, STATE_DEAD, STATE_LEFT = range(4)

ID_A = bytes.fromhex('00112233445566778899aabbccddeeff')
ID_B = bytes.fromhex('ffeeddccbbaa99887766554433221100')
ID_C = bytes.fromhex('0123456789abcdeffedcba9876543210')
ID_R = bytes.fromhex('0000000000000000000000000000abcd')    # the receiving node of the core vectors


def swim_key_id(mesh_key):
    # The first byte of BLAKE2b-256 (not of BLAKE2b-512: the digest length changes every byte).
    return blake2b_256(b'mycelia swim key id v1', key=mesh_key)[0]


def swim_aead_key(mesh_key):
    return blake2b_256(b'mycelia swim seal v1', key=mesh_key)


def swim_seal(mesh_key, nonce, plain):
    head = bytes([SWIM_PROTOCOL_VERSION, swim_key_id(mesh_key)])
    return head + nonce + xchacha20poly1305_seal(swim_aead_key(mesh_key), nonce, plain, head)


def header(kind, sender, session, seq, incarnation, meta_version):
    return struct.pack('>B16sQQIQ', kind, sender, session, seq, incarnation, meta_version)


def msg(type_, body):
    return struct.pack('>BH', type_, len(body)) + body


def addr_v4(a, port):
    return b'\x04' + bytes(a) + struct.pack('>H', port)


def addr_v6(a, port):
    return b'\x06' + bytes(a) + struct.pack('>H', port)


def record(id_, state, incarnation, meta_version, name, addr, meta):
    name = name.encode()
    out = id_ + struct.pack('>BIQ', state, incarnation, meta_version)
    out += bytes([len(name)]) + name + addr + bytes([len(meta)])
    for k, v in sorted(meta.items()):
        k, v = k.encode(), v.encode()
        out += bytes([len(k)]) + k + struct.pack('>H', len(v)) + v
    return out


def probe(type_, seq, target=None, addr=None):
    body = struct.pack('>I', seq)
    if type_ != MSG_ACK:
        body += target if target is not None else bytes(16)
    if type_ == MSG_PING_REQ:
        body += addr
    return msg(type_, body)


def state_msg(type_, id_, incarnation):
    return msg(type_, id_ + struct.pack('>I', incarnation))


FD00_1 = bytes.fromhex('fd000000000000000000000000000001')
FD00_C = bytes.fromhex('fd00000000000000000000000000000c')

SWIM_HEADER = header(KIND_PUSH_PULL_REPLY, ID_B, 0x1112131415161718, 0x2122232425262728, 0x31323334,
                     0x4142434445464748)
REC_A = record(ID_A, STATE_ALIVE, 7, 3, 'büro-1', addr_v4([10, 0, 0, 1], 11436),
               {'version': '', 'api': '10.0.0.1:11434', 'models': 'llama3.2,qwen'})
REC_B = record(ID_B, STATE_DEAD, 0x01020304, 0x0a0b0c0d0e0f1011, '', addr_v6(FD00_1, 7), {})
PROBES = (probe(MSG_PING, 0x01020304)
          + probe(MSG_PING, 0xfffffffe, ID_B)
          + probe(MSG_ACK, 0x01020304)
          + probe(MSG_PING_REQ, 0x0a0b0c0d, ID_B, addr_v4([192, 168, 1, 20], 7946)))
STATES = state_msg(MSG_SUSPECT, ID_B, 5) + state_msg(MSG_DEAD, ID_B, 6) + state_msg(MSG_LEFT, ID_C, 0x01020304)

# Node A announces itself: its alive record and a ping for whoever is there.
DATAGRAM = (header(KIND_DATAGRAM, ID_A, 0x0123456789abcdef, 1, 7, 3)
            + msg(MSG_ALIVE, REC_A) + probe(MSG_PING, 0x01020304))
DATAGRAM_NONCE = bytes(range(0x40, 0x58))

# Node C's full state: its own record (alive, IPv6) and node B as a suspect.
REC_C = record(ID_C, STATE_ALIVE, 2, 1, 'gpu-box', addr_v6(FD00_C, 11436), {'api': '[fd00::c]:11434'})
REC_D = record(ID_B, STATE_SUSPECT, 9, 0, 'old', addr_v4([10, 0, 0, 9], 11436), {})
PUSH_PULL = (header(KIND_PUSH_PULL_REQUEST, ID_C, 0xfedcba9876543210, 1, 2, 1)
             + struct.pack('>I', 2) + msg(MSG_MEMBER, REC_C) + msg(MSG_MEMBER, REC_D))
PUSH_PULL_NONCE = bytes(range(0x60, 0x78))

# What the receiving node R (incarnation 1, no metadata yet) answers to DATAGRAM: an ack with
# the ping's seq, and its own alive record because the ping was an announce. Its session is
# random: the 8 bytes after kind and sender are not pinned.
REC_R = record(ID_R, STATE_ALIVE, 1, 0, 'kat', addr_v4([10, 0, 0, 2], 11436), {})
ANSWER = (header(KIND_DATAGRAM, ID_R, 0, 1, 1, 0)
          + probe(MSG_ACK, 0x01020304) + msg(MSG_ALIVE, REC_R))


# The sender's load ("Load" in docs/gossip-protocol.md): in_flight u32, capacity u32.
def load(in_flight, capacity):
    return msg(MSG_LOAD, struct.pack('>II', in_flight, capacity))


LOADS = load(3, 16) + load(0xffffffff, 0)
# A again, in the session of DATAGRAM, with its load: an older node skips the LOAD.
DATAGRAM_LOAD = (header(KIND_DATAGRAM, ID_A, 0x0123456789abcdef, 2, 7, 3)
                 + load(3, 16) + probe(MSG_PING, 0x01020305, ID_R))
DATAGRAM_LOAD_NONCE = bytes(range(0x80, 0x98))
# R, its load set to (2, 4), answers it: its LOAD right after the header, then the ack.
ANSWER_LOAD = header(KIND_DATAGRAM, ID_R, 0, 2, 1, 0) + load(2, 4) + probe(MSG_ACK, 0x01020305)


# --- output ---


def c_hex(name, data, width=64):
    """A C string literal of the hex digits, split into lines."""
    h = data.hex()
    lines = [h[i:i + width] for i in range(0, len(h), width)] or ['']
    print(f'/* {name}: {len(data)} bytes */')
    print(f'#define {name} \\')
    for i, line in enumerate(lines):
        print(f'        "{line}"' + (' \\' if i < len(lines) - 1 else ''))
    print()


def main():
    self_test()
    print('/* draft-irtf-cfrg-xchacha 2.2.1 and A.3.1: ok */\n')

    print('/* --- mesh-auth --- */\n')
    c_hex('KAT_SUBKEY', mesh_auth_subkey(MESH_KEY))
    c_hex('KAT_SUBKEY_OTHER', mesh_auth_subkey(OTHER_KEY))
    for name, ts, nonce, method, uri, node_id, body in AUTH_VECTORS:
        print(f'/* {name} signs:')
        for line in mesh_auth_canonical(ts, nonce, method, uri, node_id, body).decode().split('\n'):
            print(f' *   {line}')
        print(' */')
        print(f'#define {name} \\\n        "{mesh_auth_value(MESH_KEY, ts, nonce, method, uri, node_id, body)}"\n')

    print('/* --- swim --- */\n')
    print(f'#define KAT_KEY_ID 0x{swim_key_id(MESH_KEY):02x}')
    print(f'#define KAT_KEY_ID_OTHER 0x{swim_key_id(OTHER_KEY):02x}\n')
    assert swim_key_id(MESH_KEY) != swim_key_id(OTHER_KEY)
    c_hex('KAT_AEAD_KEY', swim_aead_key(MESH_KEY))
    c_hex('KAT_AEAD_KEY_OTHER', swim_aead_key(OTHER_KEY))
    c_hex('KAT_HEADER', SWIM_HEADER)
    c_hex('KAT_ALIVE_A', msg(MSG_ALIVE, REC_A))
    c_hex('KAT_MEMBER_B', msg(MSG_MEMBER, REC_B))
    c_hex('KAT_PROBES', PROBES)
    c_hex('KAT_STATES', STATES)
    c_hex('KAT_DATAGRAM', DATAGRAM)
    c_hex('KAT_DATAGRAM_SEALED', swim_seal(MESH_KEY, DATAGRAM_NONCE, DATAGRAM))
    c_hex('KAT_PUSH_PULL', PUSH_PULL)
    c_hex('KAT_PUSH_PULL_SEALED', swim_seal(MESH_KEY, PUSH_PULL_NONCE, PUSH_PULL))
    c_hex('KAT_ANSWER', ANSWER)
    c_hex('KAT_LOADS', LOADS)
    c_hex('KAT_DATAGRAM_LOAD', DATAGRAM_LOAD)
    c_hex('KAT_DATAGRAM_LOAD_SEALED', swim_seal(MESH_KEY, DATAGRAM_LOAD_NONCE, DATAGRAM_LOAD))
    c_hex('KAT_ANSWER_LOAD', ANSWER_LOAD)


if __name__ == '__main__':
    main()

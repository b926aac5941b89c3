"""Keyed pseudonyms: HMAC-SHA256 over a domain and the normalized value.

A token is the first 120 bits of HMAC-SHA256(key, domain || 0x00 || value) in lower-case base32
(24 characters of a-z and 2-7). That alphabet has no 0, 1, 8 or 9, so no token can ever look like
a mobile number or a resident ID to the output scan; 120 bits keep collisions out of reach
(about 1e-20 for 100 million values) and align with base32's 5-byte groups, so a whole column's
tokens are encoded in one call. The domain keeps tokens of different kinds apart: the same string
as a customer document and as a staff number gives unrelated tokens. Without the key a token
cannot be recomputed from a guessed value, which is why plain (unkeyed) hashes are never
produced: there are only ~10^10 mainland mobile numbers to try.

Speed: each distinct value is hashed once and tokens are mapped back through the dictionary
indices. HMAC's two key blocks are hashed once per domain (the standard precomputed inner and
outer states), so each value costs two SHA-256 block updates and no per-call key setup.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.errors import Refused
from transforms.text import NORMALIZERS, Column

MIN_KEY_BYTES = 32
TOKEN_BYTES = 15
TOKEN_CHARS = TOKEN_BYTES * 8 // 5  # 24
UNIT_PARTS = "|"  # a unit rekeyed by an erasure: the partition's unit, then each republication's


class PseudonymKeyError(Refused, ValueError):
    """The pseudonym key is missing or too short. The message never contains key material."""


class Pseudonymizer:
    """Holds the secret key; repr and str never show it."""

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"the pseudonym key has {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
        self._key = key
        self.key_id = "k1-" + hmac.new(key, b"tuomin key fingerprint", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self.key_id!r})"

    def _states(self, domain: str) -> tuple:
        """SHA-256 states after the HMAC key blocks (and the domain), per RFC 2104."""
        block = (hashlib.sha256(self._key).digest() if len(self._key) > 64 else self._key).ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        inner.update(domain.encode() + b"\x00")
        return inner, outer

    def token(self, value: str, domain: str) -> str:
        return self._encode([value.encode()], domain).to_pylist()[0]

    def tokens(self, column: Column, domain: str, normalize: str = "upper") -> pa.Array:
        """Tokens for a whole column; nulls (and values that normalize to nothing) stay null."""
        values = NORMALIZERS[normalize](column)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        encoded = pc.dictionary_encode(values)
        return self._encode(encoded.dictionary.cast(pa.binary()).to_pylist(), domain).take(encoded.indices)

    def unit_tokens(self, tokens: Column, unit: str) -> pa.Array:
        """Tokens as one published partition (version) shows them: a keyed function of the
        tokens the pipeline links and erases with, different in every partition and version, so
        that what is published joins nothing outside its partition. A unit of several parts
        (`a|b`, what an erasure's republishing adds) keys them in turn. Empty `unit`: unchanged."""
        values = tokens.combine_chunks() if isinstance(tokens, pa.ChunkedArray) else tokens
        for part in filter(None, unit.split(UNIT_PARTS)):
            encoded = pc.dictionary_encode(values)
            values = self._encode(encoded.dictionary.cast(pa.binary()).to_pylist(), f"unit:{part}").take(encoded.indices)
        return values

    def _encode(self, values: list[bytes], domain: str) -> pa.Array:
        inner, outer = self._states(domain)

        def mac(value: bytes, new_inner=inner.copy, new_outer=outer.copy) -> bytes:
            i = new_inner()
            i.update(value)
            o = new_outer()
            o.update(i.digest())
            return o.digest()

        text = base32(np.frombuffer(b"".join(map(mac, values)), np.uint8).reshape(-1, 32)[:, :TOKEN_BYTES])
        return pa.Array.from_buffers(pa.binary(TOKEN_CHARS), len(values), [None, pa.py_buffer(text)]).cast(pa.string())


_BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", np.uint8)


def base32(data: np.ndarray) -> bytes:
    """Lower-case RFC 4648 base32 of each row of an (n, 5m) byte array, vectorized (the standard
    library's b32encode is a Python loop): every 5 bytes become 8 characters."""
    groups = np.zeros((data.size // 5, 8), np.uint8)
    groups[:, 3:] = data.reshape(-1, 5)
    bits = groups.view(">u8").ravel()
    out = np.empty((len(bits), 8), np.uint8)
    for i in range(8):
        out[:, i] = (bits >> np.uint64(35 - 5 * i)) & np.uint64(31)
    return _BASE32[out].tobytes()


_DECODE = np.zeros(256, np.int64)
_DECODE[_BASE32] = np.arange(32)
ID_CHARS = 12  # 60 bits: a token's integer id


def token_ids(tokens: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A 60-bit integer per token (its first 12 base32 characters), null for null: what counting
    distinct people needs, in 8 bytes instead of 28. Tokens are uniformly random, so two people
    share an id with probability ~n^2/2^61 (1e-5 for 5 million); if they did, they would count as
    one, which makes k-anonymity checks stricter, never looser."""
    tokens = tokens.combine_chunks() if isinstance(tokens, pa.ChunkedArray) else tokens
    heads = pc.utf8_slice_codeunits(pc.fill_null(tokens, "a" * ID_CHARS), 0, ID_CHARS).cast(pa.binary(ID_CHARS))
    chars = np.frombuffer(heads.buffers()[1], np.uint8, count=len(tokens) * ID_CHARS, offset=heads.offset * ID_CHARS)
    digits = _DECODE[chars.reshape(-1, ID_CHARS)]
    ids = (digits << (5 * np.arange(ID_CHARS - 1, -1, -1))).sum(axis=1)
    return pa.array(ids, pa.int64(), mask=tokens.is_null().to_numpy(zero_copy_only=False))

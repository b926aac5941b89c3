"""Keyed pseudonyms: HMAC-SHA256 over a domain and the normalized value.

A token is the first 128 bits of HMAC-SHA256(key, domain || 0x00 || value) in lower-case base32
without padding (26 characters of a-z and 2-7). That alphabet has no 0, 1, 8 or 9, so no token
can ever look like a mobile number or a resident ID to the output scan. The domain keeps tokens of different kinds apart: the same string as a
customer document and as a staff number gives unrelated tokens. Without the key a token cannot
be recomputed from a guessed value, which is why plain (unkeyed) hashes are never produced: there
are only ~10^10 mainland mobile numbers to try.

Each distinct value is hashed once, then the tokens are mapped back through the dictionary
indices, so the Python loop runs over distinct values only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pyarrow as pa
import pyarrow.compute as pc

from transforms.text import NORMALIZERS, Column

MIN_KEY_BYTES = 32
TOKEN_BYTES = 16


class PseudonymKeyError(ValueError):
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

    def token(self, value: str, domain: str) -> str:
        mac = hmac.digest(self._key, domain.encode() + b"\x00" + value.encode(), "sha256")
        return _text(mac)

    def tokens(self, column: Column, domain: str, normalize: str = "upper") -> pa.Array:
        """Tokens for a whole column; nulls (and values that normalize to nothing) stay null."""
        values = NORMALIZERS[normalize](column)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        encoded = pc.dictionary_encode(values)
        prefix = domain.encode() + b"\x00"
        key = self._key
        digests = [_text(hmac.digest(key, prefix + v.encode(), "sha256")) for v in encoded.dictionary.to_pylist()]
        return pa.array(digests, pa.string()).take(encoded.indices)


def _text(mac: bytes) -> str:
    return base64.b32encode(mac[:TOKEN_BYTES]).rstrip(b"=").decode("ascii").lower()

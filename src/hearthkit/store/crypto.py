"""AES-GCM primitives of the encrypted store: sealed objects and wrapped data keys."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearthkit.errors import HearthError

MAGIC = b"HKS1"  # hearthkit sealed object, format 1
KEY_ID_LEN = 16  # bytes of a data key's id, stored in every object header
NONCE_LEN = 12  # AES-GCM standard nonce
TAG_LEN = 16
HEADER_LEN = len(MAGIC) + KEY_ID_LEN + NONCE_LEN


class DecryptError(HearthError):
    """A sealed object or wrapped key does not open with the key given (wrong key or tampered)."""


def new_key() -> bytes:
    """A fresh random 256-bit AES key."""
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, key_id: bytes, digest: str, plaintext: bytes) -> bytes:
    """Encrypt PLAINTEXT for store address DIGEST: MAGIC | key id | nonce | ciphertext+tag."""
    nonce = os.urandom(NONCE_LEN)
    header = MAGIC + key_id + nonce
    # The header and the plaintext's address are authenticated: an object cannot be moved or relabelled.
    return header + AESGCM(key).encrypt(nonce, plaintext, header + digest.encode())


def object_key_id(blob: bytes) -> bytes:
    """The data key id a sealed object was encrypted with."""
    if len(blob) < HEADER_LEN + TAG_LEN or blob[: len(MAGIC)] != MAGIC:
        raise DecryptError("not a sealed hearthkit object (bad header)")
    return blob[len(MAGIC): len(MAGIC) + KEY_ID_LEN]


def unseal(key: bytes | AESGCM, digest: str, blob: bytes) -> bytes:
    """Decrypt a sealed object stored at DIGEST; fail if the key is wrong or a byte changed.

    KEY may be a ready AESGCM cipher (the store keeps one per data key: building it costs a key schedule)."""
    object_key_id(blob)
    header = blob[:HEADER_LEN]
    nonce = header[len(MAGIC) + KEY_ID_LEN:]
    body = memoryview(blob)[HEADER_LEN:]  # no copy of the ciphertext
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    try:
        return aead.decrypt(nonce, body, header + digest.encode())
    except InvalidTag:
        raise DecryptError(f"sealed object {digest[:12]}… does not open: wrong key or tampered bytes") from None


def wrap(kek: bytes, data_key: bytes, context: str) -> tuple[bytes, bytes]:
    """Encrypt DATA_KEY under the key-encryption key KEK, bound to CONTEXT; return (nonce, wrapped)."""
    nonce = os.urandom(NONCE_LEN)
    return nonce, AESGCM(kek).encrypt(nonce, data_key, context.encode())


def unwrap(kek: bytes, nonce: bytes, wrapped: bytes, context: str) -> bytes:
    """Recover a data key wrapped by `wrap`; fail with a readable reason on the wrong key."""
    try:
        return AESGCM(kek).decrypt(nonce, wrapped, context.encode())
    except InvalidTag:
        raise DecryptError(f"data key for {context} does not unwrap with the community key on file") from None

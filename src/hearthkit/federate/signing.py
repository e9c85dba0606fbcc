"""Per-site authentication of updates: each site signs what it sends with its own Ed25519 key; the coordinator
verifies against the public key its config lists for that site name.

What is signed: the federation, the round, the coordinator's fresh challenge (nonce) of that round, the site
name, SHA-256 of every tensor's bytes exactly as Flower carries them, the sample count and every reported field
(manifest hash, request id, status, ...). A different key, an edited byte, or a reply to another round's challenge
does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hearthkit.errors import HearthError

KEY_FILE = "federation-site.ed25519"  # in the workspace's key folder, beside its community keys
PREFIX = "ed25519:"
SIGNATURE = "signature"  # the reply's metrics field holding the signature


def site_key(key_dir: Path, create: bool = True) -> Ed25519PrivateKey:
    """This workspace's site signing key (made on first use, readable by its owner only)."""
    path = Path(key_dir) / KEY_FILE
    if not path.is_file():
        if not create:
            raise HearthError(f"no site signing key in {key_dir}; `hearth federate site-key` makes one")
        Path(key_dir).mkdir(parents=True, exist_ok=True)
        os.chmod(key_dir, 0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise HearthError(f"{path}: not a readable Ed25519 private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HearthError(f"{path}: not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PrivateKey) -> str:
    """'ed25519:BASE64' of KEY's public half: what the coordinator's config lists for the site."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: str, where: str) -> Ed25519PublicKey:
    """The public key in TEXT ('ed25519:BASE64'); ValueError naming WHERE when it is not one."""
    try:
        if not text.startswith(PREFIX):
            raise ValueError
        raw = base64.b64decode(text[len(PREFIX):], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError(f"{where}: not an Ed25519 public key ('ed25519:' and 44 base64 characters, as `hearth "
                         "federate site-key` prints it)") from None


def tensors_digest(tensors: list[bytes]) -> str:
    """SHA-256 over the serialised tensors as Flower carries them (each length-prefixed)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(len(t).to_bytes(8, "big"))
        h.update(t)
    return h.hexdigest()


def message(federation: str, round_: int, nonce: str, tensors: list[bytes], num_examples: int,
            metrics: dict) -> bytes:
    """The bytes a site signs and the coordinator verifies (canonical JSON)."""
    fields = {k: v for k, v in metrics.items() if k != SIGNATURE}
    return json.dumps({"federation": federation, "round": round_, "nonce": nonce,
                       "tensors": tensors_digest(tensors), "num_examples": num_examples, "metrics": fields},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def sign(key: Ed25519PrivateKey, federation: str, round_: int, nonce: str, tensors: list[bytes],
         num_examples: int, metrics: dict) -> str:
    """The signature (hex) of one reply."""
    return key.sign(message(federation, round_, nonce, tensors, num_examples, metrics)).hex()


def verify(public_key: Ed25519PublicKey, federation: str, round_: int, nonce: str, tensors: list[bytes],
           num_examples: int, metrics: dict) -> str | None:
    """Why the reply's signature does not hold (missing, malformed, not this key's, not this message), or None."""
    sig = metrics.get(SIGNATURE)
    if not nonce:
        return "no challenge was sent for this round by this coordinator, so no reply to it can be fresh"
    if not sig:
        return "it is not signed (every update must carry its site's signature)"
    try:
        public_key.verify(bytes.fromhex(str(sig)), message(federation, round_, nonce, tensors, num_examples, metrics))
    except (ValueError, InvalidSignature):
        if str(metrics.get("nonce", nonce)) != nonce:
            return "it answers another round's challenge (a replayed update)"
        return "its signature does not verify with the site's public key (signed by another key, or altered)"
    return None

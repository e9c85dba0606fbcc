"""An item's words as a store object: how sealed collections keep transcripts and translations off the catalog.

The audio of a sealed collection is ciphertext in the store; its transcript, translations and dependent-tier
annotations are the same community's words, so they are sealed the same way. The catalog row keeps no text
(`Item.text` is empty) and `Item.meta["sealed_text"]` names one sealed JSON object per item, which the governed
reader opens for a run. The object carries the item's own name, so two items with the same words are two objects
(erasing one item's words never takes another's).
"""

from __future__ import annotations

import json

SEALED_TEXT = "sealed_text"  # Item.meta key: SHA-256 of the item's sealed text object
# Meta entries that are the item's words (the previous_* ones: what a correction replaced, kept, never dropped).
PRIVATE_META = ("translations", "tiers", "previous_text", "previous_translations", "corrections")


def pack(item: str, text: str | None, meta: dict) -> tuple[bytes, dict]:
    """(the text object of ITEM: its transcript and private meta entries, META without those entries)."""
    words = {"item": item, "text": text, **{k: meta[k] for k in PRIVATE_META if k in meta}}
    rest = {k: v for k, v in meta.items() if k not in PRIVATE_META}
    return json.dumps(words, ensure_ascii=False, sort_keys=True).encode("utf-8"), rest


def unpack(data: bytes) -> dict:
    """The words of a text object: {"item", "text", and any of PRIVATE_META}."""
    return json.loads(data.decode("utf-8"))


def has_words(text: str | None, meta: dict | None) -> bool:
    """Whether a catalog row holds words in the clear (a transcript or a private meta entry)."""
    return text is not None or any(k in (meta or {}) for k in PRIVATE_META)


def objects_of(content_hash: str, meta: dict | None) -> list[str]:
    """The store objects an item owns: its content, and its sealed text object when it has one."""
    words = (meta or {}).get(SEALED_TEXT)
    return [content_hash, words] if words else [content_hash]

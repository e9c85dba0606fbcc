"""Deterministic train/test splits of manifest entries: by sentence, or speaker-disjoint."""

from __future__ import annotations

import hashlib
from collections.abc import Callable


def _bucket(key: str, seed: int) -> float:
    """A stable number in [0, 1) for KEY (independent of Python's hash randomisation)."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_entries(entries: list[dict], test_fraction: float, by: str = "text", seed: int = 0,
                  test_values: list[str] | None = None,
                  text_of: Callable[[dict], str] | None = None) -> tuple[list[dict], list[dict]]:
    """Split ENTRIES so that no value of field BY (e.g. the sentence, or the speaker) is on both sides.

    TEXT_OF reads a transcript the manifest does not carry (a sealed collection's), for splits by text.
    """
    train, test = [], []
    for e in entries:
        value = e.get(by) if by in e else (e.get("meta") or {}).get(by)
        if value is None and by == "text" and text_of is not None:
            value = text_of(e)
        key = str(value)
        if test_values is not None:
            held = key in test_values
        else:
            held = _bucket(key, seed) < test_fraction
        (test if held else train).append(e)
    return train, test

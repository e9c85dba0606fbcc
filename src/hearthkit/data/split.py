"""Deterministic train/test splits of manifest entries: by sentence, or speaker-disjoint."""

from __future__ import annotations

import hashlib


def _bucket(key: str, seed: int) -> float:
    """A stable number in [0, 1) for KEY (independent of Python's hash randomisation)."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_entries(entries: list[dict], test_fraction: float, by: str = "text", seed: int = 0,
                  test_values: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Split ENTRIES so that no value of field BY (e.g. the sentence, or the speaker) is on both sides."""
    train, test = [], []
    for e in entries:
        key = str(e.get(by) if by in e else (e.get("meta") or {}).get(by))
        if test_values is not None:
            held = key in test_values
        else:
            held = _bucket(key, seed) < test_fraction
        (test if held else train).append(e)
    return train, test

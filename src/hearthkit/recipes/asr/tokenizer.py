"""Character units for CTC, built from training transcripts only."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path


class CharTokenizer:
    """Characters <-> ids; id 0 is the CTC blank; unknown characters are dropped and counted."""

    def __init__(self, chars: list[str]):
        self.chars = chars
        self.index = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def fit(cls, texts: list[str]) -> CharTokenizer:
        return cls(sorted({c for t in texts for c in cls.normalise(t)}))

    @staticmethod
    def normalise(text: str) -> str:
        """Lower-case NFC text with punctuation removed: what the model learns to write."""
        text = unicodedata.normalize("NFC", text.lower())
        kept = "".join(c for c in text if c.isalnum() or c in " '-")
        return " ".join(kept.split())

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in self.normalise(text) if c in self.index]

    def decode(self, ids: list[int]) -> str:
        """Collapse repeats and drop blanks (CTC greedy output to text)."""
        out, prev = [], 0
        for i in ids:
            if i != prev and i != 0:
                out.append(self.chars[i - 1])
            prev = i
        return "".join(out).strip()

    def __len__(self) -> int:
        return len(self.chars)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"chars": self.chars}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> CharTokenizer:
        return cls(json.loads(path.read_text(encoding="utf-8"))["chars"])

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

    def piece(self, i: int) -> str:
        """The text of unit I (for language-model scoring during beam search)."""
        return self.chars[i - 1]


class PieceTokenizer(CharTokenizer):
    """Sentencepiece units (unigram) fitted on training transcripts; id 0 stays the CTC blank."""

    def __init__(self, model_bytes: bytes):
        import sentencepiece as spm

        self.model_bytes = model_bytes
        self.sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        self.chars = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]

    @classmethod
    def fit(cls, texts: list[str], vocab_size: int = 200) -> PieceTokenizer:  # type: ignore[override]
        import io

        import sentencepiece as spm

        lines = [cls.normalise(t) for t in texts if cls.normalise(t)]
        buf = io.BytesIO()
        # The vocabulary cannot outgrow what the text supports; sentencepiece refuses, so shrink and retry.
        size = vocab_size
        while True:
            try:
                spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=size,
                                               model_type="unigram", character_coverage=1.0, bos_id=-1, eos_id=-1,
                                               unk_id=0, minloglevel=2, hard_vocab_limit=False)
                break
            except RuntimeError:
                if size <= 8:
                    raise
                size = max(8, size // 2)
                buf = io.BytesIO()
        return cls(buf.getvalue())

    def encode(self, text: str) -> list[int]:
        # sentencepiece id 0 is <unk>; shift by one so that 0 is the blank, and drop unknowns.
        return [i + 1 for i in self.sp.encode(self.normalise(text)) if i != 0]

    def decode(self, ids: list[int]) -> str:
        out, prev = [], 0
        for i in ids:
            if i != prev and i != 0:
                out.append(i - 1)
            prev = i
        return self.sp.decode(out).strip()

    def piece(self, i: int) -> str:
        return self.chars[i - 1].replace("\u2581", " ")

    def save(self, path: Path) -> None:
        path.with_suffix(".model").write_bytes(self.model_bytes)
        path.write_text(json.dumps({"sentencepiece": path.with_suffix(".model").name}), encoding="utf-8")


def load_tokenizer(path: Path) -> CharTokenizer:
    """The character or sentencepiece tokenizer saved at PATH."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    if "sentencepiece" in spec:
        return PieceTokenizer((path.parent / spec["sentencepiece"]).read_bytes())
    return CharTokenizer(spec["chars"])

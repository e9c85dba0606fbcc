"""A shared sentencepiece vocabulary fitted on training text only; records which items it saw."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import sentencepiece as spm

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class SentencePieceVocab:
    """sentencepiece model with pad=0, unk=1, bos=2, eos=3 and optional user symbols (language tags)."""

    def __init__(self, model_proto: bytes):
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def fit(cls, texts: list[str], vocab_size: int, model_type: str = "unigram",
            symbols: list[str] | None = None) -> SentencePieceVocab:
        """Train on TEXTS only (in memory; nothing else is read); vocab_size is an upper bound on tiny data."""
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, hard_vocab_limit=False,
            user_defined_symbols=symbols or [], normalization_rule_name="identity", minloglevel=2,
            num_threads=1, input_sentence_size=2_000_000, shuffle_input_sentence=False)
        return cls(buf.getvalue())

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str, alpha: float = 0.0) -> list[int]:
        """Piece ids of TEXT: its best segmentation, or with ALPHA > 0 one sampled afresh (subword regularisation:
        unigram sampling with smoothing ALPHA over all segmentations, BPE-dropout with rate ALPHA for bpe)."""
        if alpha > 0:
            return self.sp.encode(text, enable_sampling=True, alpha=alpha, nbest_size=-1)
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i > EOS])

    def piece_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)

    def pieces(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(len(self))]

    def save(self, folder: Path, sources: list[str]) -> None:
        """Write the model and the content hashes of the items it was fitted on (an audit of its inputs)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spm.model").write_bytes(self.proto)
        (folder / "spm_sources.json").write_text(json.dumps(
            {"items": len(sources), "content_hashes": sorted(set(sources)),
             "model_sha256": hashlib.sha256(self.proto).hexdigest()}))

    @classmethod
    def load(cls, folder: Path) -> SentencePieceVocab:
        return cls((folder / "spm.model").read_bytes())

    @classmethod
    def inherit(cls, parent_prep: Path, out: Path) -> SentencePieceVocab:
        """Keep a parent model's vocabulary in OUT; its record of sources stays the parent's, marked as inherited."""
        vocab = cls.load(parent_prep)
        out.mkdir(parents=True, exist_ok=True)
        (out / "spm.model").write_bytes(vocab.proto)
        inherit_sources(parent_prep, out)
        return vocab


def inherit_sources(parent_prep: Path, out: Path) -> None:
    """Copy the parent's record of the items its units were fitted on into OUT, naming the parent model."""
    sources = json.loads((parent_prep / "spm_sources.json").read_text())
    (out / "spm_sources.json").write_text(json.dumps({**sources, "inherited_from": parent_prep.parent.name}))

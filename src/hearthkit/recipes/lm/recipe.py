"""The lm recipe: governed text items -> character or sentencepiece units -> GPT; bits per character, perplexity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.data.loader import GovernedReader
from hearthkit.errors import HearthError
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes.base import Recipe
from hearthkit.recipes.lm.model import GPT, LMConfig
from hearthkit.recipes.sentencepiece_vocab import EOS, SentencePieceVocab, inherit_sources


class CharUnits:
    """Characters of the training text; id 0 separates items (a line break), id 1 is any unseen character."""

    SEP, UNK = 0, 1

    def __init__(self, chars: list[str]):
        self.chars = chars
        self.index = {c: i + 2 for i, c in enumerate(chars)}

    @classmethod
    def fit(cls, texts: list[str]) -> CharUnits:
        return cls(sorted({c for t in texts for c in t} - {"\n"}))

    def __len__(self) -> int:
        return len(self.chars) + 2

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, self.UNK) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join("\n" if i == self.SEP else self.chars[i - 2] if i >= 2 else "\ufffd" for i in ids)

    def save(self, folder: Path) -> None:
        (folder / "chars.json").write_text(json.dumps(self.chars, ensure_ascii=False))


class PieceUnits:
    """sentencepiece subwords; the end-of-sentence id separates items."""

    SEP = EOS

    def __init__(self, vocab: SentencePieceVocab):
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(text)

    def decode(self, ids: list[int]) -> str:
        return "\n".join(self.vocab.decode(part) for part in _split(ids, self.SEP))


def _split(ids: list[int], sep: int) -> list[list[int]]:
    parts: list[list[int]] = [[]]
    for i in ids:
        if i == sep:
            parts.append([])
        else:
            parts[-1].append(i)
    return parts


def select(cfg: LMConfig, entries: list[dict]) -> list[dict]:
    """Text items of the configured language, in manifest order."""
    return [e for e in entries if e.get("kind") == "text"
            and (cfg.lang is None or (e.get("meta") or {}).get("lang") == cfg.lang)]


def read_texts(entries: list[dict], reader: GovernedReader) -> list[str]:
    return [reader.read(e["content_hash"]).decode("utf-8") for e in entries]


class StreamDataset(torch.utils.data.Dataset):
    """Windows of block_size + 1 tokens over all items joined by the separator; window i starts at i * stride."""

    def __init__(self, cfg: LMConfig, units, texts: list[str]):
        ids: list[int] = []
        for t in texts:
            ids += [units.SEP] + units.encode(t)
        if not ids:
            raise HearthError("no text to train the language model on")
        while len(ids) < cfg.block_size + 1:  # tiny data: repeat rather than fail
            ids = ids + ids
        self.stream = torch.tensor(ids)
        self.T = cfg.block_size
        self.stride = max(1, cfg.block_size // 2)
        self.n = (len(ids) - self.T - 1) // self.stride + 1

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.stream[i * self.stride: i * self.stride + self.T + 1]  # (T+1,)


class LMRecipe(Recipe):
    """Language modelling of text items, character or subword units."""

    name = "lm"
    ModelConfig = LMConfig
    metric_names = ("bpc", "ppl")

    def group_columns(self, cfg: LMConfig) -> list[str]:
        return list(cfg.group_by)

    def prepare(self, cfg: LMConfig, train_entries: list[dict], out: Path, reader: GovernedReader | None = None,
                manifest: Manifest | None = None, parent: Path | None = None) -> dict:
        if reader is None:
            raise HearthError("the lm recipe reads its training text through a governed reader")
        mine = select(cfg, train_entries)
        if not mine:
            raise HearthError(f"no text items{f' in language {cfg.lang}' if cfg.lang else ''} to train on")
        out.mkdir(parents=True, exist_ok=True)
        if parent is not None:  # continuing from a model: its embeddings are indexed by its own units, so keep them
            self.check_parent_shape(cfg, parent, ("units", "block_size", "n_layer", "n_head", "n_embd", "bias"))
            if cfg.units == "sentencepiece":
                return {"units": PieceUnits(SentencePieceVocab.inherit(parent / "prep", out))}
            units = CharUnits(json.loads((parent / "prep" / "chars.json").read_text()))
            units.save(out)
            inherit_sources(parent / "prep", out)
            return {"units": units}
        texts = read_texts(mine, reader)
        if cfg.units == "char":
            units = CharUnits.fit(texts)
            units.save(out)
            (out / "spm_sources.json").write_text(json.dumps({"items": len(mine), "content_hashes": sorted(
                {e["content_hash"] for e in mine})}))
        elif cfg.units == "sentencepiece":
            vocab = SentencePieceVocab.fit(texts, cfg.vocab_size)
            vocab.save(out, [e["content_hash"] for e in mine])
            units = PieceUnits(vocab)
        else:
            raise HearthError(f"model.units: {cfg.units!r} is not char or sentencepiece")
        return {"units": units}

    def load_prep(self, folder: Path) -> dict:
        if (folder / "chars.json").is_file():
            return {"units": CharUnits(json.loads((folder / "chars.json").read_text()))}
        return {"units": PieceUnits(SentencePieceVocab.load(folder))}

    def build_model(self, cfg: LMConfig, prep: dict) -> nn.Module:
        return GPT(cfg, len(prep["units"]))

    def dataset(self, cfg, prep, entries, reader, train):
        return StreamDataset(cfg, prep["units"], read_texts(select(cfg, entries), reader))

    def collate(self, batch: list[torch.Tensor]) -> dict:
        x = torch.stack(batch)  # (B, T+1)
        return {"x": x[:, :-1], "y": x[:, 1:]}

    def loss(self, model, batch):
        logits = model(batch["x"])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten())
        return loss, {"samples": float(batch["x"].size(0)), "tokens": float(batch["y"].numel())}

    @torch.no_grad()
    def token_log_probs(self, model: GPT, prep: dict, texts: list[str]) -> list[torch.Tensor]:
        """Natural-log probability of each token of each text and of its closing separator, given what precedes.

        A text longer than the context is scored in block_size pieces; each piece sees only its own tokens.
        """
        model.eval()
        units = prep["units"]
        T = model.cfg.block_size
        out = []
        for text in texts:
            ids = torch.tensor([units.SEP] + units.encode(text) + [units.SEP])
            pieces = []
            for p0 in range(1, len(ids), T):  # targets ids[p0 : p0+T], inputs the token before each
                tgt = ids[p0: p0 + T]
                inp = ids[p0 - 1: p0 - 1 + len(tgt)]
                logp = F.log_softmax(model(inp[None]).float(), dim=-1)[0]  # (n, V)
                pieces.append(logp.gather(1, tgt[:, None])[:, 0])  # (n,)
            out.append(torch.cat(pieces))
        return out

    def evaluate(self, model, cfg, prep, entries, reader):
        mine = select(cfg, entries)
        texts = read_texts(mine, reader)
        lps = self.token_log_probs(model, prep, texts)
        records = []
        for e, text, lp in zip(mine, texts, lps, strict=True):
            meta = e.get("meta") or {}
            records.append({"item_id": e["item_id"], "external_id": e["external_id"],
                            **{k: meta.get(k) for k in ("lang", "domain", "variant", "document") if k in meta},
                            "bits": float(-lp.sum()) / math.log(2), "chars": len(text) + 1, "tokens": len(lp)})
        return records

    def generate(self, model: GPT, prep: dict, prompt: str, new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = 40, seed: int = 0) -> str:
        """A continuation of PROMPT (sampled; SEED makes it repeatable)."""
        torch.manual_seed(seed)
        model.eval()
        units = prep["units"]
        idx = torch.tensor([[units.SEP] + units.encode(prompt)])
        out = model.generate(idx, new_tokens, temperature, top_k)
        return units.decode(out[0, 1:].tolist())


class LMScorer:
    """Log-probabilities of texts under a trained lm model, for shallow fusion in decoders (e.g. asr)."""

    def __init__(self, model: GPT, prep: dict):
        self.model, self.prep = model, prep

    def log_probs(self, texts: list[str]) -> list[list[float]]:
        """Natural-log probability of each unit (characters for char models) and of the end of each text."""
        return [lp.tolist() for lp in RECIPE.token_log_probs(self.model, self.prep, texts)]

    def score(self, texts: list[str]) -> list[float]:
        """Total natural-log probability of each whole text (ending included)."""
        return [float(sum(lp)) for lp in self.log_probs(texts)]


RECIPE = LMRecipe()

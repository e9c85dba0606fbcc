"""The asr recipe: governed audio -> log-mel -> CTC; greedy decoding; CER/WER per item."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.data.features import log_mel
from hearthkit.data.loader import GovernedReader
from hearthkit.ingest.audio import decode
from hearthkit.recipes.asr.model import ASRConfig, CTCModel
from hearthkit.recipes.asr.tokenizer import CharTokenizer
from hearthkit.recipes.base import Recipe

SAMPLE_RATE = 16000


class AudioDataset(torch.utils.data.Dataset):
    """(features, token ids) per manifest entry; features are computed once per process and kept."""

    def __init__(self, cfg: ASRConfig, tok: CharTokenizer, entries: list[dict], reader: GovernedReader,
                 train: bool):
        self.cfg, self.tok, self.entries, self.reader, self.train = cfg, tok, entries, reader, train
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def features(self, i: int) -> torch.Tensor:
        if i not in self._cache:
            wav = decode(self.reader.read(self.entries[i]["content_hash"]), SAMPLE_RATE)
            self._cache[i] = log_mel(torch.from_numpy(wav), SAMPLE_RATE, self.cfg.n_mels)
        return self._cache[i]

    def __getitem__(self, i: int) -> dict:
        feats = self.features(i)
        if self.train and self.cfg.spec_augment:
            feats = spec_augment(feats)
        return {"feats": feats, "tokens": torch.tensor(self.tok.encode(self.entries[i]["text"] or ""))}


def spec_augment(feats: torch.Tensor, n_freq: int = 2, max_f: int = 10, n_time: int = 2,
                 max_t: int = 20) -> torch.Tensor:
    """Zero random frequency and time bands (SpecAugment without time warping)."""
    feats = feats.clone()
    T, Fdim = feats.shape
    for _ in range(n_freq):
        w = int(torch.randint(0, max_f + 1, ()))
        f0 = int(torch.randint(0, max(1, Fdim - w), ()))
        feats[:, f0:f0 + w] = 0
    for _ in range(n_time):
        w = int(torch.randint(0, min(max_t, T // 5) + 1, ()))
        t0 = int(torch.randint(0, max(1, T - w), ()))
        feats[t0:t0 + w] = 0
    return feats


class ASRRecipe(Recipe):
    """CTC speech recognition on characters."""

    name = "asr"
    ModelConfig = ASRConfig
    metric_names = ("cer", "wer")

    def prepare(self, cfg: ASRConfig, train_entries: list[dict], out: Path, reader=None, manifest=None) -> dict:
        tok = CharTokenizer.fit([e["text"] or "" for e in train_entries])
        out.mkdir(parents=True, exist_ok=True)
        tok.save(out / "tokenizer.json")
        return {"tokenizer": tok}

    def load_prep(self, folder: Path) -> dict:
        return {"tokenizer": CharTokenizer.load(folder / "tokenizer.json")}

    def build_model(self, cfg: ASRConfig, prep: dict) -> nn.Module:
        return CTCModel(cfg, len(prep["tokenizer"]))

    def dataset(self, cfg, prep, entries, reader, train):
        return AudioDataset(cfg, prep["tokenizer"], entries, reader, train)

    def collate(self, batch: list[dict]) -> dict:
        feats = [b["feats"] for b in batch]
        tokens = [b["tokens"] for b in batch]
        return {
            "feats": nn.utils.rnn.pad_sequence(feats, batch_first=True),  # (B, T, n_mels)
            "feat_lens": torch.tensor([len(f) for f in feats]),
            "tokens": torch.cat(tokens),
            "token_lens": torch.tensor([len(t) for t in tokens]),
        }

    def loss(self, model, batch):
        logp, out_lens = model(batch["feats"], batch["feat_lens"])
        loss = F.ctc_loss(logp.transpose(0, 1), batch["tokens"], out_lens, batch["token_lens"],
                          blank=0, reduction="mean", zero_infinity=True)
        audio_s = float(batch["feat_lens"].sum()) / 100.0  # 10 ms hop
        return loss, {"samples": float(len(batch["feat_lens"])), "audio_seconds": audio_s}

    @torch.no_grad()
    def transcribe(self, model: nn.Module, prep: dict, feats: list[torch.Tensor], batch_size: int = 16) -> list[str]:
        """Greedy CTC transcripts of feature matrices."""
        model.eval()
        tok: CharTokenizer = prep["tokenizer"]
        out: list[str] = []
        for i in range(0, len(feats), batch_size):
            chunk = feats[i:i + batch_size]
            x = nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            logp, lens = model(x, torch.tensor([len(f) for f in chunk]))
            best = logp.argmax(-1)
            out += [tok.decode(best[j, : lens[j]].tolist()) for j in range(len(chunk))]
        return out

    def evaluate(self, model, cfg, prep, entries, reader):
        ds = AudioDataset(cfg, prep["tokenizer"], entries, reader, train=False)
        hyps = self.transcribe(model, prep, [ds.features(i) for i in range(len(ds))])
        tok: CharTokenizer = prep["tokenizer"]
        return [{**{k: e.get(k) for k in ("item_id", "external_id", "speaker", "dialect", "gender")},
                 **(e.get("meta") or {}), "reference": tok.normalise(e["text"] or ""), "hypothesis": h}
                for e, h in zip(entries, hyps, strict=True)]


RECIPE = ASRRecipe()

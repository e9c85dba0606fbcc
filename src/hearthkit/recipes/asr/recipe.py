"""The asr recipe: governed audio -> (speed perturbation) -> log-mel -> (SpecAugment) -> CTC; CER/WER per item.

Feature caching: decoded waveforms and the features of each speed factor drawn are kept in each worker's
memory only (SpecAugment masks a copy each time); nothing derived from an item is written to disk, so
restricted (encrypted) items never leave the store as plaintext features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.data.features import log_mel
from hearthkit.data.loader import GovernedReader
from hearthkit.errors import HearthError
from hearthkit.ingest.audio import decode, resample
from hearthkit.recipes import hf
from hearthkit.recipes.asr import decode as ctc
from hearthkit.recipes.asr import hf_model
from hearthkit.recipes.asr.model import ASRConfig, AugmentConfig, build
from hearthkit.recipes.asr.ngram import CharNgramLM
from hearthkit.recipes.asr.tokenizer import CharTokenizer, PieceTokenizer, load_tokenizer
from hearthkit.recipes.base import Recipe

SAMPLE_RATE = 16000


def speed_perturb(wav: np.ndarray, factor: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Play WAV FACTOR times faster (resample as if recorded at sr*factor): tempo and pitch change together."""
    if factor == 1.0:
        return wav
    return resample(wav, int(round(sr * factor)), sr)


def spec_augment(feats: torch.Tensor, aug: AugmentConfig | None = None) -> torch.Tensor:
    """Zero random frequency bands and time spans of FEATS (T, F) (SpecAugment without time warping)."""
    aug = aug or AugmentConfig()
    feats = feats.clone()
    T, Fdim = feats.shape
    for _ in range(aug.freq_masks):
        w = int(torch.randint(0, aug.freq_width + 1, ()))
        f0 = int(torch.randint(0, max(1, Fdim - w), ()))
        feats[:, f0:f0 + w] = 0
    max_t = int(aug.time_width * T)
    for _ in range(aug.time_masks):
        w = int(torch.randint(0, max_t + 1, ()))
        t0 = int(torch.randint(0, max(1, T - w), ()))
        feats[t0:t0 + w] = 0
    return feats


class AudioDataset(torch.utils.data.Dataset):
    """(features, unit ids) per manifest entry; waveforms are read once through the governed reader and kept.

    FEATURIZE turns a waveform into the model's input (default: log-mel); a base model brings its own (the
    normalised waveform for wav2vec2, Whisper's log-mel) and masks its input itself, so the log-mel SpecAugment
    here is skipped. ENCODE (a Whisper tokenizer's) makes the `labels` a sequence-to-sequence model learns from.
    """

    def __init__(self, cfg: ASRConfig, tok: CharTokenizer, entries: list[dict], reader: GovernedReader,
                 train: bool, featurize=None, encode=None):
        self.cfg, self.tok, self.entries, self.reader, self.train = cfg, tok, entries, reader, train
        self.featurize = featurize or (lambda wav: log_mel(torch.from_numpy(np.ascontiguousarray(wav)), SAMPLE_RATE,
                                                           cfg.n_mels))
        self.own_augment = featurize is None
        self.encode = encode
        self._wavs: dict[int, np.ndarray] = {}
        self._texts: dict[int, str] = {}
        self._feats: dict[int | tuple[int, float], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> list[float]:
        """Seconds of audio per example (for length-bucketed batches)."""
        return [float(e.get("duration_s") or 0.0) for e in self.entries]

    def text(self, i: int) -> str:
        """Transcript of example I (a sealed collection's comes from its own sealed object, kept in memory)."""
        if i not in self._texts:
            self._texts[i] = self.reader.text(self.entries[i])
        return self._texts[i]

    def waveform(self, i: int) -> np.ndarray:
        if i not in self._wavs:
            self._wavs[i] = decode(self.reader.read(self.entries[i]["content_hash"]), SAMPLE_RATE)
        return self._wavs[i]

    def features(self, i: int) -> torch.Tensor:
        """Unaugmented features (kept: they are used every epoch when speed perturbation draws 1.0)."""
        if i not in self._feats:
            self._feats[i] = self.featurize(self.waveform(i))
        return self._feats[i]

    def __getitem__(self, i: int) -> dict:
        aug = self.cfg.augment
        factor = 1.0
        if self.train and self.cfg.spec_augment and len(aug.speed) > 1:
            factor = aug.speed[int(torch.randint(0, len(aug.speed), ()))]
        if factor == 1.0:
            feats = self.features(i)
        elif (i, factor) in self._feats:
            feats = self._feats[(i, factor)]
        else:  # a few speed factors per item: their features are kept like the unperturbed ones
            wav = speed_perturb(self.waveform(i), factor)
            feats = self.featurize(wav)
            self._feats[(i, factor)] = feats
        if self.train and self.cfg.spec_augment and self.own_augment:
            feats = spec_augment(feats, aug)
        if self.encode is not None:
            return {"feats": feats, "labels": torch.tensor(self.encode(self.tok.normalise(self.text(i))))}
        return {"feats": feats, "tokens": torch.tensor(self.tok.encode(self.text(i)))}


def load_scorer(cfg: ASRConfig, prep: dict):
    """The language model for shallow fusion that CFG asks for, or None."""
    lm = cfg.decode.lm
    if lm.kind == "ngram":
        # The n-gram is fitted on the training transcripts when the model is trained, so a decoder override
        # (`hearth eval --set decode.lm...`) can lower its order but not raise it or add one.
        fitted = prep.get("lm")
        if fitted is None:
            raise HearthError("model.decode.lm.kind ngram: this model was trained without a character n-gram; "
                              "retrain it with decode.lm.kind: ngram to decode with one")
        if lm.order > fitted.order:
            raise HearthError(f"model.decode.lm.order {lm.order}: this model's n-gram was fitted with order "
                              f"{fitted.order}; use {fitted.order} or less, or retrain with the higher order")
        return fitted.with_order(lm.order)
    if lm.kind == "plugin":
        factory = ctc.scorer_factory(lm.plugin or "")
        if factory is None:
            raise HearthError(f"model.decode.lm.plugin {lm.plugin!r} is not registered; known: "
                              f"{', '.join(sorted({*ctc.SCORERS, *ctc.BUILTIN}))}")
        if not lm.path:
            raise HearthError("model.decode.lm.path is missing: name the lm model to fuse (e.g. nah-lm)")
        return factory(Path(lm.path))
    return None


class ASRRecipe(Recipe):
    """CTC speech recognition on characters (or sentencepiece units)."""

    name = "asr"
    ModelConfig = ASRConfig
    metric_names = ("cer", "wer")

    def prepare(self, cfg: ASRConfig, train_entries: list[dict], out: Path, reader=None, manifest=None,
                parent=None) -> dict:
        if cfg.base:  # the registered base (hash-checked): its identity and config files go into prep
            ref = hf.run_base(cfg.base, out)
            hf.save_base(ref, out)
            arch = hf_model.speech_arch(ref.architecture, ref.name)
            if cfg.arch in ("hf_ctc", "whisper") and cfg.arch != arch:
                raise HearthError(f"model.arch {cfg.arch}: base {ref.name} is a {ref.architecture} model; set "
                                  f"arch: {arch}, or leave arch out")
            if arch == "whisper":
                if cfg.decode.beam > 1 or cfg.decode.lm.kind != "none":
                    raise HearthError("model.decode: a Whisper model decodes greedily here (beam search and n-gram "
                                      "fusion are for CTC models); set decode.beam: 1 and decode.lm.kind: none")
                hf_model.prepare_whisper(cfg, out)
        if cfg.init_from:  # fail at planning, in one line, rather than inside the workers
            from hearthkit.recipes.asr.transfer import check_parent

            check_parent(cfg, Path(cfg.init_from))
        texts = [reader.text(e) if reader is not None else e["text"] or "" for e in train_entries]
        tok = PieceTokenizer.fit(texts, cfg.sp_vocab) if cfg.units == "sentencepiece" else CharTokenizer.fit(texts)
        out.mkdir(parents=True, exist_ok=True)
        tok.save(out / "tokenizer.json")
        prep: dict = {"tokenizer": tok}
        if cfg.decode.lm.kind == "ngram":
            prep["lm"] = CharNgramLM.fit([tok.normalise(t) for t in texts], cfg.decode.lm.order)
            prep["lm"].save(out / "lm.json")
        return prep

    def load_prep(self, folder: Path) -> dict:
        prep: dict = {"tokenizer": load_tokenizer(folder / "tokenizer.json")}
        if (folder / "lm.json").is_file():
            prep["lm"] = CharNgramLM.load(folder / "lm.json")
        info = hf.load_base_info(folder)
        if info is not None:  # fine-tuned from a registered base
            prep.update(base=info, folder=folder, arch="whisper" if info.get("architecture") == "whisper" else "hf_ctc")
            processor = folder / hf.BASE_CONFIG / "preprocessor_config.json"
            prep["processor"] = json.loads(processor.read_text(encoding="utf-8")) if processor.is_file() else {}
            if prep["arch"] == "whisper":
                prep["hf_tokenizer"] = hf_model.whisper_tokenizer(folder / hf_model.WHISPER_TOKENIZER)
                prep["hf_config_positions"] = hf.base_config(folder).max_target_positions
        return prep

    def build_model(self, cfg: ASRConfig, prep: dict) -> nn.Module:
        if "base" not in prep:
            return build(cfg, len(prep["tokenizer"]))
        fresh = {**prep, "config": hf.base_config(prep["folder"])}  # the build edits the config it is given
        if prep["arch"] == "whisper":
            return hf_model.build_whisper(cfg, fresh)
        return hf_model.build_ctc(cfg, fresh, len(prep["tokenizer"]))

    def features(self, cfg: ASRConfig, prep: dict, wav: np.ndarray) -> torch.Tensor:
        """The model's input for a 16 kHz waveform (log-mel, a base model's normalised waveform or Whisper's mel)."""
        if "base" not in prep:
            return log_mel(torch.from_numpy(np.ascontiguousarray(wav)), SAMPLE_RATE, cfg.n_mels)
        return self._featurizer(cfg, prep)(wav)

    def _featurizer(self, cfg: ASRConfig, prep: dict):
        if "featurize" not in prep:  # built once per loaded model (Whisper's mel filters)
            prep["featurize"] = hf_model.featurizer(cfg, {**prep, "config": hf.base_config(prep["folder"])})
        return prep["featurize"]

    def export_hf(self, folder: Path, out: Path) -> None:
        """Write published model FOLDER as a transformers folder (config, weights with LoRA merged, processor)."""
        from hearthkit.recipes.load import load_model_dir

        _, cfg, prep, model = load_model_dir(folder, "asr")
        extra = [p for p in (folder / "prep" / hf.BASE_CONFIG).iterdir() if p.name != "config.json"]
        if prep.get("arch") == "whisper":
            extra = [p for p in extra if "token" not in p.name and p.name != "vocab.json" and p.name != "merges.txt"]
            prep["hf_tokenizer"].save_pretrained(str(out))
        hf.export_hf(model, out, extra)

    def init_from_parent(self, model: nn.Module, parent_dir: Path, prep: dict) -> str:
        """Transfer from a registered parent: its encoder, and the output rows of units both models share."""
        from hearthkit.recipes.asr.transfer import init_from_parent

        n = init_from_parent(model, model.cfg, prep["tokenizer"], parent_dir)
        return (f"initialised from {parent_dir.name}: {n['encoder_tensors']} encoder tensors, "
                f"{n['shared_units']} shared units copied, {n['new_units']} new")

    def initialise(self, model: nn.Module, cfg: ASRConfig, prep: dict) -> None:
        """Transfer: copy an earlier model's weights; output rows of shared units keep their parent's values."""
        if "base" in prep:
            hf.seed_numpy()  # transformers' SpecAugment draws its masks from numpy's global RNG
            if cfg.lora is None:  # with LoRA the build already loaded the base
                hf_model.init_from_base(model, cfg, prep)
            return
        if cfg.init_from:
            from hearthkit.recipes.asr.transfer import init_from_parent

            init_from_parent(model, cfg, prep["tokenizer"], Path(cfg.init_from))

    def dataset(self, cfg, prep, entries, reader, train):
        if "base" not in prep:
            return AudioDataset(cfg, prep["tokenizer"], entries, reader, train)
        return AudioDataset(cfg, prep["tokenizer"], entries, reader, train, self._featurizer(cfg, prep),
                            self._whisper_encoder(cfg, prep))

    def _whisper_encoder(self, cfg: ASRConfig, prep: dict):
        """Text -> Whisper decoder sequence (prompt, text, end) for a Whisper run, else None."""
        if prep.get("arch") != "whisper":
            return None
        tok = prep["hf_tokenizer"]
        prompt, eot = hf_model.prompt_ids(tok, cfg.language), tok.convert_tokens_to_ids("<|endoftext|>")
        # The decoder has max_target_positions positions: the prompt, the text and the end token must fit
        room = min(cfg.max_tokens, prep["hf_config_positions"] - len(prompt) - 1)
        return lambda text: prompt + tok(text, add_special_tokens=False).input_ids[:room] + [eot]

    def collate(self, batch: list[dict]) -> dict:
        if "labels" in batch[0]:  # Whisper: fixed-size mel windows, decoder sequences padded with IGNORE
            return {"feats": torch.stack([b["feats"] for b in batch]),
                    "feat_lens": torch.tensor([len(b["feats"]) for b in batch]),
                    "n_frames": sum(len(b["feats"]) for b in batch),
                    "labels": nn.utils.rnn.pad_sequence([b["labels"] for b in batch], batch_first=True,
                                                        padding_value=hf_model.IGNORE)}
        feats = [b["feats"] for b in batch]
        tokens = [b["tokens"] for b in batch]
        return {
            "feats": nn.utils.rnn.pad_sequence(feats, batch_first=True),  # (B, T, n_mels)
            "feat_lens": torch.tensor([len(f) for f in feats]),
            "tokens": torch.cat(tokens),
            "token_lens": torch.tensor([len(t) for t in tokens]),
            # counted here, on the host: summing feat_lens after the copy to a GPU would sync every micro-batch
            "n_frames": sum(len(f) for f in feats),
        }

    def loss(self, model, batch):
        # 10 ms log-mel frames, or samples of a raw waveform (wav2vec2-family bases); Whisper's windows are padded
        rate = SAMPLE_RATE if batch["feats"].dim() == 2 else 100.0
        if "labels" in batch:
            loss = hf_model.whisper_loss(model, batch)
        else:
            logp, out_lens = model(batch["feats"], batch["feat_lens"])
            loss = F.ctc_loss(logp.transpose(0, 1), batch["tokens"], out_lens, batch["token_lens"],
                              blank=0, reduction="mean", zero_infinity=True)
        frames = batch["n_frames"] if "n_frames" in batch else float(batch["feat_lens"].sum())
        return loss, {"samples": float(len(batch["feat_lens"])), "audio_seconds": frames / rate}

    @torch.no_grad()
    def transcribe(self, model: nn.Module, prep: dict, feats: list[torch.Tensor], batch_size: int = 16,
                   cfg: ASRConfig | None = None, progress=None) -> list[str]:
        """Transcripts of feature matrices: greedy, or beam search (with LM fusion) as CFG.decode says."""
        model.eval()
        tok: CharTokenizer = prep["tokenizer"]
        if prep.get("arch") == "whisper":
            return self._transcribe_whisper(model, prep, feats, batch_size, cfg, progress)
        dec = cfg.decode if cfg is not None else None
        scorer = load_scorer(cfg, prep) if cfg is not None and cfg.decode.beam > 1 else None
        # Sort by length so that batches carry little padding; restore the order at the end.
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
        out: dict[int, str] = {}
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            chunk = [feats[i] for i in idx]
            x = nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            logp, lens = model(x, torch.tensor([len(f) for f in chunk]))
            for j, i in enumerate(idx):
                lp = logp[j, : lens[j]]
                if dec is None or dec.beam == 1:  # greedy; a language model only acts inside a beam
                    out[i] = tok.decode(ctc.greedy(lp))
                else:
                    out[i] = ctc.prefix_beam_search(lp, tok.piece, dec.beam, scorer, dec.lm.weight,
                                                    dec.lm.bonus if scorer is not None else 0.0)
            if progress:
                progress(min(b + batch_size, len(order)), len(order))
        return [out[i] for i in range(len(feats))]

    def _transcribe_whisper(self, model, prep: dict, feats: list[torch.Tensor], batch_size: int,
                            cfg: ASRConfig | None, progress) -> list[str]:
        """Greedy Whisper transcripts (normalised like the references) of fixed-size mel windows."""
        tok, hf_tok = prep["tokenizer"], prep["hf_tokenizer"]
        max_len = cfg.max_tokens if cfg is not None else 200
        out: list[str] = []
        for b in range(0, len(feats), batch_size):
            ids = model.generate(torch.stack(feats[b:b + batch_size]), max_len)
            out += [tok.normalise(hf_tok.decode(x, skip_special_tokens=True)) for x in ids]
            if progress:
                progress(min(b + batch_size, len(feats)), len(feats))
        return out

    def evaluate(self, model, cfg, prep, entries, reader):
        ds = self.dataset(cfg, prep, entries, reader, train=False)
        hyps = self.transcribe(model, prep, [ds.features(i) for i in range(len(ds))], cfg=cfg)
        tok: CharTokenizer = prep["tokenizer"]
        return [{**(e.get("meta") or {}), **{k: e.get(k) for k in ("item_id", "external_id", "speaker", "dialect",
                                                                     "gender")},
                 "reference": tok.normalise(ds.text(i)), "hypothesis": h}
                for i, (e, h) in enumerate(zip(entries, hyps, strict=True))]


RECIPE = ASRRecipe()

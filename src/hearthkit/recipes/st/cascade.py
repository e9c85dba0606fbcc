"""The cascade (asr -> mt with n-best), and `translate_segments`: speech or transcripts -> translations with any
st model, for callers such as the oral-history workflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hearthkit.data.features import log_mel
from hearthkit.errors import HearthError
from hearthkit.recipes.st.decode import ctc_nbest, e2e_translate, expected_chrf_pick, posterior
from hearthkit.recipes.st.model import STConfig, text_config

SAMPLE_RATE = 16000


@dataclass
class Cascade:
    """An asr model (its recipe's parts) feeding an mt Seq2Seq trained on its kind of transcripts."""

    asr_recipe: object
    asr_cfg: object
    asr_prep: dict
    asr_model: nn.Module
    mt_model: nn.Module
    cfg: STConfig
    prep: dict

    @classmethod
    def from_parts(cls, asr_folder: Path, mt_model: nn.Module, cfg: STConfig, prep: dict) -> Cascade:
        """The cascade of the asr model in ASR_FOLDER and a trained st cascade model (its text side)."""
        from hearthkit.recipes.load import load_model_dir

        recipe, acfg, aprep, amodel = load_model_dir(Path(asr_folder), "asr")
        if getattr(acfg, "base", None):  # its input is not the log-mel computed here, nor its output CTC characters
            raise HearthError(f"model.init_from {asr_folder}: a cascade over an asr model fine-tuned from a "
                              "pretrained base is not supported yet; use a hearthkit-trained asr model")
        return cls(recipe, acfg, aprep, amodel, mt_model, cfg, prep)

    @torch.no_grad()
    def transcribe_nbest(self, feats: list[torch.Tensor], batch_size: int = 16) -> list[list[tuple[str, float]]]:
        """Per feature matrix, the cfg.nbest best transcripts with log scores (the asr's n-gram fused if it has one)."""
        from hearthkit.recipes.asr.recipe import load_scorer

        self.asr_model.eval()
        dec = self.asr_cfg.decode
        scorer = load_scorer(self.asr_cfg, self.asr_prep) if dec.lm.kind != "none" else None
        tok = self.asr_prep["tokenizer"]
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
        out: dict[int, list[tuple[str, float]]] = {}
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            x = nn.utils.rnn.pad_sequence([feats[i] for i in idx], batch_first=True)
            logp, lens = self.asr_model(x, torch.tensor([len(feats[i]) for i in idx]))
            for j, i in enumerate(idx):
                out[i] = ctc_nbest(logp[j, : lens[j]], tok.piece, max(self.cfg.asr_beam, self.cfg.nbest),
                                   self.cfg.nbest, scorer, dec.lm.weight if scorer else 0.0,
                                   dec.lm.bonus if scorer else 0.0) or [("", 0.0)]
        return [out[i] for i in range(len(feats))]

    def translate_text(self, texts: list[str]) -> list[str]:
        """Translations of transcripts by the text side (beam search, MBR when its config asks)."""
        from hearthkit.recipes.mt.recipe import RECIPE as MT

        return MT.translate(self.mt_model, text_config(self.cfg), self.prep, texts, self.cfg.target)

    def translate_audio(self, feats: list[torch.Tensor], return_transcripts: bool = False):
        """Translations of feature matrices: each of the n-best transcripts translated, the expected-chrF best kept.

        With RETURN_TRANSCRIPTS, also the best transcript of each (to score the asr side of the cascade).
        """
        nbest = self.transcribe_nbest(feats)
        flat = [t for hyps in nbest for t, _ in hyps]
        done = iter(self.translate_text(flat))
        out = []
        for hyps in nbest:
            cands = [next(done) for _ in hyps]
            out.append(cands[expected_chrf_pick(cands, posterior([s for _, s in hyps]))])
        if return_transcripts:
            return out, [hyps[0][0] for hyps in nbest]
        return out


def _load(model) -> tuple[STConfig, dict, nn.Module]:
    """(config, prep, model) of an st model given as a models/NAME folder or a recipes.load.LoadedModel."""
    from hearthkit.recipes.load import LoadedModel, load_model_dir

    if isinstance(model, LoadedModel):
        if model.recipe.name != "st":
            raise HearthError(f"{model.name} is a {model.recipe.name} model, not st (speech translation)")
        return model.cfg, model.prep, model.model
    _, cfg, prep, net = load_model_dir(Path(model), "st")
    return cfg, prep, net


def translate_segments(model, segments: list) -> list[str]:
    """Translations of SEGMENTS, in order, by the st MODEL (a models/NAME folder or a LoadedModel of `open_model`).

    SEGMENTS are either waveforms (1-D float arrays, 16 kHz mono, e.g. the voice-activity segments of a
    recording) or transcripts (str). A cascade model transcribes waveforms with its asr model (`init_from`,
    n-best as configured) and translates; it translates transcripts directly. An end-to-end model translates
    waveforms only. The caller has already resolved MODEL for its use (`recipes.load.resolve_model` with the
    purpose), as for any model; nothing is read from a catalog here.
    """
    cfg, prep, net = _load(model)
    if not segments:
        return []
    texts = [s for s in segments if isinstance(s, str)]
    if texts and len(texts) != len(segments):
        raise HearthError("translate_segments: give either waveforms or transcripts, not both")
    if texts:
        if cfg.mode != "cascade":
            raise HearthError("this st model is end to end: it translates speech, not transcripts; use a cascade "
                              "model or an mt model for text")
        from hearthkit.recipes.mt.recipe import RECIPE as MT

        return MT.translate(net, text_config(cfg), prep, texts, cfg.target)
    n_mels = cfg.encoder.n_mels
    if cfg.mode == "cascade":
        if not cfg.init_from:
            raise HearthError("this cascade st model was trained without an asr model (model.init_from): it "
                              "translates transcripts, not speech; train one with init_from naming an asr model")
        cascade = Cascade.from_parts(Path(cfg.init_from), net, cfg, prep)
        n_mels = cascade.asr_cfg.n_mels
    feats = [log_mel(torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)), SAMPLE_RATE, n_mels)
             for s in segments]
    if cfg.mode == "cascade":
        return cascade.translate_audio(feats)
    return e2e_translate(net, text_config(cfg), prep["vocab"], feats)

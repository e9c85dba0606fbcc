"""The st recipe: governed audio + its governed translation -> a translation of speech; chrF/BLEU per item.

Two modes, one evaluation. `cascade` trains the mt recipe's Transformer on each item's transcript -> translation
and, at evaluation, feeds it the n-best transcripts of the asr model `init_from` names. `e2e` trains one model
from log-mel features to target pieces (a conformer encoder, initialised from that asr model when given, and a
Transformer decoder), with an auxiliary CTC loss on the transcription where an item has one.

The translation is the item's own words (`meta.translations`, or its sealed text object in a restricted
collection), so it is read through the same governed reader as the audio and governed by the same manifest:
an item the policy keeps out brings neither its audio nor its translation, and it is listed with its reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.data.loader import GovernedReader
from hearthkit.errors import HearthError
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes.asr.recipe import AudioDataset
from hearthkit.recipes.asr.tokenizer import CharTokenizer, load_tokenizer
from hearthkit.recipes.base import Recipe
from hearthkit.recipes.mt.model import Seq2Seq
from hearthkit.recipes.mt.recipe import RECIPE as MT
from hearthkit.recipes.mt.recipe import encode_source, encode_target, fit_pair, tag
from hearthkit.recipes.sentencepiece_vocab import PAD, SentencePieceVocab
from hearthkit.recipes.st.decode import e2e_translate
from hearthkit.recipes.st.model import SpeechTranslator, STConfig, text_config
from hearthkit.store.text import PRIVATE_META, SEALED_TEXT, unpack


def translation_of(reader: GovernedReader, entry: dict, lang: str) -> str | None:
    """ENTRY's translation into LANG, from its catalog row or its sealed text object; None when it has none."""
    meta = entry.get("meta") or {}
    found = meta.get("translations")
    if found is None and SEALED_TEXT in meta:
        found = unpack(reader.read(meta[SEALED_TEXT])).get("translations")
    text = found.get(lang) if isinstance(found, dict) else None
    return text if isinstance(text, str) and text.strip() else None


def left_out(entries: list[dict], kept: list[dict], lang: str, manifest: Manifest | None,
             reasons: dict[int, str] | None = None) -> list[dict]:
    """Items of the request not learned from, with the reason: the policy's, REASONS' (by item id), or having no LANG
    translation."""
    have = {e["item_id"] for e in kept}
    why = reasons or {}
    out = [{"external_id": e["external_id"], "collection": e.get("collection"),
            "reason": why.get(e["item_id"], f"no {lang} translation")} for e in entries if e["item_id"] not in have]
    out += [{"external_id": x["external_id"], "collection": x["collection"], "reason": x["reason"]}
            for x in (manifest.excluded if manifest else [])]
    return out


def public_meta(entry: dict) -> dict:
    """What an evaluation record may carry of an item: its metadata without its words."""
    meta = {k: v for k, v in (entry.get("meta") or {}).items() if k not in PRIVATE_META and k != SEALED_TEXT}
    return {**meta, **{k: entry.get(k) for k in ("item_id", "external_id", "speaker", "dialect", "gender")}}


class TranslatedSpeech(torch.utils.data.Dataset):
    """e2e examples: features and transcript units (the asr recipe's dataset) plus target piece ids."""

    def __init__(self, cfg: STConfig, prep: dict, entries: list[dict], reader: GovernedReader, train: bool):
        self.cfg, self.vocab = cfg, prep["vocab"]
        self.targets: list[str] = []
        kept = []
        for e in entries:
            text = translation_of(reader, e, cfg.target)
            if text is not None:
                kept.append(e)
                self.targets.append(text)
        self.entries = kept
        self.audio = AudioDataset(cfg.encoder, prep["tokenizer"], kept, reader, train)

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> list[float]:
        return self.audio.lengths()

    def __getitem__(self, i: int) -> dict:
        ex = self.audio[i]
        tgt = encode_target(self.vocab, self.targets[i], text_config(self.cfg).max_tokens)
        return {**ex, "tgt": torch.tensor(tgt)}


class TranscriptPairs(torch.utils.data.Dataset):
    """cascade examples: (transcript ids, translation ids), both sides read through the governed reader."""

    def __init__(self, cfg: STConfig, prep: dict, entries: list[dict], reader: GovernedReader, train: bool):
        tcfg = text_config(cfg)
        self.items = []
        for e in entries:
            target = translation_of(reader, e, cfg.target)
            source = CharTokenizer.normalise(reader.text(e))  # the form the asr model writes
            if target is None or not source:
                continue
            pair = fit_pair(encode_source(prep["vocab"], source, cfg.target), encode_target(prep["vocab"], target),
                            tcfg.max_tokens, drop=train and tcfg.long_pairs == "drop")
            if pair is not None:
                self.items.append(pair)

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[float]:
        return [float(len(s) + len(t)) for s, t in self.items]

    def __getitem__(self, i: int) -> dict:
        src, tgt = self.items[i]
        return {"src": torch.tensor(src), "tgt": torch.tensor(tgt)}


class STRecipe(Recipe):
    """Speech translation: cascade (asr -> mt) or end to end, scored by chrF and BLEU per item."""

    name = "st"
    ModelConfig = STConfig
    metric_names = ("chrf", "bleu")

    def group_columns(self, cfg: STConfig) -> list[str]:
        return list(cfg.group_by)

    def _check_parent(self, cfg: STConfig) -> None:
        """A cascade needs its asr model; an e2e encoder must have its parent's shape (one line, at planning)."""
        from hearthkit.recipes.asr.transfer import check_parent, read_parent

        if cfg.decoder_from:
            from hearthkit.recipes.st.transfer import check_text_parent

            check_text_parent(text_config(cfg), Path(cfg.decoder_from))
        if cfg.init_from is None:
            if cfg.mode == "cascade" and cfg.cascade_input == "asr":
                raise HearthError("model.init_from is missing: a cascade transcribes with an asr model; name its "
                                  "models/NAME folder (or set model.cascade_input: transcript to train and score "
                                  "its text model on the items' own transcripts)")
            return
        if cfg.mode == "e2e":
            check_parent(cfg.encoder, Path(cfg.init_from))
        else:
            read_parent(Path(cfg.init_from))

    def prepare(self, cfg: STConfig, train_entries: list[dict], out: Path, reader: GovernedReader | None = None,
                manifest: Manifest | None = None, parent: Path | None = None) -> dict:
        if reader is None:
            raise HearthError("the st recipe reads its training audio and text through a governed reader")
        self._check_parent(cfg)
        tcfg = text_config(cfg)
        kept, targets, sources = [], [], []
        reasons: dict[int, str] = {}
        for e in train_entries:
            text = translation_of(reader, e, cfg.target)
            if text is None:
                continue
            source = CharTokenizer.normalise(reader.text(e))
            if cfg.mode == "cascade" and not source:  # the text model learns transcript -> translation
                reasons[e["item_id"]] = "no transcript"
                continue
            kept.append(e)
            targets.append(text)
            sources.append(source)
        if not kept and reasons:
            raise HearthError(f"no training item has both a transcript and a {cfg.target!r} translation; a cascade "
                              "learns transcript -> translation (an e2e model learns from the audio alone)")
        if not kept:
            raise HearthError(f"no training item has a {cfg.target!r} translation; import them with archive.yaml "
                              f"layout.translations: {{{cfg.target}: SUFFIX}}, or set model.target")
        out.mkdir(parents=True, exist_ok=True)
        (out / "left_out.json").write_text(json.dumps(left_out(train_entries, kept, cfg.target, manifest, reasons),
                                                      indent=1,
                                                      ensure_ascii=False), encoding="utf-8")
        hashes = [e["content_hash"] for e in kept]
        prep: dict = {}
        if cfg.mode == "cascade":  # one vocabulary for both sides, as the mt recipe has it
            vocab = SentencePieceVocab.fit([s for s in sources if s] + targets, tcfg.vocab_size, tcfg.sp_model_type,
                                           symbols=[tag(cfg.target)])
        elif cfg.decoder_from:  # the decoder's embeddings are indexed by the mt model's pieces: keep them
            vocab = SentencePieceVocab.inherit(Path(cfg.decoder_from) / "prep", out)
        else:  # target pieces only; transcripts are characters for the CTC head
            vocab = SentencePieceVocab.fit(targets, tcfg.vocab_size, tcfg.sp_model_type)
        if cfg.mode == "e2e":
            prep["tokenizer"] = CharTokenizer.fit(sources)
            prep["tokenizer"].save(out / "tokenizer.json")
        if not cfg.decoder_from:
            vocab.save(out, hashes)
        prep["vocab"] = vocab
        return prep

    def load_prep(self, folder: Path) -> dict:
        prep: dict = {"vocab": SentencePieceVocab.load(folder)}
        if (folder / "tokenizer.json").is_file():
            prep["tokenizer"] = load_tokenizer(folder / "tokenizer.json")
        return prep

    def build_model(self, cfg: STConfig, prep: dict) -> nn.Module:
        if cfg.mode == "cascade":
            return Seq2Seq(text_config(cfg), len(prep["vocab"]), PAD)
        return SpeechTranslator(cfg, len(prep["tokenizer"]), len(prep["vocab"]), PAD)

    def initialise(self, model: nn.Module, cfg: STConfig, prep: dict) -> None:
        """e2e: the encoder and the CTC rows of shared characters come from the asr model init_from names; the
        decoder from the mt model decoder_from names."""
        if cfg.mode == "e2e" and cfg.init_from:
            from hearthkit.recipes.asr.transfer import init_from_parent

            init_from_parent(model.encoder, cfg.encoder, prep["tokenizer"], Path(cfg.init_from))
        if cfg.mode == "e2e" and cfg.decoder_from:
            from hearthkit.recipes.st.transfer import decoder_from_parent

            print(decoder_from_parent(model, Path(cfg.decoder_from)), flush=True)

    def dataset(self, cfg, prep, entries, reader, train):
        if cfg.mode == "cascade":
            return TranscriptPairs(cfg, prep, entries, reader, train)
        return TranslatedSpeech(cfg, prep, entries, reader, train)

    def collate(self, batch: list[dict]) -> dict:
        tgt = nn.utils.rnn.pad_sequence([b["tgt"] for b in batch], batch_first=True, padding_value=PAD)
        out = {"tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:]}
        if "src" in batch[0]:
            out["src"] = nn.utils.rnn.pad_sequence([b["src"] for b in batch], batch_first=True, padding_value=PAD)
            return out
        feats, tokens = [b["feats"] for b in batch], [b["tokens"] for b in batch]
        return {**out, "feats": nn.utils.rnn.pad_sequence(feats, batch_first=True),
                "feat_lens": torch.tensor([len(f) for f in feats]), "tokens": torch.cat(tokens),
                "token_lens": torch.tensor([len(t) for t in tokens])}

    def loss(self, model, batch):
        if "src" in batch:  # cascade: the mt recipe's loss
            return MT.loss(model, batch)
        net = model.module if hasattr(model, "module") else model
        ctc, out_lens, logits = model(batch["feats"], batch["feat_lens"], batch["tgt_in"])
        tcfg = text_config(net.cfg)
        ce = F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=PAD,
                             label_smoothing=tcfg.label_smoothing)
        w = net.cfg.ctc_weight
        has = batch["token_lens"] > 0  # items without a transcription add no CTC term
        if w > 0 and bool(has.any()):
            per = F.ctc_loss(ctc.transpose(0, 1), batch["tokens"], out_lens, batch["token_lens"], blank=0,
                             reduction="none", zero_infinity=True)
            aux = (per / batch["token_lens"].clamp(min=1))[has].mean()
            loss = (1 - w) * ce + w * aux
        else:
            loss = ce
        return loss, {"samples": float(len(batch["feat_lens"])), "tokens": float((batch["tgt_out"] != PAD).sum()),
                      "audio_seconds": float(batch["feat_lens"].sum()) / 100.0}

    def evaluate(self, model, cfg, prep, entries, reader):
        if cfg.mode == "cascade":
            from hearthkit.recipes.st.cascade import Cascade

            ds = TranslatedSpeechRefs(cfg, entries, reader)
            if cfg.cascade_input == "transcript":  # the ceiling: the items' own transcripts, no audio read
                transcripts = [CharTokenizer.normalise(reader.text(e)) for e in ds.entries]
                hyps = MT.translate(model, text_config(cfg), prep, transcripts, cfg.target)
            else:
                cascade = Cascade.from_parts(Path(cfg.init_from), model, cfg, prep)
                hyps, transcripts = cascade.translate_audio(ds.features_with(cascade), return_transcripts=True)
            extra = [{"transcript_reference": CharTokenizer.normalise(reader.text(e)), "transcript": t}
                     for e, t in zip(ds.entries, transcripts, strict=True)]
        else:
            ds = TranslatedSpeech(cfg, prep, entries, reader, train=False)
            hyps = e2e_translate(model, text_config(cfg), prep["vocab"], [ds.audio.features(i) for i in range(len(ds))])
            extra = [{} for _ in hyps]
        return [{**public_meta(e), **x, "reference": ref, "hypothesis": h}
                for e, ref, h, x in zip(ds.entries, ds.targets, hyps, extra, strict=True)]


class TranslatedSpeechRefs:
    """Held-out items that have a translation, and their references (the cascade reads features its own way)."""

    def __init__(self, cfg: STConfig, entries: list[dict], reader: GovernedReader):
        self.reader, self.entries, self.targets = reader, [], []
        for e in entries:
            text = translation_of(reader, e, cfg.target)
            if text is not None:
                self.entries.append(e)
                self.targets.append(text)

    def features_with(self, cascade) -> list[torch.Tensor]:
        """Log-mel features as the cascade's asr model computes them, read through this run's reader."""
        ds = AudioDataset(cascade.asr_cfg, cascade.asr_prep["tokenizer"], self.entries, self.reader, train=False)
        return [ds.features(i) for i in range(len(ds))]


RECIPE = STRecipe()

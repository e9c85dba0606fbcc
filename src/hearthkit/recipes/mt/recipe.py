"""The mt recipe: governed parallel text -> shared sentencepiece -> Transformer; beam search; chrF/BLEU per item."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.data.loader import GovernedReader
from hearthkit.errors import HearthError
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes.base import Recipe
from hearthkit.recipes.mt.beam import beam_nbest, beam_search, greedy, sample
from hearthkit.recipes.mt.mbr import mbr_pick
from hearthkit.recipes.mt.model import MTConfig, Seq2Seq
from hearthkit.recipes.sentencepiece_vocab import BOS, EOS, PAD, UNK, SentencePieceVocab


def tag(lang: str) -> str:
    """The target-language tag that starts every source sentence."""
    return f"<2{lang}>"


def directions(cfg: MTConfig) -> list[tuple[str, str]]:
    """(src, tgt) language pairs of the config, validated."""
    out = []
    for d in cfg.pairs:
        parts = d.split("-")
        if len(parts) != 2 or not all(parts):
            raise HearthError(f"model.pairs: {d!r} is not SRC-TGT, e.g. es-nah")
        out.append((parts[0], parts[1]))
    return out


def pair_up(entries: list[dict], dirs: list[tuple[str, str]], manifest: Manifest | None = None
            ) -> tuple[list[tuple[dict, dict, str]], list[dict]]:
    """(source entry, target entry, target lang) per direction of each complete pair; dropped pairs with reasons.

    A pair is complete when both of its sides are among ENTRIES; otherwise it is dropped, with the policy's
    reason for the missing side where the manifest excluded it.
    """
    sides: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for e in entries:
        meta = e.get("meta") or {}
        if "pair" in meta and "lang" in meta:
            sides[(e["collection"], meta["pair"])][meta["lang"]] = e
    excluded = {(x["collection"], x["external_id"]): x for x in (manifest.excluded if manifest else [])}
    wanted = {lang for d in dirs for lang in d}
    examples, dropped = [], []
    for (coll, pair), by_lang in sorted(sides.items()):
        complete = [(s, t) for s, t in dirs if s in by_lang and t in by_lang]
        for s, t in complete:
            examples.append((by_lang[s], by_lang[t], t))
        if complete or not (set(by_lang) & wanted):
            continue
        have = next(iter(by_lang.values()))
        corpus, split, line = pair.split("/")
        missing = [f"{corpus}/{split}.{lang}/{line}" for s, t in dirs for lang in (s, t) if lang not in by_lang
                   and (s in by_lang or t in by_lang)]
        why = [f"{x['external_id']}: {x['reason']}" for m in missing if (x := excluded.get((coll, m)))]
        dropped.append({"pair": pair, "collection": coll, "kept_out_side": have["external_id"],
                        "reason": "; ".join(why) or "the other side is not in this part of the manifest"})
    return examples, dropped


def repeats(counts: dict[str, int], temperature: float) -> dict[str, int]:
    """Times each direction's pairs appear per epoch so shares follow counts^(1/T); the largest appears once."""
    total = sum(counts.values())
    want = {d: (n / total) ** (1 / temperature) for d, n in counts.items()}
    norm = sum(want.values())
    ratio = {d: (want[d] / norm) / (counts[d] / total) for d in counts}  # wanted share / share in the data
    low = min(ratio.values())
    return {d: max(1, round(r / low)) for d, r in ratio.items()}


def temperature_repeat(items: list, keys: list[str], temperature: float) -> list:
    """ITEMS with those of each key (direction) repeated as `repeats` says, in a fixed order."""
    if temperature == 1.0 or len(set(keys)) < 2:
        return items
    times = repeats({k: keys.count(k) for k in set(keys)}, temperature)
    return [x for x, k in zip(items, keys, strict=True) for _ in range(times[k])]


def cached_text(reader: GovernedReader) -> Callable[[dict], str]:
    """An entry's text, read once through the governed READER (a text is often both sides of several pairs)."""
    cache: dict[str, str] = {}

    def text(e: dict) -> str:
        if e["content_hash"] not in cache:
            cache[e["content_hash"]] = reader.read(e["content_hash"]).decode("utf-8")
        return cache[e["content_hash"]]

    return text


class PairDataset(torch.utils.data.Dataset):
    """(source ids, target ids) per complete pair, texts read once through the governed reader."""

    def __init__(self, cfg: MTConfig, vocab: SentencePieceVocab, examples: list[tuple[dict, dict, str]],
                 reader: GovernedReader, temperature: float = 1.0, drop_long: bool = False, alpha: float = 0.0):
        self.cfg, self.vocab, self.alpha = cfg, vocab, alpha
        text = cached_text(reader)
        items, keys = [], []
        for s, g, t in examples:
            pair = fit_pair(encode_source(vocab, text(s), t), encode_target(vocab, text(g)), cfg.max_tokens,
                            drop_long)
            if pair is not None:  # the texts too (cached strings, no copy): with sampling each draw segments afresh
                items.append((*pair, text(s), text(g), t))
                keys.append(t)
        self.items = temperature_repeat(items, keys, temperature)

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[float]:
        """Source plus target tokens per pair in the best segmentation (for length-bucketed batches)."""
        return [float(len(src) + len(tgt)) for src, tgt, *_ in self.items]

    def __getitem__(self, i: int) -> dict:
        src, tgt, s_text, g_text, lang = self.items[i]
        if self.alpha > 0:
            sampled = fit_pair(encode_source(self.vocab, s_text, lang, alpha=self.alpha),
                               encode_target(self.vocab, g_text, alpha=self.alpha), self.cfg.max_tokens,
                               drop=True)
            # A sampled segmentation is mostly longer than the best one; one past max_tokens keeps the best (it fits).
            src, tgt = sampled or (src, tgt)
        return {"src": torch.tensor(src), "tgt": torch.tensor(tgt)}


def encode_source(vocab: SentencePieceVocab, text: str, tgt_lang: str, max_tokens: int | None = None,
                  alpha: float = 0.0) -> list[int]:
    """<2tgt> pieces… </s>, cut to MAX_TOKENS when given; pieces sampled with ALPHA > 0."""
    pieces = vocab.encode(text, alpha)
    return [vocab.piece_id(tag(tgt_lang))] + (pieces if max_tokens is None else pieces[: max_tokens - 2]) + [EOS]


def encode_target(vocab: SentencePieceVocab, text: str, max_tokens: int | None = None,
                  alpha: float = 0.0) -> list[int]:
    """<s> pieces… </s>, cut to MAX_TOKENS when given; pieces sampled with ALPHA > 0."""
    pieces = vocab.encode(text, alpha)
    return [BOS] + (pieces if max_tokens is None else pieces[: max_tokens - 2]) + [EOS]


def fit_pair(src: list[int], tgt: list[int], max_tokens: int, drop: bool) -> tuple[list[int], list[int]] | None:
    """An encoded pair within MAX_TOKENS a side: as it is, None (DROP) when a side is longer, or cut."""
    if len(src) <= max_tokens and len(tgt) <= max_tokens:
        return src, tgt
    if drop:
        return None
    return src[: max_tokens - 1] + [EOS], tgt[: max_tokens - 1] + [EOS]


def mbr_candidates(model: Seq2Seq, cfg: MTConfig, state: dict, batch: int, max_len: int, beam: int,
                   gen: torch.Generator) -> list[list[list[int]]]:
    """cfg.mbr candidates per sentence: epsilon-sampled, or the n-best of a beam at least that wide."""
    if cfg.mbr_epsilon > 0:
        return sample(model.step, model.reorder, state, batch, BOS, EOS, max_len, cfg.mbr, cfg.mbr_epsilon, gen)
    nbest = beam_nbest(model.step, model.reorder, state, batch, BOS, EOS, max_len, max(beam, cfg.mbr),
                       cfg.length_penalty)
    return [hyps[:cfg.mbr] for hyps in nbest]


class MTRecipe(Recipe):
    """Sentence translation between the languages of line-aligned parallel text items."""

    name = "mt"
    ModelConfig = MTConfig
    metric_names = ("chrf", "bleu")

    def group_columns(self, cfg: MTConfig) -> list[str]:
        return list(cfg.group_by)

    def prepare(self, cfg: MTConfig, train_entries: list[dict], out: Path, reader: GovernedReader | None = None,
                manifest: Manifest | None = None, parent: Path | None = None) -> dict:
        if reader is None:
            raise HearthError("the mt recipe reads its training text through a governed reader")
        if parent is not None:  # before the training text is read: a shape mismatch fails at once
            self.check_parent_shape(cfg, parent, ("base",) if cfg.base else
                                    ("d_model", "n_heads", "enc_layers", "dec_layers", "d_ff"))
        dirs = directions(cfg)
        examples, dropped = pair_up(train_entries, dirs, manifest)
        if not examples:
            raise HearthError(f"no complete training pair for {', '.join(cfg.pairs)}; "
                              f"{len(dropped)} pairs lost a side to policy (see `hearth plan`)")
        if cfg.base:  # a pretrained base brings its own tokenizer: no vocabulary is fitted
            return self._prepare_base(cfg, dirs, dropped, out, parent)
        # The vocabulary sees the two sides of permitted training pairs and nothing else.
        seen: dict[str, str] = {}
        for s, t, _ in examples:
            for e in (s, t):
                seen.setdefault(e["content_hash"], reader.read(e["content_hash"]).decode("utf-8"))
        langs = sorted({lang for d in dirs for lang in d})
        if parent is None:
            vocab = SentencePieceVocab.fit(list(seen.values()), cfg.vocab_size, cfg.sp_model_type,
                                           symbols=[tag(lang) for lang in langs])
            vocab.save(out, list(seen))
        else:  # continuing from a model: its embeddings are indexed by its own pieces, so keep them
            vocab = SentencePieceVocab.inherit(parent / "prep", out)
            missing = [tag(lang) for lang in langs if vocab.piece_id(tag(lang)) == UNK]
            if missing:
                raise HearthError(f"init_from model {parent.name}: its vocabulary has no {', '.join(missing)} tag, "
                                  "so it cannot learn that direction; start a new model (no init_from)")
        (out / "dropped_pairs.json").write_text(json.dumps(dropped, indent=1, ensure_ascii=False))
        # Which training pairs are longer than the model takes (left out of training, or cut: model.long_pairs).
        long = []
        for s, g, t in examples:
            src = encode_source(vocab, seen[s["content_hash"]], t)
            tgt = encode_target(vocab, seen[g["content_hash"]])
            if fit_pair(src, tgt, cfg.max_tokens, drop=True) is None:
                long.append({"pair": s["meta"]["pair"], "collection": s["collection"],
                             "direction": f"{s['meta']['lang']}-{t}", "tokens": [len(src), len(tgt)]})
        if len(long) == len(examples) and cfg.long_pairs == "drop":
            raise HearthError(f"every training pair is longer than model.max_tokens ({cfg.max_tokens}); raise it, "
                              "or set model.long_pairs: cut")
        (out / "long_pairs.json").write_text(json.dumps(
            {"max_tokens": cfg.max_tokens, "long_pairs": cfg.long_pairs, "of": len(examples), "pairs": long},
            indent=1, ensure_ascii=False))
        return {"vocab": vocab}

    def _prepare_base(self, cfg: MTConfig, dirs: list[tuple[str, str]], dropped: list[dict], out: Path,
                      parent: Path | None) -> dict:
        """Record the registered base (hash-checked) and its tokenizer; give every language a code or a new one."""
        import shutil

        from hearthkit.recipes.hf import run_base, save_base
        from hearthkit.recipes.mt.hf_model import LANGS_FILE, HFPrep, prepare_langs

        ref = run_base(cfg.base, out)
        langs = sorted({lang for d in dirs for lang in d})
        if parent is not None and (parent / "prep" / LANGS_FILE).is_file():
            # continuing from a model: its embeddings hold its own new codes at its own ids, so keep its table
            shutil.copytree(parent / "prep", out, dirs_exist_ok=True)
            theirs = HFPrep(out)
            if missing := [lang for lang in langs if not theirs.knows(lang)]:
                raise HearthError(f"init_from model {parent.name}: it has no code for {', '.join(missing)}; start "
                                  "from the base (no init_from)")
        else:
            save_base(ref, out)
            prepare_langs(cfg, langs, out, ref.name)
        (out / "dropped_pairs.json").write_text(json.dumps(dropped, indent=1, ensure_ascii=False))
        return self.load_prep(out)

    def load_prep(self, folder: Path) -> dict:
        from hearthkit.recipes.mt.hf_model import LANGS_FILE, HFPrep

        if (folder / LANGS_FILE).is_file():
            return {"hf": HFPrep(folder)}
        return {"vocab": SentencePieceVocab.load(folder)}

    def build_model(self, cfg: MTConfig, prep: dict) -> nn.Module:
        if "hf" in prep:
            from hearthkit.recipes.mt.hf_model import HFSeq2Seq, initialise_from_base

            model = HFSeq2Seq(cfg, prep["hf"])
            if cfg.gradient_checkpointing:
                model.gradient_checkpointing()
            if cfg.lora is not None:  # adapters go onto the base's weights, which are not saved with the run
                initialise_from_base(model, prep["hf"])
                model.use_lora(cfg.lora)
            return model
        return Seq2Seq(cfg, len(prep["vocab"]), PAD)

    def init_from_parent(self, model: nn.Module, parent_dir: Path, prep: dict) -> str:
        model.from_parent = True  # a base's weights must not overwrite the parent's in initialise
        return super().init_from_parent(model, parent_dir, prep)

    def initialise(self, model: nn.Module, cfg: MTConfig, prep: dict) -> None:
        if "hf" in prep and cfg.lora is None and not getattr(model, "from_parent", False):
            from hearthkit.recipes.mt.hf_model import initialise_from_base

            print(initialise_from_base(model, prep["hf"]), flush=True)

    def export_hf(self, folder: Path, out: Path) -> None:
        """Published model FOLDER (a fine-tuned base) as a folder `from_pretrained` loads, tokenizer included."""
        from hearthkit.recipes.hf import export_hf
        from hearthkit.recipes.load import load_model_dir
        from hearthkit.recipes.mt.hf_model import export_tokenizer_files

        _, _, prep, model = load_model_dir(folder, self.name)
        if "hf" not in prep:
            raise HearthError(f"{folder.name} was trained from scratch, not from a transformers base; "
                              "`hearth export` writes it in hearthkit's format")
        export_hf(model, out, export_tokenizer_files(prep["hf"]))

    def dataset(self, cfg, prep, entries, reader, train):
        examples, dropped = pair_up(entries, directions(cfg))
        if "hf" in prep:
            from hearthkit.recipes.mt.hf_model import HFPairDataset

            return HFPairDataset(cfg, prep["hf"], examples, reader, cfg.sample_temperature if train else 1.0,
                                 drop_long=train and cfg.long_pairs == "drop")
        return PairDataset(cfg, prep["vocab"], examples, reader, cfg.sample_temperature if train else 1.0,
                           drop_long=train and cfg.long_pairs == "drop", alpha=cfg.subword_alpha if train else 0.0)

    def collate(self, batch: list[dict]) -> dict:
        if "pad" in batch[0]:  # a base's pairs: its own pad id; unlabelled target positions are ignored
            pad = int(batch[0]["pad"])
            src = nn.utils.rnn.pad_sequence([b["src"] for b in batch], batch_first=True, padding_value=pad)
            tgt_in = nn.utils.rnn.pad_sequence([b["tgt"][:-1] for b in batch], batch_first=True, padding_value=pad)
            tgt_out = nn.utils.rnn.pad_sequence([b["tgt"][1:] for b in batch], batch_first=True, padding_value=-100)
            return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}
        src = nn.utils.rnn.pad_sequence([b["src"] for b in batch], batch_first=True, padding_value=PAD)  # (B, S)
        tgt = nn.utils.rnn.pad_sequence([b["tgt"] for b in batch], batch_first=True, padding_value=PAD)  # (B, T+1)
        return {"src": src, "tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:]}

    def loss(self, model, batch):
        logits = model(batch["src"], batch["tgt_in"])  # (B, T, V)
        cfg: MTConfig = (model.module if hasattr(model, "module") else model).cfg
        ignore = -100 if cfg.base else PAD  # a base's pad id may be a real label elsewhere: padding is marked apart
        loss = F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=ignore,
                               label_smoothing=cfg.label_smoothing)
        tokens = float((batch["tgt_out"] != ignore).sum())
        return loss, {"samples": float(batch["src"].size(0)), "tokens": tokens}

    @torch.no_grad()
    def translate(self, model: Seq2Seq, cfg: MTConfig, prep: dict, texts: list[str], tgt_lang: str,
                  beam: int | None = None, src_lang: str | None = None) -> list[str]:
        """Translations of TEXTS into TGT_LANG (beam search, beam 1 greedy; MBR when cfg.mbr), in input order."""
        if "hf" in prep:
            return self._translate_hf(model, cfg, prep["hf"], texts, src_lang, tgt_lang, beam)
        vocab: SentencePieceVocab = prep["vocab"]
        if vocab.piece_id(tag(tgt_lang)) == vocab.piece_id("<unk>"):
            raise HearthError(f"this model does not translate into {tgt_lang!r}; it knows "
                              f"{', '.join(sorted({d.split('-')[1] for d in cfg.pairs}))}")
        model.eval()
        k = beam or cfg.beam
        srcs = [encode_source(vocab, t, tgt_lang, cfg.max_tokens) for t in texts]
        order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))  # similar lengths share a batch
        out: list[str] = [""] * len(srcs)
        gen = torch.Generator().manual_seed(cfg.mbr_seed)  # one stream per call: the same input, the same output
        for i in range(0, len(order), cfg.eval_batch):
            idx = order[i:i + cfg.eval_batch]
            src = nn.utils.rnn.pad_sequence([torch.tensor(srcs[j]) for j in idx], batch_first=True,
                                            padding_value=PAD)
            max_len = min(cfg.max_tokens, int(src.size(1) * 2) + 10)
            state = model.start(src)
            if cfg.mbr > 0:
                for j, hyps in zip(idx, mbr_candidates(model, cfg, state, len(idx), max_len, k, gen), strict=True):
                    texts_j = [vocab.decode(h) for h in hyps]
                    out[j] = texts_j[mbr_pick(texts_j, cfg.mbr_beta)] if texts_j else ""
                continue
            if k == 1:
                ids = greedy(model.step, state, len(idx), BOS, EOS, max_len)
            else:
                ids = beam_search(model.step, model.reorder, state, len(idx), BOS, EOS, max_len, k,
                                  cfg.length_penalty)
            for j, seq in zip(idx, ids, strict=True):
                out[j] = vocab.decode(seq)
        return out

    @torch.no_grad()
    def _translate_hf(self, model, cfg: MTConfig, hf, texts: list[str], src_lang: str | None, tgt_lang: str,
                      beam: int | None) -> list[str]:
        """`translate` with a pretrained base: its tokenizer, its language codes, the same beam/MBR decoding."""
        known = sorted({lang for d in directions(cfg) for lang in d})
        if not hf.knows(tgt_lang) or tgt_lang not in {t for _, t in directions(cfg)}:
            raise HearthError(f"this model does not translate into {tgt_lang!r}; it knows "
                              f"{', '.join(sorted({t for _, t in directions(cfg)}))}")
        if src_lang is None:  # the code-style families name the source language too: the config's, when one
            sources = sorted({s for s, t in directions(cfg) if t == tgt_lang})
            src_lang = sources[0]
        if not hf.knows(src_lang):
            raise HearthError(f"this model does not read {src_lang!r}; it knows {', '.join(known)}")
        model.eval()
        k = beam or cfg.beam
        srcs = [hf.source(t, src_lang, tgt_lang, cfg.max_tokens) for t in texts]
        prefix, bos = hf.prefix(tgt_lang)
        order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
        out: list[str] = [""] * len(srcs)
        gen = torch.Generator().manual_seed(cfg.mbr_seed)
        for i in range(0, len(order), cfg.eval_batch):
            idx = order[i:i + cfg.eval_batch]
            src = nn.utils.rnn.pad_sequence([torch.tensor(srcs[j]) for j in idx], batch_first=True,
                                            padding_value=hf.pad)
            max_len = min(cfg.max_tokens, int(src.size(1) * 2) + 10)
            state = model.start(src, prefix)
            if cfg.mbr > 0:
                cands = (sample(model.step, model.reorder, state, len(idx), bos, hf.eos, max_len, cfg.mbr,
                                cfg.mbr_epsilon, gen) if cfg.mbr_epsilon > 0 else
                         [h[:cfg.mbr] for h in beam_nbest(model.step, model.reorder, state, len(idx), bos, hf.eos,
                                                          max_len, max(k, cfg.mbr), cfg.length_penalty)])
                for j, hyps in zip(idx, cands, strict=True):
                    texts_j = [hf.decode(h) for h in hyps]
                    out[j] = texts_j[mbr_pick(texts_j, cfg.mbr_beta)] if texts_j else ""
                continue
            if k == 1:
                ids = greedy(model.step, state, len(idx), bos, hf.eos, max_len)
            else:
                ids = beam_search(model.step, model.reorder, state, len(idx), bos, hf.eos, max_len, k,
                                  cfg.length_penalty)
            for j, seq in zip(idx, ids, strict=True):
                out[j] = hf.decode(seq)
        return out

    def evaluate(self, model, cfg, prep, entries, reader):
        examples, _ = pair_up(entries, directions(cfg))
        text = {e["content_hash"]: reader.read(e["content_hash"]).decode("utf-8")
                for s, t, _ in examples for e in (s, t)}
        records = []
        for s_lang, t_lang in directions(cfg):
            mine = [(s, t) for s, t, lang in examples if lang == t_lang and s["meta"]["lang"] == s_lang]
            hyps = self.translate(model, cfg, prep, [text[s["content_hash"]] for s, _ in mine], t_lang,
                                  src_lang=s_lang)
            for (s, t), h in zip(mine, hyps, strict=True):
                meta = t.get("meta") or {}
                records.append({"item_id": t["item_id"], "external_id": t["external_id"], "pair": meta.get("pair"),
                                "direction": f"{s_lang}-{t_lang}",
                                **{k: meta.get(k) for k in ("domain", "variant", "document") if k in meta},
                                "source": text[s["content_hash"]], "reference": text[t["content_hash"]],
                                "hypothesis": h})
        return records


RECIPE = MTRecipe()

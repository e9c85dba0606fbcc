"""Pretrained translation models in the mt recipe: M2M-100/NLLB, mBART-50 and T5/mT5/ByT5 through transformers.

Two ways of naming the target language, by family (`STYLES`):
- "code" (M2M-100, NLLB, mBART-50): source = [src code] pieces </s>; the decoder starts with decoder_start and is
  forced to emit the target code first. Target = [tgt code] pieces </s>.
- "tag" (T5, mT5, ByT5): source = [<2tgt>] pieces </s>; target = pieces </s> (T5 has no language codes).
A language the base does not know gets a NEW token at the end of the embedding table, initialised from a related
language's code (`model.new_lang_init`); tags of the tag style start from the mean embedding. The ids hearthkit
gives those tokens are kept in prep/langs.json: some tokenizer classes (M2M100Tokenizer) number added tokens
inconsistently with their own language codes, so decoding never relies on the tokenizer knowing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hearthkit.errors import HearthError
from hearthkit.recipes.hf import BASE_CONFIG, HFModule, base_config, check_base_unchanged, load_base_info, set_offline

STYLES = {"m2m_100": "code", "mbart": "code", "t5": "tag", "mt5": "tag", "umt5": "tag"}
LANGS_FILE = "langs.json"
IGNORE = -100  # label of padded target positions


def style_of(model_type: str, base: str) -> str:
    """The family's way of naming languages; an architecture without one is refused in one line."""
    if model_type not in STYLES:
        raise HearthError(f"model.base {base}: a {model_type!r} model is not a translation base the mt recipe "
                          f"knows; use M2M-100/NLLB (m2m_100), mBART (mbart) or T5/mT5/ByT5 (t5, mt5)")
    return STYLES[model_type]


def _known_id(tok: Any, token: str) -> int | None:
    """TOKEN's id when the base knows it as a language code or tag (a special token), else None.

    An ordinary piece that happens to spell a language's name (mBART's vocabulary may hold "nah") is not a code.
    """
    codes = getattr(tok, "lang_token_to_id", None) or {}  # M2M100Tokenizer keeps its codes outside the vocabulary
    if token in codes:
        return int(codes[token])
    if token not in set(tok.all_special_tokens) | {str(t) for t in tok.added_tokens_decoder.values()}:
        return None
    tid = tok.convert_tokens_to_ids(token)
    if tid is None or tid == tok.unk_token_id or isinstance(tid, list):
        return None
    return int(tid)


def _all_ids(tok: Any) -> set[int]:
    codes = getattr(tok, "lang_token_to_id", None) or {}
    return set(tok.get_vocab().values()) | set(codes.values()) | set(tok.all_special_ids)


def lang_token(cfg: Any, tok: Any, style: str, lang: str) -> str:
    """The token that names LANG: model.lang_codes, else the family's usual form that the base knows."""
    if lang in cfg.lang_codes:
        return cfg.lang_codes[lang]
    if style == "tag":
        return f"<2{lang}>"
    for form in (f"__{lang}__", lang):  # M2M-100's __es__; NLLB's and mBART's codes are given whole (spa_Latn)
        if _known_id(tok, form) is not None:
            return form
    return f"__{lang}__" if type(tok).__name__.startswith("M2M100") else lang


def related(cfg: Any, lang: str) -> str | None:
    """The language whose code embedding a new LANG starts from (model.new_lang_init), if named."""
    init = cfg.new_lang_init
    return init.get(lang) if isinstance(init, dict) else init


def prepare_langs(cfg: Any, langs: list[str], prep: Path, base_name: str) -> dict:
    """Decide each language's token and id; grow the copied config's vocabulary; save langs.json in PREP."""
    from transformers import AutoTokenizer

    set_offline()
    folder = prep / BASE_CONFIG
    config = base_config(prep)
    style = style_of(config.model_type, base_name)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HearthError(f"model.base {base_name}: its tokenizer does not load offline "
                          f"({str(exc).strip().splitlines()[0][:150]}); register it with its tokenizer") from None
    for drop in ("encoder_layerdrop", "decoder_layerdrop"):
        if getattr(config, drop, 0):
            # LayerDrop skips whole layers at random, differently on each rank: DDP then waits forever for the
            # skipped layers' gradients (M2M-100 ships 0.05). Fine-tuning runs without it.
            setattr(config, drop, 0.0)
            config.save_pretrained(str(folder))
    next_id = max([config.vocab_size, *(i + 1 for i in _all_ids(tok))])
    table: dict[str, dict] = {}
    for lang in langs:
        token = lang_token(cfg, tok, style, lang)
        tid = _known_id(tok, token)
        entry = {"token": token, "id": tid, "new": tid is None, "init_from": None}
        if tid is None:
            entry["id"] = next_id
            next_id += 1
            rel = related(cfg, lang)
            if rel is not None and style == "tag" and _known_id(tok, lang_token(cfg, tok, style, rel)) is None:
                rel = None  # T5 has no language tags of its own: a new tag starts from the mean embedding
            if rel is not None:
                rel_token = lang_token(cfg, tok, style, rel)
                if _known_id(tok, rel_token) is None:
                    raise HearthError(f"model.new_lang_init: {rel!r} ({rel_token}) is not a language base "
                                      f"{base_name} knows; name one it does, related to {lang!r}")
                entry["init_from"] = {"lang": rel, "token": rel_token, "id": _known_id(tok, rel_token)}
            elif style == "code":
                raise HearthError(f"model.pairs: base {base_name} does not know {lang!r} ({token}); name a related "
                                  f"language it knows to start its code from (model.new_lang_init: es), or map it "
                                  f"to the base's code (model.lang_codes: {{{lang}: CODE}})")
        table[lang] = entry
    new = [e for e in table.values() if e["new"]]
    if new:
        # The tokenizer learns the new codes too when it numbers them as hearthkit did (an exported folder's
        # tokenizer then knows them); otherwise langs.json alone holds their ids.
        before = len(tok)
        if before == new[0]["id"]:
            tok.add_tokens([e["token"] for e in new], special_tokens=True)
            for e in new:
                e["in_tokenizer"] = _known_id(tok, e["token"]) == e["id"]
            if all(e["in_tokenizer"] for e in new):
                tok.save_pretrained(str(folder))
        config.vocab_size = next_id
        config.save_pretrained(str(folder))
    info = {"style": style, "langs": table, "decoder_start": int(config.decoder_start_token_id),
            "eos": int(tok.eos_token_id), "pad": int(tok.pad_token_id)}
    (prep / LANGS_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return info


class HFPrep:
    """A run's pretrained-translation preparation: the tokenizer, the language table and the grown config."""

    def __init__(self, prep: Path):
        from transformers import AutoTokenizer

        set_offline()
        self.folder = prep
        self.base = load_base_info(prep)
        info = json.loads((prep / LANGS_FILE).read_text(encoding="utf-8"))
        self.style, self.langs = info["style"], info["langs"]
        self.decoder_start, self.eos, self.pad = info["decoder_start"], info["eos"], info["pad"]
        self.config = base_config(prep)
        self.tok = AutoTokenizer.from_pretrained(str(prep / BASE_CONFIG), local_files_only=True)
        self.lang_ids = {e["id"] for e in self.langs.values()}
        self.skip = self.lang_ids | set(self.tok.all_special_ids)

    def knows(self, lang: str) -> bool:
        return lang in self.langs

    def pieces(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def source(self, text: str, src_lang: str, tgt_lang: str, max_tokens: int) -> list[int]:
        """[src code | <2tgt>] pieces… </s>, cut to MAX_TOKENS."""
        first = self.langs[tgt_lang if self.style == "tag" else src_lang]["id"]
        return [first] + self.pieces(text)[: max_tokens - 2] + [self.eos]

    def target(self, text: str, tgt_lang: str, max_tokens: int) -> list[int]:
        """decoder_start [tgt code] pieces… </s>: decoder input = all but the last, labels = all but the first."""
        head = [self.decoder_start] + ([self.langs[tgt_lang]["id"]] if self.style == "code" else [])
        return head + self.pieces(text)[: max_tokens - len(head)] + [self.eos]

    def prefix(self, tgt_lang: str) -> tuple[list[int], int]:
        """(tokens fed before decoding starts, the token decoding starts from) for TGT_LANG."""
        if self.style == "code":  # the target code is forced: decoding continues after it
            return [self.decoder_start], self.langs[tgt_lang]["id"]
        return [], self.decoder_start

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i not in self.skip], skip_special_tokens=True).strip()


class HFSeq2Seq(HFModule):
    """A transformers encoder-decoder with the step/reorder interface of the mt recipe's beam search and MBR.

    Its state holds each tied tensor once (M2M-100 and mBART share one embedding table four ways): safetensors
    refuses tensors that share memory, and one copy on disk is what the base holds too. Loading fills the others.
    """

    def __init__(self, cfg: Any, prep: HFPrep):
        from transformers import AutoModelForSeq2SeqLM

        super().__init__(AutoModelForSeq2SeqLM.from_config(prep.config))
        self.cfg, self.pad_id = cfg, prep.pad

    def _tied(self) -> dict[str, str]:
        """Name of each parameter that repeats an earlier one -> the earlier one's name."""
        first: dict[int, str] = {}
        out = {}
        for name, p in self.named_parameters(remove_duplicate=False):
            if id(p) in first:
                out[name] = first[id(p)]
            else:
                first[id(p)] = name
        return out

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:  # type: ignore[override]
        sd = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        for name in self._tied():
            sd.pop(prefix + name, None)
        return sd

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        full = dict(state_dict)
        for name, kept in self._tied().items():
            if name not in full and kept in full:
                full[name] = full[kept]
        return super().load_state_dict(full, strict=strict, assign=assign)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) of the next target token at every position of TGT_IN."""
        return self.hf(input_ids=src, attention_mask=(src != self.pad_id).long(), decoder_input_ids=tgt_in,
                       use_cache=False).logits

    def start(self, src: torch.Tensor, prefix: list[int] = ()) -> dict:
        """Decoding state for SRC: encoder states computed once, PREFIX fed to the decoder's cache."""
        mask = (src != self.pad_id).long()  # (B, S)
        enc = self.hf.get_encoder()(input_ids=src, attention_mask=mask).last_hidden_state  # (B, S, C)
        state = {"enc": enc, "mask": mask, "cache": None}
        if prefix:
            self._decode(state, torch.tensor([list(prefix)] * src.size(0)))
        return state

    def _decode(self, state: dict, ids: torch.Tensor) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        out = self.hf(encoder_outputs=BaseModelOutput(last_hidden_state=state["enc"]), attention_mask=state["mask"],
                      decoder_input_ids=ids, past_key_values=state["cache"], use_cache=True)
        state["cache"] = out.past_key_values
        return out.logits[:, -1]  # (N, V)

    def step(self, state: dict, last: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, V) of the token after LAST (N,), advancing STATE by one position."""
        return F.log_softmax(self._decode(state, last[:, None]).float(), dim=-1)

    @staticmethod
    def reorder(state: dict, index: torch.Tensor) -> None:
        """Keep rows INDEX of the encoder states, mask and decoder cache."""
        state["enc"] = state["enc"].index_select(0, index)
        state["mask"] = state["mask"].index_select(0, index)
        if state["cache"] is not None:
            state["cache"].reorder_cache(index)


@torch.no_grad()
def initialise_from_base(model: HFSeq2Seq, prep: HFPrep) -> str:
    """Copy the registered base's weights into MODEL; new language codes start from their related language's."""
    from transformers import AutoModelForSeq2SeqLM

    info = prep.base
    path = check_base_unchanged(info)
    try:
        base = AutoModelForSeq2SeqLM.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise HearthError(f"base model {info['name']}: {path} cannot be loaded offline "
                          f"({str(exc).strip().splitlines()[0][:160]})") from None
    size = model.hf.get_input_embeddings().weight.size(0)
    known = base.get_input_embeddings().weight.size(0)  # rows the base learned
    if known != size:
        base.resize_token_embeddings(size, mean_resizing=False)
    emb = base.get_input_embeddings().weight
    out_emb = base.get_output_embeddings().weight if base.get_output_embeddings() is not None else None
    mean = emb[:known].mean(0)
    said = []
    for lang, e in prep.langs.items():
        if not e["new"]:
            continue
        src = e["init_from"]["id"] if e["init_from"] else None
        for table in {id(emb): emb, id(out_emb): out_emb}.values():  # tied tables once
            if table is not None:
                table[e["id"]] = table[src] if src is not None else mean
        said.append(f"{lang} ({e['token']}) from {e['init_from']['lang'] if src is not None else 'the mean embedding'}")
    missing, unexpected = model.hf.load_state_dict(base.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lora_" not in k]:
        raise HearthError(f"base model {info['name']}: its weights do not fit the model built from its config "
                          f"(missing {list(missing)[:2]}, unexpected {list(unexpected)[:2]})")
    return f"initialised from base {info['name']}" + (f"; new language codes: {', '.join(said)}" if said else "")


def export_tokenizer_files(prep: HFPrep) -> list[Path]:
    """The files a from_pretrained user needs beside the weights: the tokenizer and langs.json."""
    files = [p for p in (prep.folder / BASE_CONFIG).iterdir() if p.is_file() and p.name != "config.json"]
    return files + [prep.folder / LANGS_FILE]


class HFPairDataset(torch.utils.data.Dataset):
    """(source ids, decoder ids) per complete pair in the base's tokenization, read through the governed reader."""

    def __init__(self, cfg: Any, prep: HFPrep, examples: list[tuple[dict, dict, str]], reader: Any,
                 temperature: float = 1.0, drop_long: bool = False):
        from hearthkit.recipes.mt.recipe import cached_text, temperature_repeat

        self.pad = prep.pad
        text = cached_text(reader)
        items, keys = [], []
        for s, g, t in examples:
            src_lang = (s.get("meta") or {}).get("lang")
            src = [prep.langs[t if prep.style == "tag" else src_lang]["id"]] + prep.pieces(text(s)) + [prep.eos]
            tgt = prep.target(text(g), t, 10**9)
            if len(src) > cfg.max_tokens or len(tgt) > cfg.max_tokens + 1:  # +1: decoder_start is not a label
                if drop_long:
                    continue
                src, tgt = src[: cfg.max_tokens - 1] + [prep.eos], tgt[: cfg.max_tokens] + [prep.eos]
            items.append((src, tgt))
            keys.append(t)
        self.items = temperature_repeat(items, keys, temperature)

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[float]:
        """Source plus target tokens per pair (for length-bucketed batches)."""
        return [float(len(s) + len(t)) for s, t in self.items]

    def __getitem__(self, i: int) -> dict:
        src, tgt = self.items[i]
        return {"src": torch.tensor(src), "tgt": torch.tensor(tgt), "pad": self.pad}

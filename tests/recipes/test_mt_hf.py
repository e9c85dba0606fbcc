"""Pretrained translation bases in process: decoding with the HF cache, new language codes, tied tensors, refusals.

The bases are tiny random models built from a config with a real tokenizer of their family (tests/recipes/
hf_bases.py); a BaseRef is made directly (registration itself is tested in tests/lineage and in the torchrun test).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hearthkit.errors import HearthError
from hearthkit.lineage.base import BaseRef, check_base_folder, hash_base_folder
from hearthkit.recipes.hf import save_base
from hearthkit.recipes.mt.beam import beam_search, greedy
from hearthkit.recipes.mt.hf_model import HFPrep, HFSeq2Seq, initialise_from_base, prepare_langs
from hearthkit.recipes.mt.model import MTConfig
from hearthkit.recipes.mt.recipe import RECIPE
from tests.recipes.hf_bases import make_backbone, make_base

TEXTS = ["hola mundo que tal", "el perro come pan", "la casa es grande", "tlein ika ni kalli", "in itskuintli"] * 8
CODES = {"mbart": {"es": "es_XX"}}


def ref_of(folder: Path) -> BaseRef:
    return BaseRef("tiny", folder, hash_base_folder(folder), check_base_folder(folder), "MIT", "test", (), "none")


def prepared(kind: str, tmp: Path, **model) -> tuple[MTConfig, HFPrep]:
    """A tiny KIND base recorded in a prep folder with languages es (known) and nah (new)."""
    base = make_base(kind, tmp / "base", TEXTS)
    save_base(ref_of(base), tmp / "prep")
    cfg = MTConfig(pairs=["es-nah"], base="tiny", lang_codes=CODES.get(kind, {}), new_lang_init="es", beam=3,
                   max_tokens=40, **model)
    prepare_langs(cfg, ["es", "nah"], tmp / "prep", "tiny")
    return cfg, HFPrep(tmp / "prep")


@pytest.mark.parametrize("kind", ["m2m100", "mbart", "byt5"])
@torch.no_grad()
def test_cached_step_decoding_equals_the_full_forward_and_beam_search_runs(kind, tmp_path):
    cfg, prep = prepared(kind, tmp_path)
    torch.manual_seed(0)
    model = HFSeq2Seq(cfg, prep)
    initialise_from_base(model, prep)
    model.eval()
    a, b = prep.source("hola mundo", "es", "nah", 40), prep.source("el perro come", "es", "nah", 40)
    n = max(len(a), len(b))
    src = torch.tensor([a + [prep.pad] * (n - len(a)), b + [prep.pad] * (n - len(b))])  # padded batch
    tgt = torch.tensor([prep.target("tlein ika ni", "nah", 40)[:-1]] * 2)
    full = torch.log_softmax(model(src, tgt).float(), -1)  # (B, T, V)
    prefix, bos = prep.prefix("nah")
    assert tgt[0, len(prefix)] == bos  # the code families force the target code; T5 starts from decoder_start
    state = model.start(src, prefix)
    steps = torch.stack([model.step(state, tgt[:, t]) for t in range(len(prefix), tgt.size(1))], 1)
    assert torch.allclose(steps, full[:, len(prefix):], atol=1e-5)
    # beam 1 is greedy, and the beam reorders the HF cache: a beam of 3 gives sequences of real token ids
    g = greedy(model.step, model.start(src, prefix), 2, bos, prep.eos, 12)
    k = beam_search(model.step, model.reorder, model.start(src, prefix), 2, bos, prep.eos, 12, 3)
    assert len(g) == len(k) == 2 and all(0 <= t < prep.config.vocab_size for seq in g + k for t in seq)
    out = RECIPE.translate(model, cfg, {"hf": prep}, ["hola mundo", "el perro come"], "nah")
    assert len(out) == 2 and all(isinstance(x, str) for x in out)


@pytest.mark.parametrize("kind", ["m2m100", "mbart"])
@torch.no_grad()
def test_a_new_language_code_starts_from_the_related_languages_embedding(kind, tmp_path):
    cfg, prep = prepared(kind, tmp_path)
    nah, es = prep.langs["nah"], prep.langs["es"]
    assert nah["new"] and not es["new"] and nah["init_from"]["id"] == es["id"]
    assert nah["id"] >= prep.config.vocab_size - 1 and prep.config.vocab_size == nah["id"] + 1  # a row of its own
    model = HFSeq2Seq(cfg, prep)
    initialise_from_base(model, prep)
    emb = model.hf.get_input_embeddings().weight
    assert torch.equal(emb[nah["id"]], emb[es["id"]])
    assert torch.equal(model.hf.get_output_embeddings().weight[nah["id"]], emb[es["id"]])  # tied output
    # every other row is the base's own
    from transformers import AutoModelForSeq2SeqLM

    base = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "base"), local_files_only=True)
    old = base.get_input_embeddings().weight
    assert torch.equal(emb[: old.size(0)], old)


def test_tied_tensors_are_stored_once_and_reload_exactly(tmp_path):
    cfg, prep = prepared("m2m100", tmp_path)
    model = HFSeq2Seq(cfg, prep)
    initialise_from_base(model, prep)
    sd = model.state_dict()
    assert "hf.model.shared.weight" in sd and "hf.lm_head.weight" not in sd
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))  # refused if shared
    again = HFSeq2Seq(cfg, prep)
    again.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    assert again.hf.lm_head.weight.data_ptr() == again.hf.model.shared.weight.data_ptr()  # still tied
    src, tgt = torch.tensor([prep.source("hola", "es", "nah", 40)]), torch.tensor([[2, prep.langs["nah"]["id"]]])
    model.eval(), again.eval()
    assert torch.equal(model(src, tgt), again(src, tgt))


def test_unknown_language_and_wrong_architecture_are_refused_in_one_line(tmp_path):
    base = make_base("m2m100", tmp_path / "base", TEXTS)
    save_base(ref_of(base), tmp_path / "prep")
    with pytest.raises(HearthError, match=r"does not know 'nah' \(__nah__\); name a related language") as e:
        prepare_langs(MTConfig(pairs=["es-nah"], base="tiny"), ["es", "nah"], tmp_path / "prep", "tiny")
    assert "\n" not in str(e.value)
    with pytest.raises(HearthError, match="new_lang_init: 'qq'"):
        prepare_langs(MTConfig(pairs=["es-nah"], base="tiny", new_lang_init="qq"), ["es", "nah"], tmp_path / "prep",
                      "tiny")
    vision = make_backbone("resnet", tmp_path / "vision")
    save_base(ref_of(vision), tmp_path / "prep2")
    with pytest.raises(HearthError, match="'resnet' model is not a translation base"):
        prepare_langs(MTConfig(pairs=["es-nah"], base="tiny"), ["es", "nah"], tmp_path / "prep2", "tiny")
    with pytest.raises(ValueError, match="subword_alpha"):
        MTConfig(base="tiny", subword_alpha=0.1)


@torch.no_grad()
def test_lora_stores_adapters_only_and_base_plus_adapters_reproduce_the_logits(tmp_path):
    from hearthkit.recipes.hf import LoraSettings, export_hf

    cfg, prep = prepared("mbart", tmp_path, lora=LoraSettings(r=2, target_modules=["q_proj", "v_proj"]))
    model = RECIPE.build_model(cfg, {"hf": prep})
    sd = model.state_dict()
    assert sd and all("lora_" in k for k in sd)
    for p in model.parameters():  # adapters moved away from their zero start, as training would
        if p.requires_grad:
            p.add_(torch.randn_like(p) * 0.1)
    sd = model.state_dict()
    full = sum(p.numel() for p in model.parameters())
    assert sum(v.numel() for v in sd.values()) < 0.1 * full
    again = RECIPE.build_model(cfg, {"hf": prep})  # the base from its registered folder, then the adapters
    again.load_state_dict(sd)
    src, tgt = torch.tensor([prep.source("hola", "es", "nah", 40)]), torch.tensor([prep.target("in", "nah", 40)])
    model.eval(), again.eval()
    assert torch.equal(model(src, tgt), again(src, tgt))
    from transformers import AutoModelForSeq2SeqLM

    merged = AutoModelForSeq2SeqLM.from_pretrained(str(export_hf(model, tmp_path / "out")), local_files_only=True)
    merged.eval()
    got = merged(input_ids=src, attention_mask=torch.ones_like(src), decoder_input_ids=tgt).logits
    assert torch.allclose(got, model(src, tgt), atol=1e-5)

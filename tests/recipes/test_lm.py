"""The lm recipe end to end through the CLI and torchrun; bits per character; generation; the scoring API."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from hearthkit.demo.parallel import make_parallel_corpus
from hearthkit.recipes.lm.model import GPT, LMConfig
from hearthkit.recipes.lm.recipe import RECIPE, CharUnits, LMScorer
from hearthkit.recipes.load import load_model_dir
from hearthkit.recipes.sentencepiece_vocab import SentencePieceVocab
from hearthkit.workspace import find_workspace
from tests.conftest import hearth

MARKER = "Ʃʘ"

CONFIG = {
    "name": "toy-lm", "recipe": "lm",
    "request": {"purpose": "research", "requester": "tester", "collections": ["toy"]},
    "split": {"by": "split", "test_values": ["dev"]},
    "model": {"units": "sentencepiece", "vocab_size": 60, "lang": "xx", "block_size": 32, "n_layer": 2, "n_head": 2,
              "n_embd": 48, "dropout": 0.0},
    "train": {"steps": 120, "batch_size": 16, "lr": 0.003, "warmup": 10, "checkpoint_every": 60, "log_every": 40},
    "launch": {"nproc": 2, "threads_per_worker": 1},
}


@pytest.mark.slow
def test_lm_trains_reports_bpc_generates_and_scores(workspace: Path, tmp_path: Path):
    folder = make_parallel_corpus(tmp_path / "toy", n_train=200, n_dev=20, secret=5, secret_marker=MARKER)
    hearth("data", "import-parallel", str(folder), "--src", "es", "--tgt", "xx", "--collection", "toy",
           "--community", "Toy community", "--purpose", "research", ws=workspace)
    cfg = tmp_path / "lm.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    out = hearth("train", str(cfg), ws=workspace, timeout=300)
    assert "tokens/s" in out.stdout
    root = find_workspace(workspace)
    run, model_dir = root.run_dir("toy-lm"), root.models_dir / "toy-lm"
    card = (model_dir / "model_card.md").read_text(encoding="utf-8")
    assert "| BPC | 95% CI | PPL | 95% CI |" in card and "| lang | xx |" in card
    rows = json.loads((model_dir / "evaluation.json").read_text())["rows"]
    overall = next(r for r in rows if r["by"] == "overall")
    assert overall["n"] == 20
    # A 20-word invented language is very predictable: far below the 8 bits of a uniform byte.
    assert 0 < overall["bpc"] < 2.5, overall

    # The scoring API gives the same bits as the evaluation, and bpc = bits / characters (line ends counted).
    recipe, mcfg, prep, model = load_model_dir(model_dir, "lm")
    dev = (folder / "dev.xx").read_text(encoding="utf-8").splitlines()
    logp = LMScorer(model, prep).score(dev)
    bits = -sum(logp) / math.log(2)
    assert bits / sum(len(t) + 1 for t in dev) == pytest.approx(overall["bpc"], rel=1e-5)

    gen = hearth("generate", "toy-lm", "--prompt", "kali", "--tokens", "20", ws=workspace)
    assert gen.stdout.startswith("kali") and len(gen.stdout.strip()) > len("kali")

    # The subword model saw the permitted xx lines only.
    assert not [p for p in SentencePieceVocab.load(run / "prep").pieces() if any(c in p for c in MARKER)]
    manifest = json.loads((run / "manifest.json").read_text())
    sources = set(json.loads((run / "prep" / "spm_sources.json").read_text())["content_hashes"])
    assert len(manifest["excluded"]) == 5
    assert all(e["meta"]["lang"] == "xx" for e in manifest["included"] if e["content_hash"] in sources)


def test_long_texts_are_scored_in_windows_without_losing_a_character():
    torch.manual_seed(0)
    units = CharUnits.fit(["abcdef"])
    model = GPT(LMConfig(block_size=4, n_layer=1, n_head=1, n_embd=8, dropout=0.0), len(units))
    text = "abcdefabcdefabc"  # 15 characters + the end = 16 predictions, over 4 windows
    lp = RECIPE.token_log_probs(model, {"units": units}, [text, "ab"])
    assert [len(x) for x in lp] == [16, 3]
    assert all(bool((x < 0).all()) for x in lp)


def test_flops_per_token_of_gpt2_small():
    model = GPT(LMConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, bias=True, dropout=0.0), 50304)
    n = model.n_params()
    assert 123e6 < n < 125e6  # GPT-2 small, position embeddings not counted
    assert model.flops_per_token() == 6 * n + 12 * 12 * 768 * 1024


@pytest.mark.parametrize("units", ["char", "sentencepiece"])
def test_continuing_from_a_model_keeps_its_units_and_refuses_another_shape(workspace: Path, tmp_path: Path,
                                                                            units: str):
    from datetime import date

    from hearthkit.catalog.db import Catalog
    from hearthkit.data.loader import GovernedReader
    from hearthkit.errors import HearthError
    from hearthkit.governance.manifest import Request
    from hearthkit.governance.policy import compute_manifest
    from hearthkit.store.cas import ContentStore

    for name, seed in (("old", 1), ("new", 2)):
        folder = make_parallel_corpus(tmp_path / name, n_train=40, n_dev=0, seed=seed)
        if name == "new":  # text the parent never saw, with a character it never saw
            (folder / "train.xx").write_text((folder / "train.xx").read_text(encoding="utf-8").replace("a", "ä"),
                                             encoding="utf-8")
        hearth("data", "import-parallel", str(folder), "--src", "es", "--tgt", "xx", "--collection", name,
               "--community", "Toy community", "--purpose", "research", ws=workspace)
    root = find_workspace(workspace)
    catalog, store = Catalog.open(root.db_url), ContentStore(root.store_dir)

    def entries(collection: str) -> list[dict]:
        return compute_manifest(catalog, Request("research", "t", (collection,), date.today().isoformat())).included

    cfg = LMConfig(units=units, vocab_size=40, lang="xx", block_size=16, n_layer=1, n_head=2, n_embd=16)
    old, new = entries("old"), entries("new")
    parent = tmp_path / "models" / "toy-lm"  # what publishing a model writes: its prep and its config
    RECIPE.prepare(cfg, old, parent / "prep", reader=GovernedReader(store, old))
    (parent / "config.json").write_text(json.dumps({"recipe": "lm", "model": cfg.model_dump()}))
    fresh = RECIPE.prepare(cfg, new, tmp_path / "fresh", reader=GovernedReader(store, new))["units"]
    kept = RECIPE.prepare(cfg, new, tmp_path / "child", reader=GovernedReader(store, new), parent=parent)["units"]
    own = RECIPE.load_prep(parent / "prep")["units"]
    assert kept.encode("kali ä") == own.encode("kali ä") != fresh.encode("kali ä")  # the parent's numbering
    assert json.loads((tmp_path / "child" / "spm_sources.json").read_text())["inherited_from"] == "toy-lm"
    with pytest.raises(HearthError, match="model.n_embd: 32 here but 16 in init_from model toy-lm"):
        RECIPE.prepare(cfg.model_copy(update={"n_embd": 32}), new, tmp_path / "wide",
                       reader=GovernedReader(store, new), parent=parent)

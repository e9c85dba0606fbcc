"""The mt recipe end to end through the CLI and torchrun, on a synthetic corpus the test writes."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest
import yaml
from sacrebleu.metrics import CHRF
from safetensors.torch import load_file
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model
from hearthkit.demo.parallel import make_parallel_corpus
from hearthkit.recipes.sentencepiece_vocab import EOS, SentencePieceVocab
from hearthkit.workspace import find_workspace
from tests.conftest import HEARTH, hearth

MARKER = "Ʃʘ"  # appears only in the pairs whose xx side is tk:secret_sacred

CONFIG = {
    "name": "toy-mt", "recipe": "mt",
    "request": {"purpose": "research", "requester": "tester", "collections": ["toy"]},
    "split": {"by": "split", "test_values": ["dev"]},
    "model": {"pairs": ["es-xx"], "vocab_size": 80, "d_model": 64, "n_heads": 2, "enc_layers": 2, "dec_layers": 2,
              "d_ff": 128, "dropout": 0.1, "label_smoothing": 0.1, "beam": 3},
    "train": {"steps": 160, "batch_size": 16, "lr": 0.003, "warmup": 20, "checkpoint_every": 40, "keep_last": 2,
              "average_last": 2, "log_every": 40, "bucket": 4},  # length-bucketed batches through torchrun
    "launch": {"nproc": 2, "threads_per_worker": 1},
}


@pytest.fixture(scope="module")
def trained_mt(tmp_path_factory) -> tuple[Path, Path, str]:
    """The toy corpus imported and toy-mt trained by `hearth train` (torchrun, 2 workers), once for this module:
    the tests below only read toy-mt and add models and collections of their own names."""
    from hearthkit.workspace import init_workspace

    tmp_path = tmp_path_factory.mktemp("mt")
    workspace = init_workspace(tmp_path / "ws").root
    folder = make_parallel_corpus(tmp_path / "toy", n_train=240, n_dev=24, secret=6, secret_marker=MARKER)
    hearth("data", "import-parallel", str(folder), "--src", "es", "--tgt", "xx", "--collection", "toy",
           "--community", "Toy community", "--purpose", "research", ws=workspace)
    cfg = tmp_path / "mt.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, allow_unicode=True), encoding="utf-8")
    out = hearth("train", str(cfg), ws=workspace, timeout=300)
    return workspace, folder, out.stdout


@pytest.mark.slow
def test_mt_trains_evaluates_translates_and_matches_sacrebleu(trained_mt):
    ws, folder, train_out = trained_mt
    root = find_workspace(ws)
    run = root.run_dir("toy-mt")
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    card = (root.models_dir / "toy-mt" / "model_card.md").read_text(encoding="utf-8")
    assert "| CHRF | 95% CI | BLEU | 95% CI |" in card and "nrefs:1|case:mixed|eff:yes|nc:6|nw:0" in card
    assert "| domain | cuentos |" in card and "| direction | es-xx |" in card
    evaluation = json.loads((root.models_dir / "toy-mt" / "evaluation.json").read_text())
    overall = next(r for r in evaluation["rows"] if r["by"] == "overall")
    assert overall["n"] == 24

    # The CLI's translations of dev.es, scored by sacrebleu directly, give the card's chrF.
    src = (folder / "dev.es").read_text(encoding="utf-8")
    out = subprocess.run([*HEARTH, "translate", "toy-mt", "--to", "xx", "-w", str(ws)], input=src, text=True,
                         capture_output=True, check=True, timeout=120)
    hyps = out.stdout.splitlines()
    refs = (folder / "dev.xx").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len(refs) == 24
    direct = CHRF().corpus_score(hyps, [refs]).score
    assert direct == pytest.approx(overall["chrf"], abs=1e-9)
    assert direct > 30  # far above chance on a 20-word lexicon: the model learned something
    # --length-penalty reaches the beam search: the CLI gives what the recipe gives with that penalty.
    from hearthkit.recipes.load import load_model_dir

    recipe, mcfg, mprep, net = load_model_dir(root.models_dir / "toy-mt", "mt")
    penalised = subprocess.run([*HEARTH, "translate", "toy-mt", "--to", "xx", "--length-penalty", "6", "-w",
                                str(ws)], input=src, text=True, capture_output=True, check=True, timeout=120)
    assert penalised.stdout.splitlines() == recipe.translate(
        net, mcfg.model_copy(update={"length_penalty": 6.0}), mprep, src.splitlines(), "xx")
    # --mbr/--mbr-epsilon reach the decoder: the sampler is seeded, so the CLI repeats the recipe's choices.
    sampled = subprocess.run([*HEARTH, "translate", "toy-mt", "--to", "xx", "--mbr", "8", "--mbr-epsilon", "0.02",
                              "-w", str(ws)], input=src, text=True, capture_output=True, check=True, timeout=120)
    mbr_cfg = mcfg.model_copy(update={"mbr": 8, "mbr_epsilon": 0.02})
    assert sampled.stdout.splitlines() == recipe.translate(net, mbr_cfg, mprep, src.splitlines(), "xx")
    assert CHRF().corpus_score(sampled.stdout.splitlines(), [refs]).score > 30
    from_beam = recipe.translate(net, mcfg.model_copy(update={"mbr": 4}), mprep, src.splitlines(), "xx")
    assert CHRF().corpus_score(from_beam, [refs]).score > 30
    bad = subprocess.run([*HEARTH, "translate", "toy-mt", "--to", "xx", "--length-penalty", "-1", "-w", str(ws)],
                         input=src, text=True, capture_output=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--length-penalty" in bad.stderr

    # The vocabulary never saw the excluded pairs: not their hashes, not the marker they alone carry.
    prep = run / "prep"
    sources = set(json.loads((prep / "spm_sources.json").read_text())["content_hashes"])
    manifest = json.loads((run / "manifest.json").read_text())
    excluded = {e["external_id"] for e in manifest["excluded"]}
    assert excluded == {f"toy/train.xx/{i:06d}" for i in range(1, 7)}
    orphans = [e["content_hash"] for e in manifest["included"] if e["meta"]["pair"] in
               {f"toy/train/{i:06d}" for i in range(1, 7)}]
    assert len(orphans) == 6 and not set(orphans) & sources  # the permitted es side of a dropped pair is left out too
    pieces = SentencePieceVocab.load(prep).pieces()
    assert not [p for p in pieces if any(c in p for c in MARKER)]
    assert [p for p in pieces if "í" in p]  # control: characters of permitted text are in the vocabulary
    dropped = json.loads((prep / "dropped_pairs.json").read_text())
    assert len(dropped) == 6 and all("tk:secret_sacred" in d["reason"] for d in dropped)
    # The checkpoint averaging ran over the last two checkpoints.
    assert "averaged the weights of 2 checkpoints: step_00000120, step_00000160" in train_out


@pytest.mark.slow
def test_continuing_from_a_model_keeps_its_vocabulary_and_weights(trained_mt, tmp_path: Path):
    ws, _, _ = trained_mt
    root = find_workspace(ws)
    # New text arrives: another collection, other sentences; a vocabulary fitted on it would number pieces anew.
    more = make_parallel_corpus(tmp_path / "more", n_train=120, n_dev=12, seed=7)
    hearth("data", "import-parallel", str(more), "--src", "es", "--tgt", "xx", "--collection", "more",
           "--community", "Toy community", "--purpose", "research", ws=ws)
    child = {**CONFIG, "name": "toy-mt-more", "init_from": "toy-mt",
             "request": {**CONFIG["request"], "collections": ["more"]},
             "train": {**CONFIG["train"], "steps": 10, "warmup": 2, "checkpoint_every": 10, "log_every": 5,
                       "average_last": 1, "keep_last": 1},
             "launch": {"nproc": 1, "threads_per_worker": 1}}
    cfg = tmp_path / "child.yaml"
    cfg.write_text(yaml.safe_dump(child, allow_unicode=True), encoding="utf-8")
    out = hearth("train", str(cfg), ws=ws, timeout=300)
    parent_run, run = root.run_dir("toy-mt"), root.run_dir("toy-mt-more")
    n_tensors = len(load_file(str(root.models_dir / "toy-mt" / "model.safetensors")))
    assert f"initialised {n_tensors}/{n_tensors} tensors from toy-mt" in out.stdout
    assert (run / "prep" / "spm.model").read_bytes() == (parent_run / "prep" / "spm.model").read_bytes()
    sources = json.loads((run / "prep" / "spm_sources.json").read_text())
    assert sources["inherited_from"] == "toy-mt"
    assert sources["content_hashes"] == json.loads((parent_run / "prep" / "spm_sources.json").read_text())[
        "content_hashes"]  # the record still names the items the vocabulary was fitted on: the parent's
    fresh = SentencePieceVocab.fit([ln for f in ("train.es", "train.xx") for ln in
                                    (more / f).read_text(encoding="utf-8").splitlines()], 80)
    assert fresh.pieces() != SentencePieceVocab.load(run / "prep").pieces()  # control: refitting would renumber
    # The weights came with their pieces: five steps in, the child is where the parent ended, not where it began.
    first = [json.loads(x)["loss"] for x in (parent_run / "metrics.jsonl").read_text().splitlines()]
    child_first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert child_first < first[0] and child_first < first[-1] * 1.5, (child_first, first)
    with Catalog.open(root.db_url).session() as s:
        parent, model = (s.scalar(select(Model).where(Model.name == n)) for n in ("toy-mt", "toy-mt-more"))
        assert model.parent_id == parent.id  # lineage: the child inherits the parent's restrictions and attribution

    # A shape the parent's weights do not have, or a language its vocabulary lacks: one line at planning.
    bad = hearth("train", str(cfg), "--set", "name=toy-mt-wide", "--set", "model.d_model=32", ws=ws, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "model.d_model: 32 here but 64 in init_from model toy-mt" in bad.stdout + bad.stderr
    assert not (root.run_dir("toy-mt-wide") / "run.json").exists()
    (more / "train.xx").rename(more / "train.yy")
    (more / "dev.xx").rename(more / "dev.yy")
    hearth("data", "import-parallel", str(more), "--src", "es", "--tgt", "yy", "--collection", "more-yy",
           "--community", "Toy community", "--purpose", "research", ws=ws)
    bad = hearth("train", str(cfg), "--set", "name=toy-mt-yy", "--set", "request.collections=[more-yy]",
                 "--set", "model.pairs=[es-yy]", ws=ws, check=False)
    assert bad.returncode != 0 and "its vocabulary has no <2yy> tag" in bad.stdout + bad.stderr


def test_multilingual_and_reverse_directions_share_one_vocabulary_with_target_tags(workspace: Path, tmp_path: Path):
    from hearthkit.catalog.db import Catalog
    from hearthkit.data.loader import GovernedReader
    from hearthkit.governance.manifest import Request
    from hearthkit.governance.policy import compute_manifest
    from hearthkit.recipes.mt.model import MTConfig
    from hearthkit.recipes.mt.recipe import RECIPE, tag
    from hearthkit.store.cas import ContentStore

    for name, seed in (("toy-a", 1), ("toy-b", 2)):
        folder = make_parallel_corpus(tmp_path / name, n_train=30, n_dev=0, seed=seed)
        if name == "toy-b":  # a second language: same corpus shape, its own code
            (folder / "train.xx").rename(folder / "train.yy")
            (folder / "train.meta.csv").unlink()
        hearth("data", "import-parallel", str(folder), "--src", "es", "--tgt", "xx" if name == "toy-a" else "yy",
               "--collection", name, "--community", "Toy community", "--purpose", "research", ws=workspace)
    root = find_workspace(workspace)
    # Import records consent as given today, so the request is evaluated today (a fixed date would precede it).
    req = Request("research", "t", ("toy-a", "toy-b"), date.today().isoformat())
    man = compute_manifest(Catalog.open(root.db_url), req)
    cfg = MTConfig(pairs=["es-xx", "es-yy", "xx-es"], vocab_size=60, d_model=32, n_heads=2, enc_layers=1,
                   dec_layers=1, d_ff=64)
    reader = GovernedReader(ContentStore(root.store_dir), man.included)
    prep = RECIPE.prepare(cfg, man.included, tmp_path / "prep", reader=reader, manifest=man)
    vocab = prep["vocab"]
    data = RECIPE.dataset(cfg, prep, man.included, reader, train=True)
    assert len(data) == 30 + 30 + 30  # es->xx and xx->es from toy-a, es->yy from toy-b
    first_tokens = {int(data[i]["src"][0]) for i in range(len(data))}
    assert first_tokens == {vocab.piece_id(tag(x)) for x in ("xx", "yy", "es")}
    model = RECIPE.build_model(cfg, prep)
    loss, stats = RECIPE.loss(model, RECIPE.collate([data[i] for i in range(4)]))
    assert loss.item() > 0 and stats["samples"] == 4

    # Pairs longer than max_tokens: left out of training (listed in prep), or cut on both sides when asked.
    sizes = sorted(max(len(data[i]["src"]), len(data[i]["tgt"])) for i in range(len(data)))
    m = sizes[len(sizes) // 2]  # about half the pairs are longer
    short = cfg.model_copy(update={"max_tokens": m})
    prep = RECIPE.prepare(short, man.included, tmp_path / "prep-short", reader=reader, manifest=man)
    long = json.loads((tmp_path / "prep-short" / "long_pairs.json").read_text())
    assert long["of"] == 90 and len(long["pairs"]) == sum(n > m for n in sizes) > 0
    assert all(max(p["tokens"]) > m for p in long["pairs"])
    dropped = RECIPE.dataset(short, prep, man.included, reader, train=True)
    assert len(dropped) == 90 - len(long["pairs"])
    assert all(len(dropped[i]["src"]) <= m and len(dropped[i]["tgt"]) <= m for i in range(len(dropped)))
    cut = RECIPE.dataset(short.model_copy(update={"long_pairs": "cut"}), prep, man.included, reader, train=True)
    assert len(cut) == 90 and all(len(cut[i]["tgt"]) <= m and int(cut[i]["tgt"][-1]) == EOS for i in range(90))
    assert len(RECIPE.dataset(short, prep, man.included, reader, train=False)) == 90  # evaluation keeps them all

    # Subword regularisation: each draw of a training pair is segmented afresh into pieces that spell the same
    # text, never past max_tokens; evaluation and the default keep the one best segmentation.
    sampled_cfg = short.model_copy(update={"subword_alpha": 0.3})
    sampled = RECIPE.dataset(sampled_cfg, prep, man.included, reader, train=True)
    assert len(sampled) == len(dropped)
    vocab = prep["vocab"]
    draws = [[sampled[i]["tgt"].tolist() for _ in range(8)] for i in range(len(sampled))]
    assert sum(len({tuple(d) for d in ds}) > 1 for ds in draws) > len(sampled) // 2
    for i, ds in enumerate(draws):
        assert {vocab.decode(d) for d in ds} == {vocab.decode(dropped[i]["tgt"].tolist())}
        assert all(len(d) <= m and d[-1] == EOS for d in ds)
    assert all(int(sampled[i]["src"][0]) == int(dropped[i]["src"][0]) for i in range(len(sampled)))  # the tag
    best = RECIPE.dataset(sampled_cfg, prep, man.included, reader, train=False)
    plain = RECIPE.dataset(short, prep, man.included, reader, train=False)
    assert [best[i]["tgt"].tolist() for i in range(90)] == [plain[i]["tgt"].tolist() for i in range(90)]


def test_temperature_sampling_repeats_small_directions_and_never_cuts_the_largest():
    from hearthkit.recipes.mt.recipe import repeats, temperature_repeat

    counts = {"gn": 26000, "nah": 16000, "cni": 3900}
    assert repeats(counts, 1.0) == {"gn": 1, "nah": 1, "cni": 1}
    r5 = repeats(counts, 5.0)
    assert r5["gn"] == 1 and 1 <= r5["nah"] < r5["cni"]
    # Shares after repetition follow n^(1/5): cni's share 3900*r / total is near (its n^0.2 / sum of n^0.2).
    total = sum(n * r5[d] for d, n in counts.items())
    want = 3900 ** 0.2 / sum(n ** 0.2 for n in counts.values())
    assert abs(3900 * r5["cni"] / total - want) < 0.08  # repeats are whole numbers
    items, keys = ["a", "b", "c"], ["gn", "gn", "cni"]
    assert temperature_repeat(items, keys, 1.0) == items
    assert temperature_repeat(items, keys, 100.0) == ["a", "b", "c", "c"]

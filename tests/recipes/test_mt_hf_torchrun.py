"""Issue 20 "done when" for the M2M-100/NLLB-, mBART-, T5-shaped bases and one EO backbone, end to end.

Each tiny local base (random weights, built from a config: no pretrained weights are reachable here) is registered
as the workspace owner (lineage/base.add_base) and fine-tuned under governance twice, once uninterrupted and once
interrupted after step 3 and resumed from the step-2 checkpoint; both end with bitwise-identical weights. One
translation base (M2M-100) and the EO backbone (a ResNet, see EO) go through `hearth train` with torchrun
(2 workers, gloo), rank 1 SIGKILLed after step 3 and the group restarted by torchrun. mBART and ByT5 run the same
worker function in this process (a world of one, tests/in_process.py: stopped after step 3, that checkpoint dropped
as a kill leaves none, resumed): the distributed path does not depend on the architecture, and this saves each
worker's `import transformers`. The evaluation is per group (direction / scene), and the export
(engine/export.py, what `hearth export` runs) is a folder transformers loads with from_pretrained whose logits
(translation) or stage features (backbone) equal hearthkit's on the same input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hearthkit.demo.parallel import make_parallel_corpus
from tests import in_process
from tests.conftest import GEO_TEST_SCENES, hearth
from tests.recipes.hf_bases import make_backbone, make_base

pytestmark = pytest.mark.slow

TRAIN = {"steps": 4, "batch_size": 4, "lr": 0.001, "warmup": 1, "checkpoint_every": 2, "keep_last": 2,
         "log_every": 1, "seed": 7, "mlflow": False}
LAUNCH = {"nproc": 2, "threads_per_worker": 1, "timeout_s": 60}
MT_MODEL = {"pairs": ["es-xx"], "new_lang_init": "es", "beam": 2, "max_tokens": 40, "eval_batch": 16,
            "label_smoothing": 0.1}
# The EO case is a ResNet: its BatchNorm running statistics differ between DDP ranks, so it also proves that the
# checkpoint saves replicated tensors from rank 0 (a resume once mixed in rank 1's buffers).
EO = "resnet"
CASES = {  # kind -> (base builder, model section)
    "m2m100": (make_base, {**MT_MODEL}),
    "mbart": (make_base, {**MT_MODEL, "lang_codes": {"es": "es_XX"}}),
    "byt5": (make_base, {**MT_MODEL, "max_tokens": 64}),
    "resnet": (make_backbone, {"task": "segmentation", "patch": 32, "patches_per_epoch": 64, "tile": 64,
                             "margin": 0, "backbone_bands": ["B04", "B03", "B02"]}),
}
TORCHRUN = {"m2m100", EO}  # through `hearth train` and torchrun; the others in this process


def run_config(kind: str, name: str, base: str) -> dict:
    """A tiny run of KIND fine-tuning BASE: 4 steps, checkpoints every 2, 2 workers."""
    model = {**CASES[kind][1], "base": base}
    if kind == EO:
        request = {"purpose": "community_use", "requester": "eo-test", "collections": ["demo-lands"]}
        return {"name": name, "recipe": "landcover", "request": request,
                "split": {"by": "scene", "test_values": GEO_TEST_SCENES}, "model": model, "train": TRAIN,
                "launch": LAUNCH}
    return {"name": name, "recipe": "mt", "request": {"purpose": "research", "requester": "mt-test",
                                                      "collections": ["toy"]},
            "split": {"by": "split", "test_values": ["dev"]}, "model": model, "train": TRAIN, "launch": LAUNCH}


def config(tmp: Path, kind: str, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run_config(kind, name, f"tiny-{kind}")), encoding="utf-8")
    return path


def train(ws: Path, tmp: Path, kind: str, name: str, env: dict | None = None) -> str:
    return hearth("train", str(config(tmp, kind, name)), "--max-restarts", "1", ws=ws, env=env, timeout=600).stdout


@pytest.fixture(scope="module")
def hf_ws(geo_scenes: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """One workspace holding the toy parallel corpus and the synthetic scenes (imported by the CLI), and the texts."""
    from hearthkit.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("hf") / "ws").root
    corpus = make_parallel_corpus(tmp_path_factory.mktemp("toy") / "toy", n_train=32, n_dev=6)
    hearth("data", "import-parallel", str(corpus), "--src", "es", "--tgt", "xx", "--collection", "toy",
           "--community", "Toy community", "--purpose", "research", ws=ws)
    hearth("data", "import-geotiff", str(geo_scenes), ws=ws)
    texts = [x for f in ("train.es", "train.xx") for x in (corpus / f).read_text(encoding="utf-8").splitlines()]
    return ws, texts


def register(ws: Path, kind: str, folder: Path, texts: list[str]) -> None:
    """Build the tiny KIND base in FOLDER and register it as tiny-KIND, as the workspace owner."""
    import getpass

    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.lineage.base import add_base
    from hearthkit.workspace import open_workspace

    make_backbone(kind, folder) if kind == EO else make_base(kind, folder, texts)
    catalog = open_workspace_catalog(open_workspace(ws))
    try:
        add_base(catalog, folder, name=f"tiny-{kind}", licence="MIT", source="built by this test", by=None,
                 training_data="random initialisation, no data", owner=getpass.getuser())
    finally:
        catalog.close()


@pytest.mark.parametrize("kind", list(CASES))
def test_base_fine_tunes_under_torchrun_resumes_bitwise_and_exports_for_transformers(kind, hf_ws, tmp_path,
                                                                                     monkeypatch, capsys):
    ws, texts = hf_ws
    register(ws, kind, tmp_path / f"base-{kind}", texts)
    a_name, b_name = f"a-{kind}", f"b-{kind}"
    if kind in TORCHRUN:
        out_a = train(ws, tmp_path, kind, a_name)
        out_b = train(ws, tmp_path, kind, b_name, env={"HEARTH_TEST_KILL": "1:3"})
        assert "resumed from checkpoint step_00000002 at step 2" in out_b
        assert "test fault: SIGKILL after step 3" in (ws / "runs" / b_name / "logs" / "rank1.log").read_text()
    else:
        run_a = in_process.plan(ws, config(tmp_path, kind, a_name))
        capsys.readouterr()
        assert in_process.train_run(run_a, monkeypatch) == "finished"
        out_a = capsys.readouterr().out
        in_process.publish(ws, run_a)
        run_b = in_process.plan(ws, config(tmp_path, kind, b_name))
        log = in_process.interrupted_then_resumed(run_b, monkeypatch, after=3)
        assert "resumed from checkpoint step_00000002 at step 2" in log
    a = load_file(str(ws / "runs" / a_name / "final" / "model.safetensors"))
    b = load_file(str(ws / "runs" / b_name / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert "initialised from base tiny-" in out_a  # the base's weights were copied in before training

    rows = json.loads((ws / "models" / a_name / "evaluation.json").read_text())["rows"]
    group = "scene" if kind == EO else "direction"
    assert {r["by"] for r in rows} >= {"overall", group}
    per_group = [r for r in rows if r["by"] == group]
    assert per_group and sum(r["n"] for r in per_group) == next(r for r in rows if r["by"] == "overall")["n"]

    dest = tmp_path / "export"
    in_process.export(ws, a_name, dest)
    compare_with_transformers(kind, ws / "models" / a_name, dest)


@torch.no_grad()
def compare_with_transformers(kind: str, folder: Path, dest: Path) -> None:
    """The exported folder, loaded by transformers alone, computes what hearthkit's model computes."""
    from hearthkit.recipes.load import load_model_dir

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    recipe, cfg, prep, ours = load_model_dir(folder)
    if kind == EO:
        from hearthkit.recipes.eo_backbone import backbone_class

        spec = prep["backbone"]
        theirs = backbone_class(spec["config"]["model_type"], "x").from_pretrained(str(dest), local_files_only=True)
        theirs.eval()
        x = torch.randn(2, len(cfg.bands), 64, 64, generator=torch.Generator().manual_seed(0))
        feats = list(theirs(x).feature_maps)
        assert len(feats) == 4
        assert all(torch.equal(f, g) for f, g in zip(feats, ours.encoder(x), strict=True))
        # and the whole model, rebuilt from the exported backbone plus decoder.safetensors, gives the same logits
        ours.encoder.hf.load_state_dict(theirs.state_dict())
        ours.load_state_dict({**{f"encoder.hf.{k}": v for k, v in theirs.state_dict().items()},
                              **load_file(str(dest / "decoder.safetensors"))})
        assert torch.equal(ours(x), load_model_dir(folder)[3](x))
        return
    from transformers import AutoModelForSeq2SeqLM

    theirs = AutoModelForSeq2SeqLM.from_pretrained(str(dest), local_files_only=True)
    theirs.eval()
    hf = prep["hf"]
    src = torch.tensor([hf.source("el perro come pan", "es", "xx", 40)])
    tgt = torch.tensor([hf.target("tlein", "xx", 40)[:-1]])
    expected = ours(src, tgt)
    got = theirs(input_ids=src, attention_mask=torch.ones_like(src), decoder_input_ids=tgt).logits
    assert expected.shape == got.shape and expected.shape[-1] > hf.langs["xx"]["id"]
    assert torch.equal(expected, got)

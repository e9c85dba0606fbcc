"""Issue 19 class 8b: a wrong `model:` key or value, or an unknown recipe, is one line at plan time, not a crash.

Every recipe is attacked from three sides: the key or value written in the YAML file and checked by
`hearth plan`, the same file given to `hearth train`, and the value given as `--set model.x=…`. The refusal
names the file and the field path, suggests the field meant, starts nothing (no run folder, no catalog row) and
never suggests resuming.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hearthkit.cli.main import app
from hearthkit.engine.config import load_config
from hearthkit.errors import HearthError
from tests.conftest import ROOT, hearth

# recipe -> (misspelt key, the field it should be, a wrong value as --set, words the refusal must contain)
BAD = {
    "asr": ("d_modle", "d_model", "model.heads=many", "model.heads: Input should be a valid integer"),
    "mt": ("n_head", "n_heads", "model.beam=0", "model.beam: Input should be greater than 0"),
    "lm": ("n_heads", "n_head", "model.units=words", "model.units: Input should be 'char' or 'sentencepiece'"),
    "landcover": ("tsk", "task", "model.task=detection",
                  "model.task: Input should be 'segmentation' or 'classification'"),
    "change": ("fuson", "fusion", "model.depth=9", "model.depth: Input should be less than or equal to 5"),
}
# Values of the right type that the recipes' networks cannot be built with: refused by the schema too.
SHAPES = {
    "asr": (["model.arch=conformer", "model.d_model=100", "model.heads=3"],
            "d_model 100 must be a multiple of heads 3"),
    "mt": (["model.d_model=90", "model.n_heads=4"], "d_model 90 must be a multiple of n_heads 4"),
    "lm": (["model.n_embd=50", "model.n_head=4"], "n_embd 50 must be a multiple of n_head 4"),
    "landcover": (["model.patch=36", "model.depth=4"],
                  "patch 36 must be a multiple of 8 for segmentation (2^(depth-1))"),
    "change": (["model.patch=40", "model.depth=5"], "patch 40 must be a multiple of 16 (2^(depth-1))"),
    "mt-pairs": (["model.pairs=[es-nah-x]"], "model.pairs: Value error, 'es-nah-x' is not a direction"),
}


def _invoke(ws: Path, *args: str):
    """The CLI in this process (fast enough for the whole matrix), as a user would type it."""
    return CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})


def _assert_refused(res, *words: str) -> None:
    """Exit 2, one line on stderr with WORDS, no traceback, nothing on stdout, no suggestion to resume."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit)
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert "Traceback" not in res.output and "object at 0x" not in res.output
    assert "resume" not in res.output.lower()


def _demo_config(recipe: str, tmp_path: Path, **model) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / f"demo-{recipe}.yaml").read_text())
    cfg["model"].update(model)
    path = tmp_path / f"bad-{recipe}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("recipe", sorted(BAD))
def test_misspelt_model_key_is_refused_by_plan_and_train_naming_the_field(recipe, workspace, tmp_path):
    key, meant, _, _ = BAD[recipe]
    path = _demo_config(recipe, tmp_path, **{key: 3})
    for command in ("plan", "train"):
        res = _invoke(workspace, command, str(path))
        _assert_refused(res, str(path), f"field model.{key}: unknown field; did you mean {meant}?")
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())
    # The same key given as --set to the unchanged demo config.
    res = _invoke(workspace, "train", str(ROOT / "configs" / f"demo-{recipe}.yaml"), "--set", f"model.{key}=3")
    _assert_refused(res, f"field model.{key}: unknown field; did you mean {meant}?")


@pytest.mark.parametrize("recipe", sorted(BAD))
def test_wrong_model_value_is_refused_by_plan_and_train_with_what_was_given(recipe, workspace, tmp_path):
    _, _, assignment, words = BAD[recipe]
    field, value = assignment.split("=")
    demo = ROOT / "configs" / f"demo-{recipe}.yaml"
    for command in ("plan", "train"):
        _assert_refused(_invoke(workspace, command, str(demo), "--set", assignment), words, "(got ", value)
    path = _demo_config(recipe, tmp_path, **{field.split(".")[1]: yaml.safe_load(value)})
    for command in ("plan", "train"):
        _assert_refused(_invoke(workspace, command, str(path)), str(path), words)
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_shapes_the_network_cannot_take_are_refused_at_plan_time(case, workspace):
    sets, words = SHAPES[case]
    demo = ROOT / "configs" / f"demo-{case.split('-')[0]}.yaml"
    args = [a for s in sets for a in ("--set", s)]
    _assert_refused(_invoke(workspace, "plan", str(demo), *args), words.replace("Value error, ", ""))


def test_nested_keys_and_other_sections_suggest_the_field_meant(workspace):
    demo = str(ROOT / "configs" / "demo-asr.yaml")
    _assert_refused(_invoke(workspace, "plan", demo, "--set", "model.decode.bem=4"),
                    "field model.decode.bem: unknown field; did you mean beam?")
    _assert_refused(_invoke(workspace, "plan", demo, "--set", "model.decode.lm.wieght=0.1"),
                    "field model.decode.lm.wieght: unknown field; did you mean weight?")
    _assert_refused(_invoke(workspace, "plan", demo, "--set", "train.stesp=10"),
                    "field train.stesp: unknown field; did you mean steps?")
    _assert_refused(_invoke(workspace, "plan", demo, "--set", "model=3"), "field model: Input should be a valid "
                    "dictionary (got 3)")


def test_unknown_recipe_lists_the_known_ones(workspace, tmp_path):
    path = _demo_config("mt", tmp_path)
    path.write_text(path.read_text().replace("recipe: mt", "recipe: translation"))
    for command in ("plan", "train"):
        _assert_refused(_invoke(workspace, command, str(path)), str(path),
                        "field recipe: 'translation' is not a recipe; choose one of: asr, change, landcover, lm, mt")
    _assert_refused(_invoke(workspace, "plan", str(ROOT / "configs" / "demo-lm.yaml"), "--set", "recipe=gpt"),
                    "'gpt' is not a recipe")


def test_the_library_refuses_before_anything_is_planned(tmp_path):
    # load_config is what plan, train, submit slurm and submit k8s all read configs with.
    with pytest.raises(HearthError, match=r"field model\.vocab_sise: unknown field; did you mean vocab_size\?"):
        load_config(ROOT / "configs" / "demo-mt.yaml", ["model.vocab_sise=100"])
    with pytest.raises(HearthError, match=r"field model\.augment\.speed: Input should be a valid list \(got 'fast'\)"):
        load_config(ROOT / "configs" / "demo-asr.yaml", ["model.augment.speed=fast"])
    for path in sorted((ROOT / "configs").glob("*.yaml")):  # every shipped config stays valid
        load_config(path)


def test_the_real_cli_prints_one_line_and_no_traceback(workspace, tmp_path):
    path = _demo_config("change", tmp_path, widht=8)
    for command in ("plan", "train"):
        proc = hearth(command, str(path), ws=workspace, check=False)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.strip() == f"error: {path}: field model.widht: unknown field; did you mean width?"


def test_a_failed_launch_without_a_checkpoint_does_not_suggest_resuming(tmp_path):
    from hearthkit.launch.local import Launch, outcome

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shown: list[str] = []
    with pytest.raises(HearthError) as exc:
        outcome(run_dir, Launch(rc=1, started=time.time()), 60, shown.append)
    assert "nothing to resume" in str(exc.value) and "re-run the same command to resume" not in str(exc.value)
    # With a complete checkpoint, resuming is what to do.
    done = run_dir / "checkpoints" / "step_00000020"
    done.mkdir()
    (done / "meta.json").write_text("{}")
    with pytest.raises(HearthError, match="re-run the same command to resume from the last checkpoint"):
        outcome(run_dir, Launch(rc=1, started=time.time()), 60, shown.append)


def test_plan_refuses_an_init_from_that_train_would_refuse(workspace, tmp_path):
    # A parent model that does not exist, and an asr transfer folder that is not a model: plan says so, not train.
    _assert_refused(_invoke(workspace, "plan", str(ROOT / "configs" / "demo-mt.yaml"), "--set", "init_from=nope"),
                    "no model named 'nope'")
    not_a_model = tmp_path / "weights"
    not_a_model.mkdir()
    res = _invoke(workspace, "plan", str(ROOT / "configs" / "demo-asr.yaml"), "--set", f"model.init_from={not_a_model}")
    _assert_refused(res, str(not_a_model))


def test_train_refuses_nccl_on_a_machine_without_gpus(workspace):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA GPUs: nccl is a valid backend here")
    res = _invoke(workspace, "train", str(ROOT / "configs" / "demo-landcover.yaml"), "--set", "launch.backend=nccl")
    _assert_refused(res, "launch.backend: nccl needs CUDA GPUs and this machine has none")
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())

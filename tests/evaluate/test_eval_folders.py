"""`hearth eval --set init_from=FOLDER` gets planning's purpose check: evaluation cannot attach an unchecked model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.errors import HearthError
from hearthkit.evaluate.run import evaluate_run
from tests.conftest import hearth


def _catalog(ws: Path):
    from hearthkit.workspace import find_workspace

    return open_workspace_catalog(find_workspace(ws))


def test_a_folder_attached_at_evaluation_is_checked_like_at_planning(tiny_asr_model, tmp_path: Path) -> None:
    ws, _, _ = tiny_asr_model
    run_dir = ws / "runs" / "tiny-asr"
    foreign = tmp_path / "foreign"
    shutil.copytree(ws / "models" / "tiny-asr", foreign)
    (foreign / "restrictions.json").unlink()  # no signature of this workspace, not registered: not usable
    weights = load_file(str(foreign / "model.safetensors"))  # and other weights than any model of the workspace
    shifted = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    save_file(shifted, str(foreign / "model.safetensors"))
    before = (run_dir / "run.json").read_bytes()
    with pytest.raises(HearthError, match=r"^--set init_from: .*foreign"):
        evaluate_run(run_dir, overrides=[f"init_from={foreign}"], catalog=_catalog(ws))
    with pytest.raises(HearthError, match="catalog to check it against"):  # no catalog: the most restricted reading
        evaluate_run(run_dir, overrides=[f"init_from={ws / 'models' / 'tiny-asr'}"], catalog=None)
    with pytest.raises(HearthError, match="--set base"):
        evaluate_run(run_dir, overrides=["base=someone-elses"], catalog=_catalog(ws))
    assert (run_dir / "run.json").read_bytes() == before
    # The CLI says it in one line, and the workspace's own (signed) model folder passes the same check.
    r = hearth("eval", "tiny-asr", "--set", f"init_from={foreign}", ws=ws, check=False)
    assert r.returncode != 0 and "--set init_from" in r.stderr + r.stdout and "Traceback" not in r.stderr
    ok = evaluate_run(run_dir, overrides=[f"init_from={ws / 'models' / 'tiny-asr'}"], catalog=_catalog(ws))
    assert ok["rows"] and json.loads((run_dir / "run.json").read_text())["config"]["name"] == "tiny-asr"

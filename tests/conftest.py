"""Shared fixtures: a fresh workspace, a tiny synthetic speech archive, the CLI as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEARTH = [sys.executable, "-m", "hearthkit.cli.main"]


def hearth(*args: str, ws: Path | None = None, check: bool = True, timeout: float = 600,
           env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `hearth` CLI in a subprocess (as a user would), returning its output."""
    full_env = dict(os.environ, COLUMNS="200", **(env or {}))
    if ws is not None:
        full_env["HEARTH_WORKSPACE"] = str(ws)
    proc = subprocess.run([*HEARTH, *args], capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"hearth {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An initialised, empty workspace."""
    from hearthkit.workspace import init_workspace

    return init_workspace(tmp_path / "ws").root


@pytest.fixture(scope="session")
def tiny_speech_archive(tmp_path_factory) -> Path:
    """A tiny espeak-ng archive (4 voices x 12 sentences), made once per test session; copy before changing."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to synthesise test speech (`make test` installs them)")
    from hearthkit.demo.speech import make_speech_archive

    folder = tmp_path_factory.mktemp("archive") / "tiny"
    make_speech_archive(folder, n_sentences=12, n_voices=4, secret=3)
    return folder


@pytest.fixture
def speech_archive(tiny_speech_archive: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny archive that a test may modify."""
    dest = tmp_path / "archive"
    shutil.copytree(tiny_speech_archive, dest)
    return dest


# --- geo (issue 6): synthetic scenes and one trained change model shared by the change and monitor tests ---

GEO_TEST_SCENES = ["scene04", "scene05"]


@pytest.fixture(scope="session")
def geo_scenes(tmp_path_factory) -> Path:
    """Six synthetic 128x128 scene pairs in the OSCD layout (scene01's date 2 is 3 px smaller); do not modify."""
    from hearthkit.demo.geo import make_geo_scenes

    folder = tmp_path_factory.mktemp("geo") / "scenes"
    make_geo_scenes(folder, n_scenes=6, size=128, seed=0, shrink_after=(1,))
    return folder


@pytest.fixture(scope="session")
def trained_change(geo_scenes: Path, tmp_path_factory) -> Path:
    """A workspace with the scenes imported and a `change` model trained by `hearth train` (torchrun, 2 workers)."""
    from hearthkit.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("geo-ws") / "ws").root
    hearth("data", "import-geotiff", str(geo_scenes), ws=ws)
    hearth("train", str(ROOT / "configs" / "demo-change.yaml"), "--set", "name=test-change",
           "--set", f"split.test_values={GEO_TEST_SCENES}", "--set", "model.patch=32",
           "--set", "train.steps=100", "--set", "train.checkpoint_every=100", ws=ws)
    return ws


TINY_ASR_CONFIG = """\
name: tiny-asr
recipe: asr
request:
  purpose: language_revitalization
  requester: test
  collections: [demo-korero]
split:
  by: text
  test_fraction: 0.25
model:
  arch: conformer
  d_model: 32
  heads: 2
  conv_channels: 16
  layers: 1
  conv_kernel: 7
  decode:
    beam: 4
    lm: {kind: ngram, order: 3, weight: 0.3}
train:
  steps: 40
  batch_size: 8
  lr: 0.003
  warmup: 5
  checkpoint_every: 20
  log_every: 10
launch:
  nproc: 1
"""


@pytest.fixture(scope="session")
def tiny_asr_model(tiny_speech_archive: Path, tmp_path_factory) -> tuple[Path, str, Path]:
    """A tiny Conformer-CTC trained end to end by `hearth train` on the tiny archive: (workspace, stdout, config)."""
    root = tmp_path_factory.mktemp("asr")
    ws = root / "ws"
    hearth("init", str(ws))
    hearth("data", "import", str(tiny_speech_archive), ws=ws)
    cfg = root / "tiny-asr.yaml"
    cfg.write_text(TINY_ASR_CONFIG, encoding="utf-8")
    out = hearth("train", str(cfg), ws=ws, timeout=300).stdout
    # Other tests add models and audit events to this shared workspace; tests that count them start from this
    # untouched copy (tests/web/w2world.py).
    shutil.copytree(ws, root / "pristine" / "ws")
    if (root / "ws.keys").exists():
        shutil.copytree(root / "ws.keys", root / "pristine" / "ws.keys")
    return ws, out, cfg

"""Issue 19 class 8c: bad input through the real CLI gets one line that names the file or field — never a Python
object's repr (`<_io.BytesIO object at 0x…>`) and never a traceback. Each case below crashed or misprinted before.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, hearth

DEMO_MT = str(ROOT / "configs" / "demo-mt.yaml")


def _one_clean_line(proc) -> str:
    """The refusal: exit 2, exactly one line on stderr, no traceback, no object repr anywhere."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "object at 0x" not in out, out
    assert proc.returncode == 2, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    return lines[0]


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {"binary": tmp_path / "binary.yaml", "date": tmp_path / "date.yaml", "folder": tmp_path / "folder"}
    files["binary"].write_bytes(b"\xff\xfe\x00\x01name")
    cfg = yaml.safe_load(Path(DEMO_MT).read_text())
    text = yaml.safe_dump(cfg).replace("requester: demo-technologist", "requester: demo-technologist\n  as_of: "
                                                                         "2024-02-30")
    files["date"].write_text(text)
    files["folder"].mkdir()
    return files


def test_bad_config_files_are_one_line_naming_the_file(workspace, bad_files):
    line = _one_clean_line(hearth("plan", str(bad_files["folder"]), ws=workspace, check=False))
    assert str(bad_files["folder"]) in line and "is a folder" in line and "hearth new" in line
    line = _one_clean_line(hearth("train", str(bad_files["binary"]), ws=workspace, check=False))
    assert str(bad_files["binary"]) in line and "not valid UTF-8 YAML" in line
    line = _one_clean_line(hearth("plan", str(bad_files["date"]), ws=workspace, check=False))
    assert str(bad_files["date"]) in line and "day is out of range for month" in line


def test_bad_values_are_printed_as_written(workspace):
    # An impossible date given on the command line.
    line = _one_clean_line(hearth("plan", DEMO_MT, "--set", "request.as_of=2020-13-01", ws=workspace, check=False))
    assert line == "error: --set request.as_of: the value '2020-13-01' is not valid (month must be in 1..12)"
    # Square brackets in a value are text, not rich markup: `[/]` used to crash the error printer itself.
    line = _one_clean_line(hearth("plan", DEMO_MT, "--set", "request.collections=['[/]']", ws=workspace,
                                  check=False))
    assert "collection '[/]' is not in the catalog" in line
    line = _one_clean_line(hearth("models", "show", "[bold]x[/]", ws=workspace, check=False))
    assert "no model named '[bold]x[/]'" in line
    line = _one_clean_line(hearth("new", "[red]asr", check=False))
    assert "'[red]asr' is not a recipe" in line


def test_wrong_model_section_names_field_without_pydantic_internals(workspace):
    line = _one_clean_line(hearth("train", DEMO_MT, "--set", "model.pairs={a: 1}", ws=workspace, check=False))
    assert "field model.pairs: Input should be a valid list" in line
    assert "errors.pydantic.dev" not in line and "type=" not in line and "input_value" not in line

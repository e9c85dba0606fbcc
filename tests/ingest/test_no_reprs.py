"""Issue 19, class 8c (import side): messages name the file, never a Python object repr such as
`<_io.BytesIO object at 0x…>` (libsndfile's name for an in-memory buffer)."""

from __future__ import annotations

import re

import yaml
from typer.testing import CliRunner

from hearthkit.cli.main import app
from tests.ingest.archive_maker import speech_items, write_info
from tests.ingest.test_elan import ARCHIVE, EAF

REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def cli(ws, *args: str):
    return CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})


def test_corrupt_recording_in_an_archive_is_named_without_a_repr(tmp_path, workspace):
    folder = tmp_path / "archive"
    speech_items(folder, 2)
    write_info(folder)
    (folder / "utt001.wav").write_bytes(b"RIFF" + b"\x17" * 300)  # a header, then nothing an audio decoder reads
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("skipped utt001.wav"))
    assert "not readable audio" in line and not REPR.search(res.output) and "BytesIO" not in res.output, line


def test_corrupt_recording_behind_an_eaf_is_one_line_naming_it(tmp_path, workspace):
    (tmp_path / "archive.yaml").write_text(yaml.safe_dump(ARCHIVE), encoding="utf-8")
    (tmp_path / "talk.wav").write_bytes(b"not audio at all" * 64)
    (tmp_path / "talk.eaf").write_text(EAF.format(audio="talk.wav"), encoding="utf-8")
    res = cli(workspace, "data", "import-eaf", str(tmp_path / "talk.eaf"))
    assert res.exit_code == 2, res.output
    assert "talk.wav: not readable audio" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not REPR.search(res.output) and "Traceback" not in res.output

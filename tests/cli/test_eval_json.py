"""Issue 19 class 10: `hearth eval --json` and `hearth models --json` on a model trained by `hearth train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import hearth

pytestmark = pytest.mark.slow  # the shared `trained_change` fixture trains with torchrun


def test_eval_and_models_json_on_a_trained_model(trained_change: Path):
    ws = trained_change
    # --set re-decodes: the result goes beside the run, the published card is left as it is.
    proc = hearth("eval", "test-change", "--set", "tile=128", "--json", ws=ws)
    doc = json.loads(proc.stdout)  # stdout is the JSON object and nothing else
    assert doc["model"] == "test-change" and doc["set"] == ["tile=128"] and doc["split"] == "test"
    overall = next(r for r in doc["rows"] if r["by"] == "overall")
    assert overall["n"] > 0 and all(m in overall for m in doc["metrics"])
    written = json.loads(Path(doc["results"]).read_text())
    assert written["rows"] == doc["rows"]  # the same numbers as the file the human output points to
    models = json.loads(hearth("models", "--json", ws=ws).stdout)["models"]
    row = next(m for m in models if m["model"] == "test-change")
    assert row["recipe"] == "change" and row["status"] == "active" and row["metrics"]
    assert json.loads(hearth("models", "ls", "--json", ws=ws).stdout)["models"] == models
    runs = json.loads(hearth("runs", "--json", ws=ws).stdout)["runs"]
    run = next(r for r in runs if r["run"] == "test-change")
    assert run["status"] == "finished" and run["step"] == run["steps"] == 100

"""Issue 19 class 10: what a new user hit — a starter config, `hearth models` listing, --json, tables at 80 columns.

The real CLI on a real demo workspace (speech, parallel text, geo scenes): in a subprocess where the terminal
or the command line matters, in this process (CliRunner) elsewhere, to keep the test short.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hearthkit.cli.main import app
from hearthkit.engine.config import RunConfig, load_config, model_schema
from tests.conftest import HEARTH, ROOT, hearth

RECIPES = ["asr", "mt", "lm", "landcover", "change"]
DEMO_COLLECTION = {"asr": "demo-korero", "mt": "toy", "lm": "toy", "landcover": "demo-lands", "change": "demo-lands"}


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory, tiny_speech_archive: Path) -> Path:
    """A workspace with the demo speech archive, parallel text and geo scenes imported."""
    root = tmp_path_factory.mktemp("newuser")
    ws = root / "ws"
    hearth("init", str(ws))
    hearth("data", "import", str(tiny_speech_archive), ws=ws)
    hearth("demo-data", "parallel", str(root / "toy"), ws=ws)
    hearth("data", "import-parallel", str(root / "toy"), "--src", "es", "--tgt", "xx", "--collection", "toy",
           "--community", "Toy community", "--purpose", "language_revitalization", ws=ws)
    hearth("demo-data", "geo", str(root / "geo"), ws=ws)
    hearth("data", "import-geotiff", str(root / "geo"), ws=ws)
    return ws


def cli(*args: str, ws: Path | None = None, code: int = 0):
    """The CLI in this process (the full subprocess path is covered by the other tests): its result."""
    res = CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws or ""), "COLUMNS": "200"})
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    return res


def _fields(model, prefix: str = "") -> list[tuple[str, str | None]]:
    """(dotted path, description) of every field of MODEL, nested models included."""
    out = []
    for name, info in model.model_fields.items():
        out.append((prefix + name, info.description))
        sub = info.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out += _fields(sub, f"{prefix}{name}.")
    return out


@pytest.mark.parametrize("recipe", RECIPES)
def test_hearth_new_writes_every_field_with_its_description_and_plans_after_naming_the_collection(
        recipe, demo_ws, tmp_path):
    text = hearth("new", recipe).stdout
    # Every field of the run config and of the recipe's model section is there, its description as a comment.
    described = _fields(RunConfig) + [(f"model.{p}", d) for p, d in _fields(model_schema(recipe))]
    flat = " ".join(line.strip().lstrip("# ").strip() for line in text.splitlines() if line.strip().startswith("#"))
    doc = yaml.safe_load(text)
    for path, description in described:
        node = doc
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"{path} missing from `hearth new {recipe}`"
            node = node[part]
        if description:
            assert " ".join(description.split()) in flat, f"{path}: description not written as a comment"
    # At their defaults, as the schema says.
    schema = model_schema(recipe)
    assert doc["model"] == json.loads(schema().model_dump_json())
    # Valid as written; after naming a collection of the workspace it passes `hearth plan`.
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert load_config(path).recipe == recipe
    refused = cli("plan", str(path), ws=demo_ws, code=2)
    assert "collection 'my-collection' is not in the catalog" in refused.stderr
    path.write_text(text.replace("[my-collection]", f"[{DEMO_COLLECTION[recipe]}]"))
    plan = json.loads(cli("plan", str(path), "--json", ws=demo_ws).stdout)
    assert plan["recipe"] == recipe and plan["included"] > 0


def test_hearth_new_unknown_recipe_is_one_line(tmp_path):
    proc = hearth("new", "tts", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: hearth new: field recipe: 'tts' is not a recipe; choose one of: " \
                                  "asr, change, landcover, lm, mt, st"


def test_run_schema_validates_shipped_configs_and_refuses_a_misspelt_key(tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the published schema")
    for recipe in RECIPES:
        schema = json.loads(cli("schema", "run", "--recipe", recipe).stdout)
        jsonschema.Draft202012Validator.check_schema(schema)
        starter = yaml.safe_load(cli("new", recipe).stdout)
        jsonschema.validate(json.loads(json.dumps(starter, default=str)), schema)
        bad = {**starter, "model": {**starter["model"], "no_such_field": 1}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    generic = json.loads(hearth("schema", "run").stdout)  # checks the model section of whichever recipe is named
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        jsonschema.validate(json.loads(json.dumps(cfg, default=str)), generic)
        with pytest.raises(jsonschema.ValidationError, match="'no_such_field' was unexpected"):
            jsonschema.validate({**cfg, "model": {**cfg["model"], "no_such_field": 1}}, generic)
        recipe_schema = json.loads(cli("schema", "run", "--recipe", cfg["recipe"]).stdout)
        jsonschema.validate(json.loads(json.dumps(cfg, default=str)), recipe_schema)


def test_published_schema_is_what_the_code_says():
    from hearthkit.engine.starter import run_schema

    published = json.loads((ROOT / "docs" / "schemas" / "run.schema.json").read_text())
    assert published == run_schema(), "regenerate: hearth schema run > docs/schemas/run.schema.json"


def test_models_alone_lists_and_subcommands_still_work(demo_ws):
    listed = cli("models", ws=demo_ws)
    assert "model" in listed.stdout and "status" in listed.stdout and "Usage" not in listed.stdout
    assert json.loads(cli("models", "--json", ws=demo_ws).stdout) == {"models": []}
    assert json.loads(cli("models", "ls", "--json", ws=demo_ws).stdout) == {"models": []}
    assert "no model named 'nope'" in cli("models", "show", "nope", ws=demo_ws, code=2).stderr


def test_json_on_listing_and_plan_commands_is_json_alone_on_stdout(demo_ws):
    data = json.loads(cli("data", "ls", "--json", ws=demo_ws).stdout)
    by_name = {c["collection"]: c for c in data["collections"]}
    assert by_name["toy"]["items"] > 0 and by_name["toy"]["labels"].get("tk:secret_sacred", 0) > 0
    assert by_name["demo-lands"]["community"] == "Demo River Nation"
    plan = json.loads(cli("plan", str(ROOT / "configs" / "demo-asr.yaml"), "--json", ws=demo_ws).stdout)
    assert plan["request"]["collections"] == ["demo-korero"] and plan["included"] > 0
    assert {"tk:secret_sacred", "individual_consent"} <= set(plan["excluded"])
    assert len(plan["manifest_sha256"]) == 64
    # The human plan reports the same counts.
    human = cli("plan", str(ROOT / "configs" / "demo-asr.yaml"), ws=demo_ws).stdout
    assert f"manifest sha256 {plan['manifest_sha256']}" in human
    runs = json.loads(cli("runs", "--json", ws=demo_ws).stdout)
    assert isinstance(runs["runs"], list) and runs["mlflow_store"].startswith("sqlite:///")
    assert json.loads(cli("jobs", "--json", ws=demo_ws).stdout) == {"jobs": []}
    events = json.loads(cli("audit", "log", "--json", ws=demo_ws).stdout)["events"]
    assert all({"seq", "kind", "actor", "data"} <= set(e) for e in events)


def _narrow(*args: str, ws: Path) -> str:
    """The CLI's stdout in an 80-column terminal (what a new user's default window shows)."""
    env = dict(os.environ, COLUMNS="80", HEARTH_WORKSPACE=str(ws))
    proc = subprocess.run([*HEARTH, *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _column(table: str, index: int) -> str:
    """The text of column INDEX of a rich table, read down its lines: a cell folded onto more lines reads whole."""
    parts = (line.split("│") for line in table.splitlines())
    return "".join(p[index + 1].strip() for p in parts if len(p) > index + 2)


def test_tables_keep_long_ids_whole_at_80_columns(demo_ws, tmp_path):
    from hearthkit.catalog.db import Catalog
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import find_workspace

    name = "landcover-segmentation-river-nation-2026-spring"
    cfg = yaml.safe_load((ROOT / "configs" / "demo-landcover.yaml").read_text())
    cfg["name"] = name
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ws = find_workspace(demo_ws)
    plan_run(ws, Catalog.open(ws.db_url), load_config(path))  # a planned run, as `hearth train` leaves it
    # A job record as `hearth submit k8s --apply` writes it (no cluster here), with a long job name.
    job = f"hearth-{name}-7f3a9c"
    (demo_ws / "runs" / name / "jobs.jsonl").write_text(json.dumps(
        {"scheduler": "k8s", "job_id": job, "submitted_at": "2026-12-05T03:00:00", "state": "submitted"}) + "\n")
    runs, jobs, data = _narrow("runs", ws=demo_ws), _narrow("jobs", ws=demo_ws), _narrow("data", "ls", ws=demo_ws)
    for out in (runs, jobs, data):
        assert "…" not in out and all(len(line) <= 80 for line in out.splitlines()), out
    assert name in _column(runs, 0)
    assert name in _column(jobs, 0) and job in _column(jobs, 2)
    assert all(c in _column(data, 0) for c in ("demo-korero", "demo-lands", "toy"))

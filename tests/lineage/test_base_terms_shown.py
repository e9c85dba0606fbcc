"""A base model's terms wherever a model is shown: `hearth plan`, `hearth models show [--json]`, the web model page.

Reuses test_base's real HF-format base folders and its published `ft` model (no training, no transformers).
"""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from hearthkit.catalog.models import Collection, Item, Person, Run, RunItem
from hearthkit.cli.main import app as cli
from hearthkit.governance import identity
from hearthkit.lineage import base as lb
from tests.lineage.test_base import NC, _published_from_base, hf_folder, ws_cat  # noqa: F401 (ws_cat: a fixture)


@pytest.fixture(scope="module")
def ft(ws_cat, tmp_path_factory):  # noqa: F811
    """Model `ft-terms` fine-tuned from base `mms-terms` (CC-BY-NC-4.0, training data undeclared)."""
    ws, catalog = ws_cat
    folder = hf_folder(tmp_path_factory.mktemp("terms") / "mms")
    lb.add_base(catalog, folder, name="mms-terms", licence="CC-BY-NC-4.0", by="aroha",
                source="https://huggingface.co/facebook/mms-300m")
    with catalog.session() as s:
        s.add(Collection(name="c", community="Ngāti Demo", access="community"))
    _published_from_base(ws, catalog, "mms-terms", "ft-terms")
    with catalog.session() as s:  # the run learned from one of the community's items: its stewards may see it
        c = s.scalar(select(Collection).where(Collection.name == "c"))
        it = Item(collection_id=c.id, external_id="i1", kind="text", content_hash="0" * 64, size_bytes=1)
        s.add(it)
        s.flush()
        s.add(RunItem(run_id=s.scalar(select(Run.id).where(Run.name == "ft-terms")), item_id=it.id))
    return ws, catalog, lb.hash_base_folder(folder)


def test_plan_and_models_show_name_the_base_its_hash_licence_and_inherited_terms(ft, tmp_path):
    ws, _, digest = ft
    env = {"HEARTH_WORKSPACE": str(ws.root), "COLUMNS": "300"}
    runner = CliRunner()
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: plan-terms\nrecipe: asr\nmodel: {base: mms-terms}\n"
                   "request: {purpose: research, requester: team, collections: [c]}\n")
    plan = runner.invoke(cli, ["plan", str(cfg)], env=env)
    assert plan.exit_code == 0, plan.output
    assert f"fine-tunes base mms-terms (wav2vec2, sha256 {digest}), licence CC-BY-NC-4.0" in plan.output
    assert f"inherits from it: {NC}, {lb.UNDECLARED_KEY}" in plan.output
    assert "every model derived from mms-terms is non-commercial" in plan.output
    doc = json.loads(runner.invoke(cli, ["plan", str(cfg), "--json"], env=env).output)
    assert doc["base"]["name"] == "mms-terms" and doc["base"]["content_hash"] == digest
    assert doc["base"]["inherits"] == [NC, lb.UNDECLARED_KEY] and doc["base"]["licence"] == "CC-BY-NC-4.0"
    # A commercial plan is refused in one line by the same library check as training, not by the surface.
    refused = runner.invoke(cli, ["plan", str(cfg), "--set", "request.purpose=commercial"], env=env)
    assert refused.exit_code != 0 and "non-commercial" in refused.output and "Traceback" not in refused.output

    shown = runner.invoke(cli, ["models", "show", "ft-terms"], env=env)
    assert shown.exit_code == 0, shown.output
    assert (f"base: mms-terms (wav2vec2), sha256 {digest}, licence CC-BY-NC-4.0, source "
            "https://huggingface.co/facebook/mms-300m; training data: undeclared; inherited from it: "
            f"{NC}, {lb.UNDECLARED_KEY}") in shown.output
    js = json.loads(runner.invoke(cli, ["models", "show", "ft-terms", "--json"], env=env).output)
    assert js["base"] == lb.base_terms(lb.base_for_run(ft[1], {"base": "mms-terms"}, "research", "team"))
    assert js["base"]["inherits"] == [NC, lb.UNDECLARED_KEY] and set(js["base"]["inherits"]) <= set(js["restrictions"])


def test_the_web_model_page_shows_the_base_terms(ft, monkeypatch):
    from argon2 import PasswordHasher

    from hearthkit.web.app import create_app

    monkeypatch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))  # cheap

    ws, catalog, digest = ft
    otp = identity.reset_password(catalog, "aroha")
    with catalog.session() as s:
        pid = s.scalar(select(Person.id).where(Person.name == "aroha"))
    identity.change_password(catalog, pid, otp, "correct horse battery")
    web = create_app(ws, secret=b"t" * 64)
    with TestClient(web) as c:
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', c.get("/login").text).group(1)
        c.post("/login", data={"name": "aroha", "password": "correct horse battery", "csrf_token": token})
        api = c.get("/api/v1/models/ft-terms").json()
        assert api.get("base", {}).get("name") == "mms-terms" and api["base"]["content_hash"] == digest, api
        assert api["base"]["inherits"] == [NC, lb.UNDECLARED_KEY]
        page = c.get("/models/ft-terms").text
        for fact in ("Base model (pretrained)", "mms-terms", digest, "CC-BY-NC-4.0", NC, lb.UNDECLARED_KEY,
                     "every model derived from mms-terms is non-commercial"):
            assert fact in page, fact

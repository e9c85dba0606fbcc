"""Finding a model for use: one check (status, inherited labels, protocols) for every command that uses one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model, Run
from hearthkit.errors import HearthError
from hearthkit.recipes.load import resolve_model
from hearthkit.workspace import init_workspace


@pytest.fixture
def registered(tmp_path: Path):
    """A workspace holding model `nc` (learned from tk:non_commercial items) and its folder."""
    ws = init_workspace(tmp_path / "ws")
    folder = ws.models_dir / "nc"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"name": "nc", "recipe": "mt", "model": {}}))
    catalog = Catalog.open(ws.db_url)
    with catalog.session() as s:
        run = Run(name="nc", recipe="mt", purpose="research", requester="team", manifest_hash="0" * 64)
        s.add(run)
        s.flush()
        s.add(Model(name="nc", run_id=run.id, path=str(folder), recipe="mt", restrictions=["tk:non_commercial"]))
        s.commit()
    return ws, folder, catalog


def test_a_registered_model_is_checked_for_the_stated_purpose_by_name_and_by_folder(registered):
    ws, folder, _ = registered
    assert resolve_model("nc", ws.root, "research") == folder
    with pytest.raises(HearthError, match="tk:non_commercial from its training data: no commercial use"):
        resolve_model("nc", ws.root, "commercial")
    with pytest.raises(HearthError, match="no commercial use"):  # its folder path is no way around the check
        resolve_model(str(folder), ws.root, "commercial")


def test_a_revoked_model_is_refused_even_without_a_purpose(registered):
    ws, folder, catalog = registered
    with catalog.session() as s:
        s.query(Model).filter_by(name="nc").update({"status": "revoked"})
        s.commit()
    for ref in ("nc", str(folder)):
        with pytest.raises(HearthError, match="revoked"):
            resolve_model(ref, ws.root)


def test_unknown_names_fail_in_one_line_and_unregistered_folders_are_refused(registered, tmp_path: Path):
    ws, _, _ = registered
    with pytest.raises(HearthError, match="model 'nope' is not in this workspace"):
        resolve_model("nope", ws.root, "research")
    elsewhere = tmp_path / "from-a-partner"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("{}")
    # Issue 19 class 5: a folder with no restrictions of ours is the most restricted reading, not "anything goes".
    with pytest.raises(HearthError, match="no restrictions.json; a steward must register it first"):
        resolve_model(str(elsewhere), ws.root, "commercial")
    assert resolve_model(str(elsewhere), None) == elsewhere  # a component (fusion lm) with no use of its own

"""Issue 19, class 1 for parallel text: a SPLIT.meta.csv that cannot be read exactly never loses its labels.

Real files in a real workspace (SQLite): a mis-cased labels column is read as labels; a misspelt, ragged or
foreign-language labels column refuses the whole import (it is one transaction) with one line; huge fields read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item, Label
from hearthkit.errors import HearthError
from hearthkit.ingest.archive import ArchiveInfo
from hearthkit.ingest.parallel_text import import_parallel
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace

INFO = ArchiveInfo.model_validate({
    "collection": {"name": "pairs", "community": "Test Community"},
    "collective_consent": [{"subject": "Test Community", "given_by": "council", "given_at": "2026-01-05",
                            "purposes": ["research"]}]})


def corpus(folder: Path, meta: str) -> Path:
    folder.mkdir()
    (folder / "train.es").write_text("hola\nadiós\n", encoding="utf-8")
    (folder / "train.nah").write_text("niltze\nmotta\n", encoding="utf-8")
    (folder / "train.meta.csv").write_text(meta, encoding="utf-8")
    return folder


def run(workspace: Path, folder: Path):
    ws = open_workspace(workspace)
    catalog = Catalog.open(ws.db_url)
    return catalog, import_parallel(catalog, Store(ws.store_dir, ws.keys_dir), folder, "es", "nah", INFO)


def test_mis_cased_labels_columns_still_label(tmp_path, workspace):
    folder = corpus(tmp_path / "c", f"domain,Labels,LABELS.NAH,note\nhome,tk:non_commercial,,{'x' * 200_000}\n"
                                   "home,,tk:secret_sacred,\n")
    catalog, report = run(workspace, folder)
    assert report.imported == 4
    with catalog.session() as s:
        got = {(e, k) for e, k in s.execute(select(Item.external_id, Label.key).join(Label, Label.item_id == Item.id))}
    assert got == {("c/train.es/000001", "tk:non_commercial"), ("c/train.nah/000001", "tk:non_commercial"),
                   ("c/train.nah/000002", "tk:secret_sacred")}


@pytest.mark.parametrize("meta,fragment", [
    ("domain,lables\nhome,tk:secret_sacred\nhome,\n", "column 'lables' is not one hearthkit reads"),
    ("domain,labels.fr\nhome,tk:secret_sacred\nhome,\n", "labels a language that is neither es nor nah"),
    ("domain,labels\nhome,tk:secret_sacred,extra\nhome,\n", "line 2: more fields than the header"),
    ("domain,labels\nhome\nhome,\n", "line 2: fewer fields than the header"),
    ("domain,\nhome,tk:secret_sacred\nhome,\n", "a value stands in a column with no name"),
    ("domain,labels\nhome,\"tk:secret_sacred\nhome,\n", "line 2: not readable CSV"),
])
def test_unreadable_meta_refuses_the_import(tmp_path, workspace, meta, fragment):
    folder = corpus(tmp_path / "c", meta)
    with pytest.raises(HearthError, match=fragment) as err:
        run(workspace, folder)
    assert len(str(err.value).splitlines()) == 1
    with Catalog.open(open_workspace(workspace).db_url).session() as s:
        assert s.scalar(select(Item)) is None

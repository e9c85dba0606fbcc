"""Parallel text import: items per side, content hashes, idempotence, bad input, policy on pairs."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.demo.parallel import make_parallel_corpus
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import compute_manifest
from hearthkit.recipes.mt.recipe import pair_up
from hearthkit.workspace import find_workspace
from tests.conftest import hearth

IMPORT = ["data", "import-parallel", "--src", "es", "--tgt", "xx", "--collection", "toy", "--community",
          "Toy community", "--purpose", "research", "--licence", "research only", "--citation", "Toy corpus 2026",
          "--label", "bc:research"]


def _catalog(ws: Path) -> Catalog:
    return Catalog.open(find_workspace(ws).db_url)


def test_import_items_per_side_with_hashes_consent_labels_and_idempotence(workspace: Path, tmp_path: Path):
    folder = make_parallel_corpus(tmp_path / "toy", n_train=12, n_dev=4, secret=2)
    out = hearth(*IMPORT[:2], str(folder), *IMPORT[2:], ws=workspace)
    assert "32 text items imported (16 pairs)" in out.stdout
    cat = _catalog(workspace)
    with cat.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == "toy"))
        assert (coll.licence, coll.citation, coll.community) == ("research only", "Toy corpus 2026", "Toy community")
        consent = s.scalar(select(Consent).where(Consent.collection_id == coll.id))
        assert consent.scope == "collective" and consent.purposes == ["research"]
        assert s.scalar(select(Label.key).where(Label.collection_id == coll.id)) == "bc:research"
        items = s.scalars(select(Item).where(Item.collection_id == coll.id).order_by(Item.external_id)).all()
        first_es = (folder / "train.es").read_text(encoding="utf-8").splitlines()[0]
        es1 = next(i for i in items if i.external_id == "toy/train.es/000001")
        xx1 = next(i for i in items if i.external_id == "toy/train.xx/000001")
        assert es1.content_hash == hashlib.sha256(first_es.encode("utf-8")).hexdigest()
        assert es1.kind == xx1.kind == "text" and es1.text is None  # text reaches runs only via the store
        assert es1.meta["pair"] == xx1.meta["pair"] == "toy/train/000001"
        assert (es1.meta["lang"], xx1.meta["lang"], es1.meta["domain"]) == ("es", "xx", "cuentos")
        # The label sits on the xx side of the two secret pairs only.
        labelled = s.execute(select(Item.external_id).join(Label, Label.item_id == Item.id)).scalars().all()
        assert sorted(labelled) == ["toy/train.xx/000001", "toy/train.xx/000002"]
    again = hearth(*IMPORT[:2], str(folder), *IMPORT[2:], ws=workspace)
    assert "0 text items imported (0 pairs), 32 already present" in again.stdout
    with cat.session() as s:
        assert s.scalar(select(func.count(Item.id))) == 32
        assert s.scalar(select(func.count(Consent.id))) == 1
        assert s.scalar(select(func.count(Label.id))) == 3


def test_pair_with_one_side_excluded_is_dropped_with_the_policy_reason(workspace: Path, tmp_path: Path):
    folder = make_parallel_corpus(tmp_path / "toy", n_train=6, n_dev=0, secret=1)
    hearth(*IMPORT[:2], str(folder), *IMPORT[2:], ws=workspace)
    man = compute_manifest(_catalog(workspace), Request("research", "tester", ("toy",), date.today().isoformat()))
    assert [e["external_id"] for e in man.excluded] == ["toy/train.xx/000001"]
    examples, dropped = pair_up(man.included, [("es", "xx")], man)
    assert len(examples) == 5
    assert dropped[0]["pair"] == "toy/train/000001" and dropped[0]["kept_out_side"] == "toy/train.es/000001"
    assert "tk:secret_sacred" in dropped[0]["reason"] and "steward" in dropped[0]["reason"]


@pytest.mark.parametrize("case", ["unequal", "not_utf8", "missing_side"])
def test_bad_input_is_one_line_and_writes_nothing(workspace: Path, tmp_path: Path, case: str):
    folder = make_parallel_corpus(tmp_path / "toy", n_train=5, n_dev=3)
    if case == "unequal":
        with (folder / "dev.xx").open("a", encoding="utf-8") as f:
            f.write("wawa yaku aru .\n")
        expect = "dev.es has 3 lines but"
    elif case == "not_utf8":
        (folder / "dev.xx").write_bytes("kali\nwawa ma\xf1ana\n".encode("latin-1") + b"x\n")
        expect = "dev.xx: not UTF-8 (line 2"
    else:
        (folder / "dev.xx").unlink()
        expect = "dev.es: has no parallel file dev.xx"
    out = hearth(*IMPORT[:2], str(folder), *IMPORT[2:], ws=workspace, check=False)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    with _catalog(workspace).session() as s:
        assert s.scalar(select(func.count(Item.id))) == 0 and s.scalar(select(func.count(Collection.id))) == 0
    assert not [p for p in find_workspace(workspace).store_dir.rglob("*") if p.is_file()]  # checked before stored


def test_missing_collection_options_say_what_to_give(workspace: Path, tmp_path: Path):
    folder = make_parallel_corpus(tmp_path / "toy", n_train=3, n_dev=0)
    out = hearth("data", "import-parallel", str(folder), "--src", "es", "--tgt", "xx", ws=workspace, check=False)
    assert out.returncode == 2 and "--collection, --community and at least one --purpose" in out.stderr

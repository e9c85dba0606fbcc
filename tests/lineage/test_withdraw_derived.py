"""Withdrawal erases the withdrawn item's words from what the workspace derived from it, and lineage stays honest.

One workspace, two collections from the tiny archive (each item's transcript and translation carry a word of their
own, so an item's words can be searched for on disk): `demo-korero` stays open, `korero-s` is sealed after a run was
planned on it. A tiny asr run on the open one is trained (in this process, tests/in_process.py) and published, and a
spoken-term index is built with its model; a run is planned on the other. Real catalog, store, keys and files.
"""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.catalog.models import AuditEvent, Collection, Item, Label
from hearthkit.errors import HearthError
from hearthkit.governance import sealed_manifest
from hearthkit.governance.manifest import Manifest
from hearthkit.governance.stewardship import apply_label
from hearthkit.ingest.sealing import seal_collection
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.lineage.withdraw import withdraw
from hearthkit.store.vault import workspace_store
from hearthkit.workspace import init_workspace, open_workspace
from tests import in_process
from tests.conftest import TINY_ASR_CONFIG
from tests.store.test_seal_derived import cli, open_archive, outside_store, steward

OPEN, SEALED = "demo-korero", "korero-s"


def marker(collection: str, stem: str, kind: str) -> str:
    """A word only this item's transcript (kind t) or translation (kind x) holds: letters only, so the model's
    character set takes it."""
    return f"{kind}q{'o' if collection == OPEN else 's'}" + "".join("abcdefghij"[int(c)] if c.isdigit() else c
                                                                    for c in stem.replace("_", ""))


def marked_archive(src: Path, dest: Path, collection: str) -> Path:
    """The open tiny archive (with translations) named COLLECTION, each item's words extended by its own markers."""
    folder = open_archive(src, dest)
    for txt in folder.glob("*.txt"):
        txt.write_text(f"{txt.read_text(encoding='utf-8').strip()} {marker(collection, txt.stem, 't')}",
                       encoding="utf-8")
        xx = txt.with_suffix(".xx")
        xx.write_text(f"{xx.read_text(encoding='utf-8').strip()} {marker(collection, txt.stem, 'x')}",
                      encoding="utf-8")
    info = yaml.safe_load((folder / "archive.yaml").read_text(encoding="utf-8"))
    info["collection"]["name"] = collection
    (folder / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True), encoding="utf-8")
    return folder


def config(tmp_path: Path, name: str, collection: str, steps: int) -> Path:
    cfg = yaml.safe_load(TINY_ASR_CONFIG)
    cfg.update(name=name)
    cfg["request"]["collections"] = [collection]
    cfg["model"]["decode"] = {"beam": 1}
    cfg["train"].update(steps=steps, checkpoint_every=steps, log_every=1, warmup=1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def patterns(collection: str, stem: str) -> dict[str, bytes]:
    return {f"{stem}:{k}": marker(collection, stem, k).encode() for k in "tx"}


def test_withdrawal_erases_the_items_words_from_run_manifests_and_indexes_and_they_still_verify(
        tiny_speech_archive, tmp_path, monkeypatch):
    from hearthkit.governance.search import spoken_search, viewer_for
    from hearthkit.lineage.serving import resolve_use
    from hearthkit.recipes.kws.index import build_index

    root = init_workspace(tmp_path / "ws").root
    ws = open_workspace(root)
    catalog, store = open_workspace_catalog(ws), workspace_store(ws)
    for coll in (OPEN, SEALED):
        folder = marked_archive(tiny_speech_archive, tmp_path / coll, coll)
        assert not import_speech_folder(catalog, store, folder).sealed
    with open(folder / "archive.yaml", encoding="utf-8") as f:
        community = yaml.safe_load(f)["collection"]["community"]
    steward(catalog, community)
    catalog.close()

    run_o = in_process.plan(root, config(tmp_path, "run-o", OPEN, steps=2))
    assert in_process.train_run(run_o, monkeypatch) == "finished"
    in_process.publish(root, run_o, evaluate=False)
    run_s = in_process.plan(root, config(tmp_path, "run-s", SEALED, steps=2))
    # The withdrawn item: one the open run holds out for testing (so `hearth eval` would read it).
    split = json.loads((run_o / "split.json").read_text())
    included = {e["item_id"]: e["external_id"] for e in json.loads((run_o / "manifest.json").read_text())["included"]}
    stem = next(included[i] for i in split["test"] if i in included)
    other = next(included[i] for i in split["train"] if included[i] != stem)
    gone = {**patterns(OPEN, stem), **{f"s:{k}": v for k, v in patterns(SEALED, stem).items()}}
    kept = {**patterns(OPEN, other), **{f"s:{k}": v for k, v in patterns(SEALED, other).items()}}

    catalog = open_workspace_catalog(ws)
    served = resolve_use(catalog, "run-o", "transcribe", "test", "language_revitalization")
    doc = build_index(catalog, ws, "idx", OPEN, served, "language_revitalization", "test", beam=1)
    obj = next(i["obj"] for i in doc["items"] if i["external_id"] == stem)
    assert cli(root, "labels", "apply", "tk:secret_sacred", "-c", SEALED, "-i", "kiri_0000",
               "--by", "aroha").exit_code == 0  # seals korero-s: run-s's words go into a sealed object
    words_obj = json.loads((run_s / "manifest.json").read_text())["sealed_words"]["objects"][SEALED]
    assert marker(SEALED, stem, "t") in store.get(words_obj).decode()
    assert {f for f, _ in outside_store(root, gone)} >= {"runs/run-o/manifest.json", "indexes/idx/manifest.json"}

    # Withdrawing in the sealed collection is interrupted (disk full) after its new words object was written.
    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    before = (run_s / "manifest.json").read_bytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sealed_manifest, "_replace", disk_full)
        imp = withdraw(catalog, store, SEALED, "item", stem, "aroha", reason="asked")
    assert (run_s / "manifest.json").read_bytes() == before and imp.erased_manifests == 0
    assert imp.unreadable and "runs/run-s/manifest.json" in imp.unreadable[0] and "No space" in imp.unreadable[0]
    imp = withdraw(catalog, store, SEALED, "item", stem, "aroha")  # a second call finishes it
    assert imp.erased_manifests == 1 and not imp.unreadable and not store.has(words_obj)
    imp = withdraw(catalog, store, OPEN, "item", stem, "aroha", reason="asked")
    assert (imp.erased_manifests, imp.erased_index_items, imp.unreadable) == (1, 1, [])

    # No file outside the encrypted store, nor any sealed words object, holds the withdrawn item's words.
    assert outside_store(root, gone) == []
    new_obj = json.loads((run_s / "manifest.json").read_text())["sealed_words"]["objects"][SEALED]
    sealed_words = store.get(new_obj).decode()
    assert not [n for n, p in gone.items() if p.decode() in sealed_words]
    assert marker(SEALED, other, "t") in sealed_words and marker(SEALED, other, "x") in sealed_words
    # The manifests still verify against the hashes recorded at planning; the other items' words are all there.
    with catalog.session() as s:
        item_ids = {c: s.scalar(select(Item.id).join(Collection, Collection.id == Item.collection_id)
                                .where(Item.external_id == stem, Collection.name == c)) for c in (OPEN, SEALED)}
    for run, coll in ((run_o, OPEN), (run_s, SEALED)):
        m = Manifest.read(run / "manifest.json")
        assert m.hash == json.loads((run / "run.json").read_text())["manifest_hash"]
        assert m.erased == {item_ids[coll]}
        e = next(e for e in m.included if e["external_id"] == stem)
        assert e["text"] is None and "translations" not in e["meta"]
        text = json.dumps([x for x in m.included if x["external_id"] == other], ensure_ascii=False)
        assert all(marker(coll, other, k) in text for k in "tx")
        rec = json.loads((run / "manifest.json").read_text())["erased"]
        assert [(r["item_id"], type(r["withdrawal"]), r["at"][:2]) for r in rec["items"]] == [
            (item_ids[coll], int, "20")]
    assert len(outside_store(root, {k: v for k, v in kept.items() if not k.startswith("s:")})) >= 2
    # Each erased manifest's new hash is anchored in the audit chain, which stays intact.
    with catalog.session() as s:
        anchored = {k: v for d in s.scalars(select(AuditEvent.data).where(AuditEvent.kind == "withdrawal"))
                    for k, v in json.loads(d).get("manifests", {}).items()}
    assert anchored == {f"runs/{r.name}/manifest.json": json.loads((r / "manifest.json").read_text())["erased"]["after"]
                        for r in (run_o, run_s)}
    assert "audit chain intact" in cli(root, "audit", "verify").output

    # The index no longer holds or returns the item, not even to a steward of its community.
    index = json.loads((root / "indexes/idx/index.json").read_text())
    assert stem not in {i["external_id"] for i in index["items"]} and not store.has(obj)
    hits = spoken_search(ws, catalog, "idx", "a", viewer_for(catalog, "aroha"), "aroha", limit=1000, floor=0.0)
    assert hits and stem not in {h["item"] for h in hits}

    # Withdrawing again changes no file.
    files = {p: p.read_bytes() for p in (run_o / "manifest.json", run_s / "manifest.json",
                                         root / "indexes/idx/index.json", root / "indexes/idx/manifest.json")}
    for coll in (OPEN, SEALED):
        imp = withdraw(catalog, store, coll, "item", stem, "aroha")
        assert (imp.erased_manifests, imp.erased_index_items, imp.unreadable) == (0, 0, [])
    assert all(p.read_bytes() == b for p, b in files.items())

    # `hearth eval` leaves the withdrawn item out; a resume is refused (the manifest no longer holds today).
    res = cli(root, "eval", "run-o")
    assert res.exit_code == 0, res.output
    n_test = sum(1 for i in split["test"] if i in included)
    overall = next(r for r in json.loads((root / "models/run-o/evaluation.json").read_text())["rows"]
                   if r["by"] == "overall")
    assert overall["n"] == n_test - 1
    catalog.close()
    with pytest.raises(HearthError, match="cannot resume"):
        in_process.plan(root, config(tmp_path, "run-o", OPEN, steps=2))

    # Sealing the open collection afterwards keeps the erased record: the manifest still verifies.
    assert cli(root, "labels", "apply", "tk:secret_sacred", "-c", OPEN, "-i", "kiri_0000",
               "--by", "aroha").exit_code == 0
    doc = json.loads((run_o / "manifest.json").read_text())
    assert OPEN in doc["sealed_words"]["objects"] and doc["erased"]["sha256"] == doc["sealed_words"]["sha256"]
    assert Manifest.read(run_o / "manifest.json").hash == json.loads((run_o / "run.json").read_text())["manifest_hash"]
    assert outside_store(root, {**gone, **kept}) == []

    # Any other edit of an erased manifest is refused in one line.
    path = run_o / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "restrictions": []}), encoding="utf-8")
    with pytest.raises(HearthError, match="changed after withdrawal erased the words") as e:
        Manifest.read(path)
    assert "\n" not in str(e.value)


def open_stewarded(archive: Path, tmp_path: Path):
    """A fresh workspace with the open collection imported and aroha its steward: (root, catalog, store, folder,
    community)."""
    root = init_workspace(tmp_path / "ws").root
    ws = open_workspace(root)
    catalog, store = open_workspace_catalog(ws), workspace_store(ws)
    folder = marked_archive(archive, tmp_path / OPEN, OPEN)
    import_speech_folder(catalog, store, folder)
    with open(folder / "archive.yaml", encoding="utf-8") as f:
        community = yaml.safe_load(f)["collection"]["community"]
    steward(catalog, community)
    return root, catalog, store, folder, community


def test_a_manifest_that_cannot_be_parsed_is_named_by_sealing_and_by_withdrawal(tiny_speech_archive, tmp_path):
    root, catalog, store, folder, _ = open_stewarded(tiny_speech_archive, tmp_path)
    with (folder / "metadata.csv").open(encoding="utf-8") as f:
        stem = next(csv.DictReader(f))["file"][:-4]
    broken = root / "runs" / "cut" / "manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text(f'{{"included": [{{"collection": "{OPEN}", "text": "{marker(OPEN, stem, "t")}"',
                      encoding="utf-8")  # cut short: its words are in the clear and nothing can parse it

    imp = withdraw(catalog, store, OPEN, "item", stem, "aroha")
    assert imp.unreadable and imp.unreadable[0].startswith("runs/cut/manifest.json: ")
    res = cli(root, "consent", "withdraw", "-c", OPEN, "--item", stem, "--by", "aroha")
    assert res.exit_code == 1 and "not erased runs/cut/manifest.json" in " ".join(res.output.split())
    with pytest.raises(HearthError, match="runs/cut/manifest.json cannot be parsed as a run manifest") as e:
        seal_collection(catalog, store, OPEN)
    assert "\n" not in str(e.value)
    # The restriction that asked for the sealing is recorded all the same (the most restricted reading), and the
    # unreadable file is still reported in one line.
    with pytest.raises(HearthError, match=r"label tk:secret_sacred was recorded \(id \d+\); but .*runs/cut") as e:
        apply_label(catalog, "tk:secret_sacred", OPEN, "aroha", store=store)
    assert "\n" not in str(e.value)
    with catalog.session() as s:
        assert s.scalar(select(Label.key).where(Label.key == "tk:secret_sacred")) == "tk:secret_sacred"
    catalog.close()


def test_indexes_sharing_store_objects_are_all_erased_and_a_broken_index_stops_none(tiny_speech_archive, tmp_path):
    """The store names objects by content: two indexes built alike share their manifest copy and posteriorgrams.
    Erasing one index's copy must leave the other's; an index whose manifest copy is gone is named, not fatal."""
    from hearthkit.governance import audit
    from hearthkit.governance.sealed_manifest import canonical

    root, catalog, store, folder, community = open_stewarded(tiny_speech_archive, tmp_path)
    with catalog.session() as s:
        (gid, stem), (kid, kstem) = s.execute(select(Item.id, Item.external_id).order_by(Item.id).limit(2)).all()
    entries = [{"collection": OPEN, "item_id": i, "external_id": x, "text": marker(OPEN, x, "t")}
               for i, x in ((gid, stem), (kid, kstem))]
    mobj = store.put(canonical({"included": entries, "excluded": []}), seal_for=(OPEN, community))
    obj, kobj = store.put(b"posteriors of the withdrawn item"), store.put(b"posteriors of the kept item")
    items = [{"item_id": gid, "external_id": stem, "obj": obj}, {"item_id": kid, "external_id": kstem, "obj": kobj}]
    for name, doc in (("0", {"manifest_object": "0" * 64, "items": items[1:]}),  # its manifest copy is missing
                      *((n, {"manifest_object": mobj, "items": items}) for n in "xy")):
        (root / "indexes" / name).mkdir(parents=True)
        (root / "indexes" / name / "index.json").write_text(json.dumps({"collection": OPEN, **doc}), encoding="utf-8")

    imp = withdraw(catalog, store, OPEN, "item", stem, "aroha")
    assert imp.erased_index_items == 2
    assert len(imp.unreadable) == 1 and imp.unreadable[0].startswith("indexes/0/index.json: store object 000000")
    assert not store.has(mobj) and not store.has(obj) and store.has(kobj)  # erased once no index names them
    for name in "xy":
        doc = json.loads((root / "indexes" / name / "index.json").read_text(encoding="utf-8"))
        assert [i["item_id"] for i in doc["items"]] == [kid]
        words = store.get(doc["manifest_object"]).decode("utf-8")
        assert marker(OPEN, stem, "t") not in words and marker(OPEN, kstem, "t") in words
    ev = audit.events(catalog, "withdrawal")[-1]  # the erasure is anchored in the audit chain all the same
    assert ev["data"]["phase"] == "erasure" and ev["data"]["index_items"] == 2
    catalog.close()


def test_keys_seal_names_a_collection_it_cannot_finish_and_seals_the_others(tiny_speech_archive, tmp_path):
    root = init_workspace(tmp_path / "ws").root
    ws = open_workspace(root)
    catalog, store = open_workspace_catalog(ws), workspace_store(ws)
    for coll in (OPEN, SEALED):
        import_speech_folder(catalog, store, marked_archive(tiny_speech_archive, tmp_path / coll, coll))
    with catalog.session() as s:  # restricted by a steward while sealing could not run (e.g. an interrupted one)
        for c in s.scalars(select(Collection)):
            c.restricted = True
        ids = set(s.scalars(select(Item.id).join(Collection, Collection.id == Item.collection_id)
                            .where(Collection.name == SEALED)))
    catalog.close()
    broken = root / "runs" / "cut" / "manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text(f'{{"included": [{{"collection": "{OPEN}", "text": "x"', encoding="utf-8")  # names OPEN only

    res = cli(root, "keys", "seal")
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"collection {OPEN} was sealed, but runs/cut/manifest.json cannot be parsed" in out
    assert f"transcripts of {len(ids)} items sealed" in out.split(f"{SEALED}: ")[1]  # the next one was still sealed
    catalog = open_workspace_catalog(ws)
    with catalog.session() as s:
        assert all(i.text is None and store.is_sealed(i.content_hash) for i in s.scalars(select(Item)))
    catalog.close()

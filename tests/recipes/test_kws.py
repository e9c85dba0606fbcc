"""Spoken-term search: keyword scoring on CTC posteriorgrams, the governed index build, and a searcher who sees
only hits in items they may access (a searcher outside a protocol gets nothing from its items, not even counts)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hearthkit.recipes.kws.score import Posteriorgram
from tests.conftest import hearth

UNITS = [" ", "a", "b", "k", "o", "t", "e"]  # "e" is never spoken: a rival unit
ID = {c: i + 1 for i, c in enumerate(UNITS)}


def _gram(text: str, doubt: dict[int, str] | None = None) -> np.ndarray:
    """Log-posteriors (T, V) whose 1-best spells TEXT (each unit then a blank); DOUBT: frame -> a unit made almost
    as likely as the spoken one there (0.5 nats less)."""
    rows = []
    for ch in text:
        for u in (ID[ch], 0):
            row = np.full(len(UNITS) + 1, -9.0)
            row[u] = -0.02
            rows.append(row)
    for t, ch in (doubt or {}).items():
        rows[t][ID[ch]] = rows[t].max() - 0.5
    return np.array(rows)


def _units(word: str) -> list[int]:
    return [ID[c] for c in word]


def test_terms_are_found_with_times_and_items_never_run_into_each_other():
    gram = Posteriorgram([_gram("ab toka"), _gram("toka"), _gram("bat ab")], ID[" "], len(UNITS) + 1)
    hits = gram.search(_units("toka"), floor=0.5)
    # Said in items 0 and 1, at frames 6-14 (after "ab ") and 0-8; nowhere else scores above 0.5.
    assert [(h.item, h.start, h.end) for h in hits] == [(0, 6, 14), (1, 0, 8)]
    assert all(h.score > 0.99 for h in hits)
    # "ab" ends item 2 and starts item 0: each edge reads as a word boundary, and neither hit spans two items.
    ab = gram.search(_units("ab"), floor=0.5)
    assert sorted((h.item, h.start, h.end) for h in ab) == [(0, 0, 4), (2, 8, 12)]
    # "tab" is never said: the end of item 2's "bat" and the start of its "ab" are separated by a space.
    assert gram.search(_units("tab"), floor=0.5) == []


def test_a_doubtful_posterior_ranks_below_a_sure_one_and_text_search_would_miss_it():
    # In item 1 the model hesitates between "k" and "t" at the first unit: its 1-best says "koka", so a text
    # search of the 1-best misses "toka", but the posterior keeps "toka" nearly as likely.
    sure, doubtful = _gram("toka"), _gram("koka", doubt={0: "t"})
    best = [UNITS[u - 1] for u in doubtful.argmax(1) if u]
    assert "".join(best) == "koka"
    gram = Posteriorgram([sure, doubtful, _gram("bab")], ID[" "], len(UNITS) + 1)
    hits = gram.search(_units("toka"), floor=0.2)
    assert [h.item for h in hits] == [0, 1] and hits[0].score > hits[1].score > 0.5


def _doubted(text: str, lo: int, hi: int, rival: str = "e") -> np.ndarray:
    """Log-posteriors spelling TEXT where every unit of TEXT[lo:hi] (spaces too) is 0.5 nats below RIVAL: the
    1-best writes RIVAL there, the posterior still holds the spoken unit."""
    rows = _gram(text)
    for k in range(lo, hi):
        row = rows[2 * k]
        row[ID[rival]], row[ID[text[k]]] = -0.02, -0.52
    return rows


def test_confidence_is_per_unit_so_a_short_and_a_long_term_said_as_surely_score_alike():
    from hearthkit.recipes.kws.score import Posteriorgram

    # "ab" and "tokab", each said once with every unit (and the spaces around it) equally doubted.
    gram = Posteriorgram([_doubted("ba ab ba", 2, 6), _doubted("ba tokab ba", 2, 9)], ID[" "], len(UNITS) + 1)
    short = max(gram.search(_units("ab"), per_item=1, floor=0.01), key=lambda h: h.score)
    long = max(gram.search(_units("tokab"), per_item=1, floor=0.01), key=lambda h: h.score)
    assert (short.item, short.start, short.end) == (0, 6, 10) and (long.item, long.start, long.end) == (1, 6, 16)
    # The path costs differ 4 to 7 units' worth (e^-2 vs e^-3.5 as probabilities); per unit they are the same.
    assert short.score == pytest.approx(np.exp(-0.5), abs=1e-3) and long.score == pytest.approx(short.score, abs=1e-3)


def _small_index(tmp_path: Path, items: dict[str, tuple[str, np.ndarray]]):
    """A spoken-term index of ITEMS (name -> (1-best, log-posteriors)) in a real store: (index, store, entries)."""
    from hearthkit.recipes.kws.index import SpokenIndex, _pack
    from hearthkit.store.vault import Store

    store = Store(tmp_path / "store", tmp_path / "keys")
    docs = [{"item_id": k + 1, "external_id": name, "obj": store.put(_pack(lp, text, name, [(text, 0.0)])),
             "frames": len(lp)} for k, (name, (text, lp)) in enumerate(items.items())]
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"name": "t", "units": UNITS, "frame_s": 0.04, "items": docs}))
    return SpokenIndex(folder), store, docs


def test_a_spoken_term_scores_above_the_same_term_absent_even_when_no_transcript_writes_it(tmp_path):
    from hearthkit.recipes.kws.score import DEFAULT_CALIBRATION, kst

    # Three items: "toka" said surely, "toka" said but the 1-best (and every n-best reading) writes "koka" -- the
    # case of a word the model never saw in training, found from its characters -- and an item without it.
    idx, store, docs = _small_index(tmp_path, {"sure": ("ba toka", _gram("ba toka")),
                                               "doubt": ("ba koka", _gram("ba koka", doubt={6: "t"})),
                                               "absent": ("ba bat", _gram("ba bat"))})
    chosen, x, best = idx.term_features(store, {1, 2, 3}, "toka")
    p = DEFAULT_CALIBRATION.prob(x)
    assert [c.external_id for c in chosen] == ["sure", "doubt", "absent"]
    assert x[1, 1] == 0 and x[1, 2] == 0  # no reading writes it in the doubted item: the score is the posterior's
    assert p[0] > p[1] > 100 * p[2]
    assert best[2] is None or best[2].score < 0.01  # the absent item's best keyword path is a poor one
    hits = idx.search(store, {1, 2, 3}, "toka", floor=0.01)
    assert [h["item"] for h in hits] == ["sure", "doubt"]  # and it is no hit
    assert hits[0]["start_s"] == pytest.approx(6 * 0.04) and hits[0]["score"] == pytest.approx(p[0], abs=1e-4)
    # Its KST score weighs the term's expected count against the seconds searched (here 1.6 s: a false alarm
    # outweighs a hit, so neither is worth reporting under NIST's costs).
    assert hits[0]["kst"] == pytest.approx(kst(p, 0.04 * sum(d["frames"] for d in docs))[0], abs=1e-4)
    assert hits[0]["kst"] < 0.5


def test_only_the_items_a_searcher_may_access_are_opened_and_normalised_over(tmp_path):
    from hearthkit.store.cas import IntegrityError

    # The access filter (governance/search.py) hands the index the allowed item ids; the rest is never opened:
    # with the third item's object gone from the store, a search of the first two still runs, and its scores
    # (KST's expected count included) are those of an index that never held the third.
    items = {"a": ("ba toka", _gram("ba toka")), "b": ("toka", _gram("toka")), "c": ("toka ba", _gram("toka ba"))}
    idx, store, docs = _small_index(tmp_path / "full", items)
    (tmp_path / "full" / "store" / docs[2]["obj"][:2] / docs[2]["obj"][2:]).unlink()
    two, store2, _ = _small_index(tmp_path / "two", {k: items[k] for k in ("a", "b")})
    hits = idx.search(store, {1, 2}, "toka", floor=0.0)
    assert hits == two.search(store2, {1, 2}, "toka", floor=0.0) and {h["item"] for h in hits} == {"a", "b"}
    with pytest.raises(IntegrityError, match="missing"):  # the object is truly gone: asking for it fails
        idx.search(store, {1, 2, 3}, "toka")


def test_keyword_specific_thresholds_make_one_threshold_serve_rare_and_common_terms():
    from hearthkit.recipes.kws.score import BETA, kst

    trials = 1000.0
    # The same probability 0.6 in one item: a term expected about once is worth detecting, a term expected about
    # ten times is not (its false alarms cost as much, its hits are worth a tenth each).
    rare = kst(np.array([0.6, 0.2, 0.2]), trials)
    common = kst(np.array([0.6] + [0.95] * 10), trials)
    assert rare[0] > 0.5 > common[0]
    # 0.5 is exactly each term's Bayes threshold beta N / (T + (beta - 1) N), N the expected count.
    p = np.array([0.3, 0.2, 0.5])
    n = p.sum()
    thr = BETA * n / (trials + (BETA - 1) * n)
    assert kst(np.array([thr, 0.2, 0.5 - (thr - 0.3)]), trials)[0] == pytest.approx(0.5, abs=1e-6)
    # and it keeps each term's ranking
    q = np.array([0.1, 0.7, 0.4, 0.9])
    assert list(np.argsort(kst(q, trials))) == list(np.argsort(q))


def test_calibration_is_fitted_from_held_out_truth_and_a_stale_file_is_one_clear_line(tmp_path):
    from hearthkit.errors import HearthError
    from hearthkit.recipes.kws.index import SpokenIndex
    from hearthkit.recipes.kws.score import DEFAULT_CALIBRATION, FEATURES, Calibration, fit_calibration

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    y = (x[:, 1] + 0.3 * rng.normal(size=400)) > 0  # only the n-best posterior column carries the truth
    cal = fit_calibration(x, y)
    assert cal.weights[1] > 3 * max(abs(w) for k, w in enumerate(cal.weights) if k != 1)
    assert Calibration.from_json(json.loads(json.dumps(cal.to_json()))) == cal
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"name": "t", "units": UNITS, "items": []}))
    assert SpokenIndex(folder).calibration() == DEFAULT_CALIBRATION  # none fitted for this index
    (folder / "calibration.json").write_text(json.dumps({"features": ["old"], "weights": [1], "bias": 0}))
    with pytest.raises(HearthError) as e:
        SpokenIndex(folder).calibration()
    assert "calibration.json" in str(e.value) and "\n" not in str(e.value)


@pytest.fixture
def protocol_ws(tiny_asr_model, tmp_path: Path) -> tuple[Path, set[str], set[str]]:
    """A private copy of the tiny ASR workspace where one speaker's recordings sit under protocol `wahine` (mere is
    inside it, rangi is a member of the community outside it): (workspace, protocol items, other items)."""
    ws, _, _ = tiny_asr_model
    dest = tmp_path / "ws"
    shutil.copytree(ws, dest)
    if (ws.parent / "ws.keys").exists():
        shutil.copytree(ws.parent / "ws.keys", tmp_path / "ws.keys")
    with sqlite3.connect(dest / "catalog.sqlite") as db:
        rows = db.execute("select i.external_id, i.speaker, c.community from items i join collections c "
                          "on c.id = i.collection_id where c.name = 'demo-korero' order by i.external_id").fetchall()
    community = rows[0][2]
    speaker = sorted({r[1] for r in rows})[0]
    inside = {r[0] for r in rows if r[1] == speaker}
    # The stewardship steps in-process (the CLI for them is tested in tests/governance): fewer processes to start.
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.governance import stewardship as st
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import open_workspace

    w = open_workspace(dest)
    catalog = open_workspace_catalog(w)
    st.add_person(catalog, "aroha", community, "steward", owner=w.owner)
    for who in ("mere", "rangi"):
        st.add_person(catalog, who, community, "member", by="aroha")
    st.create_protocol(catalog, "wahine", community, "aroha")
    st.add_protocol_member(catalog, "wahine", "mere", "aroha")
    st.assign_protocol(catalog, "wahine", "demo-korero", sorted(inside), "aroha", store=workspace_store(w))
    return dest, inside, {r[0] for r in rows} - inside


def test_index_is_governed_and_sealed_and_a_searcher_outside_the_protocol_gets_nothing_of_it(protocol_ws):
    ws, inside, others = protocol_ws
    hearth("search-index", "demo-korero", "--asr", "tiny-asr", "--index", "korero", "--purpose",
           "language_revitalization", "--requester", "mere", "--beam", "1", ws=ws)
    doc = json.loads((ws / "indexes" / "korero" / "index.json").read_text())
    indexed = {i["external_id"] for i in doc["items"]}
    manifest = json.loads((ws / "indexes" / "korero" / "manifest.json").read_text())
    assert indexed == {e["external_id"] for e in manifest["included"]}  # exactly what the policy permitted
    assert indexed & inside and indexed & others  # mere is inside: protocol items are indexed for her
    assert manifest["excluded"]  # the secret/sacred recordings are held out, with their reasons
    # Every read went through the governed reader and is logged; the collection is sealed, so is its index.
    reads = (ws / "indexes" / "korero" / "access.jsonl").read_text().splitlines()
    assert len(reads) == len(indexed)
    assert doc["sealed"] is True
    for i in doc["items"]:
        obj = ws / "store" / "sealed" / i["obj"][:2] / i["obj"][2:]
        assert obj.is_file() and b"logp" not in obj.read_bytes()  # ciphertext: no npz member names in the clear
        assert not (ws / "store" / i["obj"][:2] / i["obj"][2:]).exists()

    def search(who: str | None) -> list[dict]:
        args = ["search", "a", "--index", "korero", "--limit", "100000", "--min-score", "0", "--json"]
        return json.loads(hearth(*args, *(["--requester", who] if who else []), ws=ws).stdout)

    mere, rangi, nobody = search("mere"), search("rangi"), search(None)
    assert {h["item"] for h in mere} & inside
    assert not {h["item"] for h in rangi} & inside
    assert {h["item"] for h in rangi} == {h["item"] for h in mere} - inside and rangi
    # Nothing of the protocol's items reaches rangi, not even a count or a changed score: the per-term
    # normalisation (KST) runs over his items only, so his hits are exactly a search of the items outside it.
    from hearthkit.recipes.kws.index import SpokenIndex
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import open_workspace

    idx = SpokenIndex(ws / "indexes" / "korero")
    outside = {i.item_id for i in idx.items if i.external_id not in inside}
    assert rangi == idx.search(workspace_store(open_workspace(ws)), outside, "a", limit=100000, floor=0.0)
    assert nobody == []  # the collection is for its community: an anonymous searcher finds nothing at all
    # The build and each search are audited: who, which index, how many items (the searcher's own), never the term.
    events = json.loads(hearth("audit", "log", "--kind", "data_access", "--json", ws=ws).stdout)["events"]
    ours = [(e["actor"], e["data"]["phase"], e["data"]["items"]) for e in events if e["data"].get("index") == "korero"]
    assert ours[0] == ("mere", "kws-index", len(indexed))
    assert [x for x in ours if x[1] == "search"] == [
        ("mere", "search", len(indexed)), ("rangi", "search", len(indexed - inside)), ("anonymous", "search", 0)]
    assert all('"a"' not in json.dumps(e["data"]) for e in events)


def test_search_refuses_a_term_the_model_cannot_spell_and_a_missing_index(tiny_asr_model, tmp_path):
    ws, _, _ = tiny_asr_model
    bad = hearth("search", "whare", "--index", str(tmp_path / "nowhere"), ws=ws, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no spoken-term index" in bad.stderr


def test_an_index_built_while_its_collection_was_open_is_sealed_with_it(tiny_asr_model, tiny_speech_archive,
                                                                        tmp_path: Path):
    """An index of an open collection is in the clear; when a steward later places items under a protocol (which
    seals the collection), every object of the index is sealed with it, its manifest keeps no words in the clear,
    and a search still shows only what the searcher may access. An index that is still in the clear while its
    collection is sealed (or whose sealing was cut short) is refused in one line. The index also carries the asr
    model's own labels (tiny-asr's tk:non_commercial), not only those of the items it indexes (none here)."""
    import csv

    import soundfile as sf
    import yaml

    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.errors import HearthError
    from hearthkit.governance import stewardship as st
    from hearthkit.governance.search import spoken_search, viewer_for
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.lineage.serving import resolve_use
    from hearthkit.recipes.kws.index import build_index
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import open_workspace

    ws, _, _ = tiny_asr_model
    shutil.copytree(ws, tmp_path / "ws")
    if (ws.parent / "ws.keys").exists():
        shutil.copytree(ws.parent / "ws.keys", tmp_path / "ws.keys")
    # An open copy of two consenting voices' first recordings, without labels.
    archive = tmp_path / "open"
    archive.mkdir()
    with (tiny_speech_archive / "metadata.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["speaker"] in ("mere", "hemi") and r["sentence"] < "s0004"]
    for r in rows:
        r["labels"] = ""
        for p in tiny_speech_archive.glob(f"{Path(r['file']).stem}.*"):
            shutil.copy(p, archive / p.name)
        # Other bytes than demo-korero's (a recording a sealed collection holds stays sealed wherever it is imported).
        x, sr = sf.read(archive / r["file"], dtype="float32")
        sf.write(archive / r["file"], 0.9 * x, sr, subtype="PCM_16")
    with (archive / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = yaml.safe_load((tiny_speech_archive / "archive.yaml").read_text(encoding="utf-8"))
    info["collection"]["name"] = "korero-open"
    (archive / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True), encoding="utf-8")

    w = open_workspace(tmp_path / "ws")
    catalog, store = open_workspace_catalog(w), workspace_store(w)
    try:
        assert import_speech_folder(catalog, store, archive, False).imported
        community = info["collection"]["community"]
        st.add_person(catalog, "aroha", community, "steward", owner=w.owner)
        for who in ("mere", "rangi"):
            st.add_person(catalog, who, community, "member", by="aroha")
        st.create_protocol(catalog, "wahine", community, "aroha")
        st.add_protocol_member(catalog, "wahine", "mere", "aroha")
        served = resolve_use(catalog, "tiny-asr", "transcribe", "mere", "language_revitalization")
        doc = build_index(catalog, w, "open", "korero-open", served, "language_revitalization", "mere", beam=1)
        folder = w.root / "indexes" / "open"
        assert doc["sealed"] is False and all(store.plain.has(i["obj"]) for i in doc["items"])  # open: in the clear
        assert "tk:non_commercial" in doc["restrictions"] and "tk:non_commercial" in served.restrictions
        said = (tiny_speech_archive / f"{Path(rows[0]['file']).stem}.txt").read_text(encoding="utf-8")
        words = [said.strip()]
        assert words[0] in (folder / "manifest.json").read_text(encoding="utf-8")  # its manifest holds transcripts
        stale = w.root / "indexes" / "stale"
        shutil.copytree(folder, stale)  # an index the sealing below never sees: it stays as it was built
        (stale / "index.json").write_text((folder / "index.json").read_text().replace('"collection": "korero-open"',
                                                                                    '"collection": "elsewhere"'))

        inside = sorted(r["file"][:-4] for r in rows if r["speaker"] == "mere")
        st.assign_protocol(catalog, "wahine", "korero-open", inside, "aroha", store=store)  # seals the collection

        sealed = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        assert sealed["sealed"] is True and "sealing" not in sealed
        for i in sealed["items"]:
            assert store.sealed.has(i["obj"]) and not store.plain.has(i["obj"])
            assert b"logp" not in (w.store_dir / "sealed" / i["obj"][:2] / i["obj"][2:]).read_bytes()
        assert words[0] not in (folder / "manifest.json").read_text(encoding="utf-8")  # no words left in the clear
        assert store.is_sealed(sealed["manifest_object"]) and words[0] in store.get(sealed["manifest_object"]).decode()

        def search(who: str) -> set[str]:
            return {h["item"] for h in spoken_search(w, catalog, "open", "a", viewer_for(catalog, who), who,
                                                     limit=1000, floor=0.0)}

        assert search("mere") & set(inside)
        assert search("rangi") and not search("rangi") & set(inside)  # outside the protocol: nothing of its items

        # The copy it could not see names collection `elsewhere`: point it back, and it is in the clear while its
        # collection is sealed; one interrupted mid-sealing likewise. Both are refused in one line.
        (stale / "index.json").write_text((folder / "index.json").read_text().replace('"sealed": true',
                                                                                    '"sealed": false'))
        for name, says in (("stale", "built while the collection was open"), ("open", "sealing was interrupted")):
            if name == "open":
                (folder / "index.json").write_text(json.dumps({**sealed, "sealing": True}))
            with pytest.raises(HearthError) as e:
                spoken_search(w, catalog, name, "a", viewer_for(catalog, "mere"), "mere")
            assert says in str(e.value) and "hearth keys seal" in str(e.value) and "\n" not in str(e.value)
    finally:
        catalog.close()

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

UNITS = [" ", "a", "b", "k", "o", "t"]
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
    # Nothing of the protocol's items reaches rangi, not even a count or a changed score: his hits are exactly
    # mere's hits outside the protocol.
    assert rangi == [h for h in mere if h["item"] not in inside] and rangi
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

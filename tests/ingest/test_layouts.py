"""The folder importer on real-archive layouts: per-language text files, name patterns, sheets, rates, formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.cas import sha256_bytes
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace
from tests.ingest.archive_maker import audio_bytes, speech_items, write_audio, write_info


def open_ws(workspace: Path) -> tuple[Catalog, Store]:
    ws = open_workspace(workspace)
    return Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)


MBOSHI_LAYOUT = {"transcript": ".mb.cleaned", "translations": {"fr": ".fr.cleaned", "fr-raw": ".fr"},
                 "name_pattern": r"^(?P<speaker>[a-z]+)_(?P<recorded>[0-9-]+)_[^_]+_mdw_elicit_(?P<source>[A-Za-z]+)",
                 "labels": ["bc:research", "bc:provenance"]}


def mboshi_like(folder: Path) -> list[str]:
    """The layout of shared/data/mboshi: <id>.flac|wav, <id>.mb, <id>.mb.cleaned, <id>.fr, <id>.fr.cleaned."""
    folder.mkdir(parents=True)
    ids = ["abiayi_2015-09-08-11-33-57_samsung-SM-T530_mdw_elicit_Dico18_102",
           "kouarata_2015-09-09-10-01-02_samsung-SM-T530_mdw_elicit_Part3_7",
           "martial_2015-09-10-09-00-00_samsung-SM-T530_mdw_elicit_Dico2_5"]
    for i, uid in enumerate(ids):
        write_audio(folder / f"{uid}{'.wav' if i == 2 else '.flac'}", seed=i)
        (folder / f"{uid}.mb").write_text(f"  ngá  wa {i}\n", encoding="utf-8")
        (folder / f"{uid}.mb.cleaned").write_text(f"nga wa {i}\n", encoding="utf-8")
        (folder / f"{uid}.fr").write_text(f"Moi, je {i}.\n", encoding="utf-8")
        (folder / f"{uid}.fr.cleaned").write_text(f"moi je {i}\n", encoding="utf-8")
    (folder / f"{ids[0]}.stm").write_text("not ours\n")
    return ids


def test_mboshi_layout_with_pattern_translations_and_bulk_labels(tmp_path: Path, workspace: Path):
    folder = tmp_path / "mboshi"
    ids = mboshi_like(folder)
    info = write_info(tmp_path, name="mboshi-like", layout=MBOSHI_LAYOUT, path=tmp_path / "mboshi.yaml")
    catalog, store = open_ws(workspace)
    report = import_speech_folder(catalog, store, folder, info_path=info)
    assert (report.imported, report.problems, report.sealed) == (3, [], False)
    with catalog.session() as s:
        items = {i.external_id: i for i in s.scalars(select(Item))}
        assert set(items) == set(ids)
        first = items[ids[0]]
        assert first.speaker == "abiayi" and first.text == "nga wa 0" and first.media_type == "audio/flac"
        assert first.meta["source"] == "Dico" and first.meta["recorded"] == "2015-09-08-11-33-57"
        assert first.meta["translations"] == {"fr": "moi je 0", "fr-raw": "Moi, je 0."}
        assert items[ids[2]].media_type == "audio/wav" and items[ids[2]].speaker == "martial"
        assert {(lab.key, lab.item_id) for lab in s.scalars(select(Label))} == {
            (k, i.id) for i in items.values() for k in ("bc:research", "bc:provenance")}
        coll = s.scalar(select(Collection))
        assert (coll.licence, coll.citation) == ("CC BY-NC 4.0", "Test archive")
    # Open collection: stored in the clear, under the hash of the file's bytes.
    assert store.plain.has(sha256_bytes((folder / f"{ids[0]}.flac").read_bytes()))


def test_reimport_adds_only_what_is_new(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 3)
    write_info(folder)
    catalog, store = open_ws(workspace)
    assert import_speech_folder(catalog, store, folder).imported == 3
    speech_items(folder / "more", 0)
    write_audio(folder / "utt100.flac", seed=100)
    (folder / "utt100.txt").write_text("hou\n", encoding="utf-8")
    report = import_speech_folder(catalog, store, folder)
    assert (report.imported, report.unchanged, report.problems) == (1, 3, [])
    with catalog.session() as s:
        assert len(s.scalars(select(Item)).all()) == 4
        assert len(s.scalars(select(Consent)).all()) == 1  # consent is not recorded twice


def test_csv_sheet_assigns_in_bulk_with_globs_and_per_file_rows(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 2, prefix="aroha_")
    speech_items(folder, 2, prefix="tama_", seed0=10)
    write_info(folder)
    (folder / "metadata.csv").write_text(
        "file,speaker,dialect,gender,labels,protocols,licence,consent_purposes,consent_given_by,consent_given_at\n"
        "aroha_*,aroha,north,f,tk:attribution,,CC BY 4.0,research;community_use,aroha,2026-02-01\n"
        "tama_*,tama,south,m,,,,,,\n"
        "tama_001.wav,,,,tk:non_commercial,,,,,\n", encoding="utf-8")
    catalog, store = open_ws(workspace)
    report = import_speech_folder(catalog, store, folder)
    assert (report.imported, report.problems) == (4, [])
    with catalog.session() as s:
        items = {i.external_id: i for i in s.scalars(select(Item))}
        assert (items["aroha_000"].speaker, items["aroha_000"].dialect, items["aroha_000"].gender) == (
            "aroha", "north", "f")
        assert items["aroha_001"].meta["licence"] == "CC BY 4.0"
        assert items["tama_001"].speaker == "tama"
        labels = {(i.external_id, lab.key) for i in items.values() for lab in i.labels}
        assert labels == {("aroha_000", "tk:attribution"), ("aroha_001", "tk:attribution"),
                          ("tama_001", "tk:non_commercial")}
        consents = s.scalars(select(Consent).where(Consent.scope == "individual")).all()
        assert [(c.subject, c.purposes) for c in consents] == [("aroha", ["research", "community_use"])]


def test_yaml_sheet_with_protocols_seals_the_collection(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    ids = speech_items(folder, 3)
    write_info(folder, layout={"sheet": "people.yaml"})
    (folder / "people.yaml").write_text(
        "- {file: '*', speaker: kui, dialect: east}\n"
        f"- {{file: {ids[1]}, protocols: [women], labels: [tk:women_general]}}\n", encoding="utf-8")
    catalog, store = open_ws(workspace)
    report = import_speech_folder(catalog, store, folder)
    assert (report.imported, report.sealed, report.problems) == (3, True, [])
    with catalog.session() as s:
        items = {i.external_id: i for i in s.scalars(select(Item))}
        assert items[ids[1]].meta["protocols"] == ["women"] and items[ids[0]].speaker == "kui"
        digests = [i.content_hash for i in items.values()]
    assert all(store.is_sealed(d) and not store.plain.has(d) for d in digests)
    assert store.get(digests[0]) == (folder / f"{ids[0]}.wav").read_bytes()


def test_collection_becomes_sealed_when_a_protocol_label_arrives(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    ids = speech_items(folder, 2)
    write_info(folder)
    catalog, store = open_ws(workspace)
    import_speech_folder(catalog, store, folder)
    with catalog.session() as s:
        digests = list(s.scalars(select(Item.content_hash)))
    assert all(store.plain.has(d) for d in digests)
    write_audio(folder / "sacred.wav", seed=50)
    (folder / "sacred.txt").write_text("tapu\n", encoding="utf-8")
    (folder / "metadata.csv").write_text("file,labels\n*,\nsacred.wav,tk:secret_sacred\n", encoding="utf-8")
    report = import_speech_folder(catalog, store, folder)
    assert (report.imported, report.unchanged, report.sealed) == (1, 2, True)
    with catalog.session() as s:
        digests = list(s.scalars(select(Item.content_hash)))
    assert len(digests) == 3 and all(store.is_sealed(d) and not store.plain.has(d) for d in digests)
    assert {store.get(d) for d in digests} == {(folder / f"{i}.wav").read_bytes() for i in [*ids, "sacred"]}


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_formats_decode_via_soundfile(suffix: str, tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 1, suffix=suffix)
    write_info(folder)
    catalog, store = open_ws(workspace)
    report = import_speech_folder(catalog, store, folder)
    assert (report.imported, report.problems) == (1, [])
    with catalog.session() as s:
        item = s.scalar(select(Item))
        assert item.sample_rate == 16000 and 0.25 < item.duration_s < 0.4


def test_other_sample_rates_resampled_per_config(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    folder.mkdir()
    original = audio_bytes(".wav", seconds=0.5, sr=22050, seed=3)
    (folder / "r.wav").write_bytes(original)
    (folder / "r.txt").write_text("rere\n", encoding="utf-8")
    write_info(folder, layout={"sample_rates": [16000], "other_rates": "resample", "resample_to": 16000})
    catalog, store = open_ws(workspace)
    report = import_speech_folder(catalog, store, folder)
    assert (report.imported, report.problems) == (1, [])
    with catalog.session() as s:
        item = s.scalar(select(Item))
        assert (item.sample_rate, item.media_type) == (16000, "audio/flac")
        assert item.meta["resampled_from"] == {"sha256": sha256_bytes(original), "sample_rate": 22050,
                                       "media_type": "audio/wav"}
        assert abs(item.duration_s - 0.5) < 0.01
    # Idempotent: the same source file is recognised although the stored bytes are the resampled ones.
    again = import_speech_folder(catalog, store, folder)
    assert (again.imported, again.unchanged) == (0, 1)


def test_restriction_sticks_once_a_collection_is_encrypted(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 1)
    write_info(folder)
    catalog, store = open_ws(workspace)
    import_speech_folder(catalog, store, folder)
    write_info(folder, restricted=True)  # the steward restricts the collection
    speech_items(folder / "x", 0)
    write_audio(folder / "utt500.wav", seed=500)
    (folder / "utt500.txt").write_text("tapu\n", encoding="utf-8")
    assert import_speech_folder(catalog, store, folder).sealed
    write_info(folder, restricted=False)  # an old archive.yaml does not lift it
    write_audio(folder / "utt501.wav", seed=501)
    (folder / "utt501.txt").write_text("noa\n", encoding="utf-8")
    report = import_speech_folder(catalog, store, folder)
    assert (report.imported, report.sealed) == (1, True)
    with catalog.session() as s:
        assert s.scalar(select(Collection.restricted))
        digests = list(s.scalars(select(Item.content_hash)))
    assert len(digests) == 3 and all(store.is_sealed(d) and not store.plain.has(d) for d in digests)

"""Import line-aligned parallel text (train.es / train.nah, dev.es / dev.nah …) into the catalog.

Item model: one catalog item (kind "text") per side of each sentence pair, so consent and labels apply per
side; both sides carry the same pair id in Item.meta["pair"], and recipes drop a pair whose other side
policy excludes. Each side's UTF-8 line is stored in the content store (content hash = sha256 of the line).
Item.text stays empty: the text reaches a run only through the governed reader.
"""

from __future__ import annotations

import difflib
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item, Label
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.vocabulary import LABELS
from hearthkit.ingest.archive import ArchiveInfo, collection_with_consent
from hearthkit.ingest.sheet import _SHORT, RESTRICTING_WORDS, _norm_key, csv_dict_rows
from hearthkit.ingest.speech_folder import ImportReport
from hearthkit.store.vault import Store

SPLITS = ("train", "dev", "test")
MEDIA_TYPE = "text/plain; charset=utf-8"


@dataclass
class _Side:
    external_id: str
    data: bytes
    meta: dict
    labels: list[str] = field(default_factory=list)


def _read_lines(path: Path) -> list[str]:
    """Lines of PATH decoded as strict UTF-8, or a one-line error naming the file and the bad line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise HearthError(f"{path}: not UTF-8 (line {line}, byte {exc.start}); re-save the file as UTF-8") from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    return [line.rstrip("\r") for line in lines]


def _meta_column(path: Path, name: str, langs: tuple[str, str]) -> str:
    """NAME as the importer reads it: `labels` / `labels.<lang>` in any case; HearthError for a column that looks
    like a restriction but is none the importer reads (its labels would otherwise be kept as a mere note)."""
    norm = _norm_key(name)
    if not norm:
        raise HearthError(f"{path}: a value stands in a column with no name; name the column or remove the value "
                          "(nothing was imported)")
    if norm == "labels":
        return "labels"
    if norm.startswith("labels."):
        lang = next((x for x in langs if x.lower() == norm[len("labels."):]), None)
        if lang is None:
            raise HearthError(f"{path}: column {name!r} labels a language that is neither {langs[0]} nor {langs[1]}; "
                              "rename it or remove it (nothing was imported)")
        return f"labels.{lang}"
    if any(w in norm for w in RESTRICTING_WORDS) or difflib.get_close_matches(norm.split(".")[0], ["labels"],
                                                                                cutoff=0.75):
        raise HearthError(f"{path}: column {name!r} is not one hearthkit reads (labels, labels.<lang>) and its name "
                          "speaks of a restriction; rename or remove it (nothing was imported)")
    return name


def _read_meta(path: Path, n: int, langs: tuple[str, str]) -> list[dict]:
    """Rows of an optional line-aligned SPLIT.meta.csv (domain, variant, document, labels …), or empty dicts."""
    if not path.is_file():
        return [{} for _ in range(n)]
    rows = csv_dict_rows(path, _read_lines(path))
    if len(rows) != n:
        raise HearthError(f"{path}: {len(rows)} rows but the text files have {n} lines; one row per line")
    out = []
    for line, r in enumerate(rows, start=2):
        row = {}
        for k, v in r.items():
            if k is None or v is _SHORT:  # a ragged row may have lost or shifted the cell that restricted it
                raise HearthError(f"{path}: line {line}: {'more' if k is None else 'fewer'} fields than the header "
                                  "has columns; give every row one cell per column (nothing was imported)")
            if v not in (None, ""):
                row[_meta_column(path, k, langs)] = v
        out.append(row)
    return out


def _labels(value: str | None, where: str) -> list[str]:
    """Label keys from a `;`-separated cell; unknown keys are an error naming WHERE."""
    keys = [k.strip() for k in (value or "").split(";") if k.strip()]
    for k in keys:
        if k not in LABELS:
            raise HearthError(f"{where}: unknown label {k!r}; use a Local Contexts key such as tk:secret_sacred")
    return keys


def normalise_line(text: str) -> str:
    """NFC with surrounding whitespace removed: the form each side is stored in."""
    return unicodedata.normalize("NFC", text).strip()


def read_parallel(folder: Path, src: str, tgt: str, corpus: str) -> tuple[list[_Side], list[tuple[str, str]]]:
    """Both sides of every pair in FOLDER's SPLIT.SRC / SPLIT.TGT files; pairs with an empty side are reported."""
    sides: list[_Side] = []
    problems: list[tuple[str, str]] = []
    found = False
    for split in SPLITS:
        a, b = folder / f"{split}.{src}", folder / f"{split}.{tgt}"
        if not a.is_file() and not b.is_file():
            continue
        if not (a.is_file() and b.is_file()):
            have, miss = (a, b) if a.is_file() else (b, a)
            raise HearthError(f"{have}: has no parallel file {miss.name}; add it or move {have.name} away")
        found = True
        la, lb = _read_lines(a), _read_lines(b)
        if len(la) != len(lb):
            raise HearthError(f"{a} has {len(la)} lines but {b} has {len(lb)}; parallel files must be line-aligned")
        metas = _read_meta(folder / f"{split}.meta.csv", len(la), (src, tgt))
        empty = []
        for n, (x, y, m) in enumerate(zip(la, lb, metas, strict=True), start=1):
            x, y = normalise_line(x), normalise_line(y)
            if not x or not y:
                empty.append(n)
                continue
            where = f"{split}.meta.csv line {n + 1}"
            both = _labels(m.pop("labels", None), where)
            per = {lang: _labels(m.pop(f"labels.{lang}", None), where) for lang in (src, tgt)}
            pair = f"{corpus}/{split}/{n:06d}"
            for lang, line, side in ((src, x, "src"), (tgt, y, "tgt")):
                meta = {**m, "pair": pair, "lang": lang, "side": side, "split": split, "line": n,
                        "corpus": corpus, "chars": len(line)}
                sides.append(_Side(f"{corpus}/{split}.{lang}/{n:06d}", line.encode("utf-8"), meta,
                                   both + per[lang]))
        if empty:
            problems.append((f"{split}.{src}/{split}.{tgt}", f"{len(empty)} pairs with an empty side skipped "
                             f"(lines {', '.join(map(str, empty[:5]))}{' …' if len(empty) > 5 else ''})"))
    if not found:
        raise HearthError(f"{folder}: no parallel files; expected e.g. train.{src} and train.{tgt}")
    return sides, problems


def import_parallel(catalog: Catalog, store: Store, folder: Path, src: str, tgt: str, info: ArchiveInfo,
                    corpus: str | None = None, collection_labels: list[str] | None = None) -> ImportReport:
    """Import FOLDER's line-aligned SRC/TGT files into INFO's collection in one transaction (all or nothing)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HearthError(f"{folder}: not a folder")
    if src == tgt:
        raise HearthError(f"--src and --tgt are both {src!r}; a parallel corpus needs two languages")
    coll_labels = _labels(";".join(collection_labels or []), "--label")
    # archive.yaml's collection labels and layout.labels bind every item here too, as they do for speech.
    coll_labels += [k for k in [*(lab.key for lab in info.labels), *info.layout.labels] if k not in coll_labels]
    sides, problems = read_parallel(folder, src, tgt, corpus or folder.name)
    report = ImportReport(collection=info.collection.name, problems=problems)
    # Everything is read and checked before anything is stored or committed.
    # Many small objects: write them without a flush each, then flush once before the catalog refers to them.
    digests = [store.put(s.data, sync=False) for s in sides]
    os.sync()
    _commit(catalog, info, sides, digests, coll_labels, report, folder)
    return report


def _commit(catalog: Catalog, info: ArchiveInfo, sides: list[_Side], digests: list[str], coll_labels: list[str],
            report: ImportReport, folder: Path) -> None:
    """Collection, consent, collection labels and items with their labels, in one transaction."""
    c = info.collection
    with catalog.session() as s:
        coll = collection_with_consent(s, info, [{"key": k} for k in coll_labels])
        have = dict(s.execute(select(Item.external_id, Item.content_hash).where(Item.collection_id == coll.id)).all())
        new: list[tuple[Item, _Side]] = []
        for side, digest in zip(sides, digests, strict=True):
            if side.external_id in have:
                if have[side.external_id] == digest:
                    report.unchanged += 1
                else:
                    report.problems.append((side.external_id, "already imported with different text; "
                                            "import the new version under a new --corpus name"))
                continue
            item = Item(collection_id=coll.id, external_id=side.external_id, kind="text", content_hash=digest,
                        size_bytes=len(side.data), media_type=MEDIA_TYPE, dialect=side.meta.get("variant"),
                        text=None, meta=side.meta)
            new.append((item, side))
        s.add_all([it for it, _ in new])
        s.flush()
        for item, side in new:
            for key in side.labels:
                s.add(Label(item_id=item.id, key=key, community=c.community))
        report.imported += len(new)
        audit.append(s, "import", collection=c.name, folder=str(folder), batch=1, imported=len(new),
                     items=[it.external_id for it, _ in new], unchanged=report.unchanged,
                     skipped=len(report.problems), done=True)

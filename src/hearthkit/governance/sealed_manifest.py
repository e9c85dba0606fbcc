"""A run's manifest whose collection was sealed after the run was planned: its words kept sealed, the file without.

A run planned while a collection was open copies the items' words into `runs/NAME/manifest.json` (each included
entry's `text` and `meta` translations, tiers, previous_*). The manifest is evidence: its sha256 is recorded on the
run, its model, approvals and audit events, and every start, resume, evaluation and publication re-checks it. So
sealing the collection keeps the file and its hash: the words of that collection's entries move into one sealed
object (under the collection's data key) and the file keeps everything else, plus `sealed_words` naming the objects
and the sha256 of the manifest as planned. `Manifest.read` puts the words back (decrypted in memory) and refuses a
result that does not hash to that sha256, so each hash check that held before sealing holds after it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hearthkit.errors import HearthError
from hearthkit.store.cas import atomic_write
from hearthkit.store.text import PRIVATE_META, has_words

if TYPE_CHECKING:
    from hearthkit.store.vault import Store

SEALED_WORDS = "sealed_words"  # key of the clear file: {"sha256": manifest as planned, "objects": {collection: sha}}
ERASED = "erased"  # withdrawal erased some entries' words: {"sha256": as planned, "after": as erased, "items", ...}
PARTS = ("included", "excluded")


def canonical(doc: dict) -> bytes:
    """DOC as Manifest.to_json writes it (sorted keys, no spaces): the bytes its hash is taken over."""
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def split_words(doc: dict, collection: str) -> tuple[dict, dict]:
    """(DOC without the words of COLLECTION's entries, those words keyed 'part:index')."""
    out, words = dict(doc), {}
    for part in PARTS:
        if not isinstance(doc.get(part), list):
            continue
        entries = []
        for i, e in enumerate(doc[part]):
            if isinstance(e, dict) and e.get("collection") == collection:
                meta = e.get("meta") if isinstance(e.get("meta"), dict) else {}
                rec = {"meta": {k: meta[k] for k in PRIVATE_META if k in meta}} if any(
                    k in meta for k in PRIVATE_META) else {}
                if e.get("text") is not None:
                    rec["text"] = e["text"]
                if rec:
                    words[f"{part}:{i}"] = rec
                    e = strip_words(e)
            entries.append(e)
        out[part] = entries
    return out, words


def strip_words(e: dict) -> dict:
    """Manifest entry E without its words: `text` None (where it has one), its meta without PRIVATE_META entries."""
    out = {**e, "text": None} if "text" in e else dict(e)
    if isinstance(e.get("meta"), dict):
        out["meta"] = {k: v for k, v in e["meta"].items() if k not in PRIVATE_META}
    return out


def verified_content(doc: dict, path: Path, store: Store | None) -> tuple[dict, str | None]:
    """(DOC's manifest content with sealed words put back, the sha256 it was planned with when some entries' words
    were erased by withdrawal, else None), checked: a sealed manifest must hash to its recorded sha256; one with an
    `erased` record must hash to the sha256 recorded when the words were erased, and its erased entries hold none.
    STORE None: the store of the run.json beside PATH."""
    full = {k: v for k, v in doc.items() if k not in (SEALED_WORDS, ERASED)}
    recorded = None
    if SEALED_WORDS in doc:
        info = doc.get(SEALED_WORDS)
        try:
            recorded, objects = str(info["sha256"]), dict(info["objects"])
        except (KeyError, TypeError, ValueError):
            raise HearthError(f"{path}: its `{SEALED_WORDS}` entry is unreadable; the words this run was planned "
                              "with cannot be restored, so it cannot be used; plan a new run") from None
        full = _put_back(full, objects, path, store if store is not None or not objects else _store_beside(path))
    if ERASED not in doc:
        if recorded is not None and hashlib.sha256(canonical(full)).hexdigest() != recorded:
            raise HearthError(f"{path}: with its sealed words put back it does not hash to the sha256 recorded when "
                              f"it was sealed ({recorded[:12]}…); it was changed, so it cannot be used; plan a new run")
        return full, None
    erased = doc.get(ERASED)
    try:
        planned, after = str(erased["sha256"]), str(erased["after"])
        ids = {int(e["item_id"]) for e in erased["items"]}
    except (KeyError, TypeError, ValueError):
        raise HearthError(f"{path}: its `{ERASED}` record is unreadable, so it cannot be used; "
                          "plan a new run") from None
    worded = [e.get("external_id") for part in PARTS for e in full.get(part) or []
              if isinstance(e, dict) and e.get("item_id") in ids and _has_words(e)]
    if (recorded is not None and recorded != planned) or worded or \
            hashlib.sha256(canonical(full)).hexdigest() != after:
        raise HearthError(f"{path}: it was changed after withdrawal erased the words of {len(ids)} of its items "
                          f"(it no longer hashes to the sha256 recorded then, {after[:12]}…), so it cannot be used; "
                          "plan a new run")
    return full, planned


def _put_back(full: dict, objects: dict, path: Path, store: Store | None) -> dict:
    """FULL with the words of the sealed OBJECTS (collection: digest) put back in place."""
    for collection, digest in sorted(objects.items()):
        try:
            words = json.loads(store.get(str(digest)).decode("utf-8"))["words"]
            for key, rec in words.items():
                part, i = key.split(":")
                e = full[part][int(i)] = dict(full[part][int(i)])
                if "text" in rec:
                    e["text"] = rec["text"]
                if "meta" in rec:
                    e["meta"] = {**(e.get("meta") or {}), **rec["meta"]}
        except HearthError as exc:  # a missing key or object, bytes that do not decrypt
            raise HearthError(f"{path}: the words of collection {collection} are sealed and could not be opened "
                              f"({exc}); a steward restores the key folder or the store") from None
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise HearthError(f"{path}: the sealed words of collection {collection} do not fit this manifest; "
                              "plan a new run") from None
    return full


def _has_words(e: dict) -> bool:
    """Whether manifest entry E holds words (a transcript, translations, tiers, previous_*)."""
    return has_words(e.get("text"), e["meta"] if isinstance(e.get("meta"), dict) else None)


def erase_entries(full: dict, item_ids: set[int]) -> tuple[dict, list[int]]:
    """(FULL, a manifest's content, with the words of the entries of ITEM_IDS removed; the ids whose words were)."""
    out, hit = dict(full), []
    for part in PARTS:
        if not isinstance(full.get(part), list):
            continue
        entries = []
        for e in full[part]:
            if isinstance(e, dict) and e.get("item_id") in item_ids and _has_words(e):
                e = strip_words(e)
                hit.append(e["item_id"])
            entries.append(e)
        out[part] = entries
    return out, sorted(set(hit))


def erase_from_manifest(path: Path, store: Store, item_ids: set[int], withdrawal: dict,
                        communities: dict[str, str]) -> str | None:
    """Erase the words of ITEM_IDS (withdrawn) from the manifest file PATH, clear or sealed; the sha256 of its content
    after erasure when it changed (for the audit log), else None.

    The file keeps what verifies it: `erased` records the sha256 as planned, the sha256 of the content after erasure
    and, per item, WITHDRAWAL (its record id and date). Sealed words go into new objects first, the file is replaced
    by one atomic rename, and only then are the old words objects deleted (listed under `replaced`, so a re-run
    after a crash deletes what is left). COMMUNITIES: collection name -> community, to seal its new words object.
    """
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    full, planned = verified_content(doc, path, store)
    erased = dict(doc.get(ERASED) or {})
    pending = [d for d in erased.get("replaced") or [] if store.has(str(d))]
    new_full, hit = erase_entries(full, item_ids)
    if not hit:
        for d in pending:  # an earlier erasure stopped before deleting the words objects it replaced
            store.delete(str(d))
        return None
    if planned is None:
        info = doc.get(SEALED_WORDS)
        planned = str(info["sha256"]) if isinstance(info, dict) else hashlib.sha256(canonical(full)).hexdigest()
    out, old = new_full, dict((doc.get(SEALED_WORDS) or {}).get("objects") or {})
    objects = {}
    for collection in sorted(old):
        out, words = split_words(out, collection)
        if words:
            obj = json.dumps({"manifest": planned, "run": path.parent.name, "collection": collection, "words": words},
                             sort_keys=True, ensure_ascii=False).encode("utf-8")
            objects[collection] = store.put(obj, seal_for=(collection, communities[collection]))
    replaced = sorted({str(d) for d in old.values()} - set(objects.values()))
    record = {"sha256": planned, "after": hashlib.sha256(canonical(new_full)).hexdigest(),
              "items": [*(erased.get("items") or []), *({"item_id": i, **withdrawal} for i in hit)],
              "replaced": sorted({*(str(d) for d in erased.get("replaced") or []), *replaced})}
    if old:
        out = {**out, SEALED_WORDS: {"sha256": planned, "objects": objects}}
    _replace(path, canonical({**out, ERASED: record}))
    for d in record["replaced"]:
        store.delete(d)
    return record["after"]


def _store_beside(path: Path) -> Store:
    """The store of the run whose manifest is PATH (its run.json), for a reader that was given none."""
    from hearthkit.store.vault import store_from_spec

    try:
        return store_from_spec(json.loads((path.parent / "run.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        raise HearthError(f"{path}: its words are sealed and no run.json beside it names the store that holds "
                          "them; read it from its run folder") from None


def seal_run_manifests(store: Store, runs: Path, collection: str, community: str,
                       unreadable: list[Path] | None = None) -> int:
    """Seal the words of COLLECTION in every run manifest under RUNS (a workspace's runs/) that still holds them in
    the clear, as the collection is being sealed; returns the number of manifests sealed.

    Per manifest: its words object is sealed first, then the file is replaced in one atomic rename (a crash leaves
    either the old file, words in the clear, and `hearth keys seal` finishes it, or the sealed one; never a file
    without its words anywhere). A collection whose words a manifest already keeps sealed is skipped: idempotent.
    A manifest naming COLLECTION that cannot be parsed may hold its words in the clear: it is appended to UNREADABLE
    (the caller reports it) and left as it is.
    """
    n, named = 0, {json.dumps(collection, ensure_ascii=False), json.dumps(collection)}
    for path in sorted(runs.glob("*/manifest.json")):
        try:
            text = path.read_text(encoding="utf-8")
            if not any(x in text for x in named):  # none of its entries: leave it unparsed (it may be large)
                continue
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError):
            # Every reader refuses it ("not a readable manifest"), but words in it stay in the clear: say so.
            if unreadable is not None:
                unreadable.append(path)
            continue
        info = doc.get(SEALED_WORDS) if isinstance(doc.get(SEALED_WORDS), dict) else {}
        erased = doc.get(ERASED) if isinstance(doc.get(ERASED), dict) else {}
        objects = dict(info.get("objects") or {})
        if collection in objects:
            continue
        base = {k: v for k, v in doc.items() if k not in (SEALED_WORDS, ERASED)}
        clear, words = split_words(base, collection)
        if not words:
            continue
        planned = info.get("sha256") or erased.get("sha256") or hashlib.sha256(canonical(base)).hexdigest()
        obj = json.dumps({"manifest": planned, "run": path.parent.name, "collection": collection, "words": words},
                         sort_keys=True, ensure_ascii=False).encode("utf-8")
        objects[collection] = store.put(obj, seal_for=(collection, community))
        _replace(path, canonical({**clear, SEALED_WORDS: {"sha256": planned, "objects": objects},
                                  **({ERASED: erased} if erased else {})}))
        n += 1
    return n


def sealed_word_objects(runs: Path, collection: str) -> set[str]:
    """The sealed words objects of COLLECTION that run manifests under RUNS name (what a key rotation with
    --reencrypt must re-encrypt besides the collection's items)."""
    out = set()
    for path in sorted(runs.glob("*/manifest.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            digest = doc[SEALED_WORDS]["objects"][collection]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no words of COLLECTION sealed in it (or not a manifest)
        out.add(str(digest))
    return out


# One synced temporary file and one rename: the store's writer (tests patch this name to fill the disk).
_replace = atomic_write

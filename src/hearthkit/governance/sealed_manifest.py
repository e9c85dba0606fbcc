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
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hearthkit.errors import HearthError
from hearthkit.store.text import PRIVATE_META

if TYPE_CHECKING:
    from hearthkit.store.vault import Store

SEALED_WORDS = "sealed_words"  # key of the clear file: {"sha256": manifest as planned, "objects": {collection: sha}}
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
                    e = {**e, "text": None} if "text" in rec else dict(e)
                    if "meta" in rec:
                        e["meta"] = {k: v for k, v in meta.items() if k not in PRIVATE_META}
            entries.append(e)
        out[part] = entries
    return out, words


def restore_words(doc: dict, path: Path, store: Store | None) -> dict:
    """DOC (a manifest file with `sealed_words`) with its words put back from the sealed objects, checked against
    the sha256 recorded when it was sealed. STORE None: the store of the run.json beside PATH."""
    info = doc.get(SEALED_WORDS)
    try:
        recorded, objects = str(info["sha256"]), dict(info["objects"])
    except (KeyError, TypeError, ValueError):
        raise HearthError(f"{path}: its `{SEALED_WORDS}` entry is unreadable; the words this run was planned with "
                          "cannot be restored, so it cannot be used; plan a new run") from None
    if store is None:
        store = _store_beside(path)
    full = {k: v for k, v in doc.items() if k != SEALED_WORDS}
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
    if hashlib.sha256(canonical(full)).hexdigest() != recorded:
        raise HearthError(f"{path}: with its sealed words put back it does not hash to the sha256 recorded when it "
                          f"was sealed ({recorded[:12]}…); it was changed, so it cannot be used; plan a new run")
    return full


def _store_beside(path: Path) -> Store:
    """The store of the run whose manifest is PATH (its run.json), for a reader that was given none."""
    from hearthkit.store.vault import store_from_spec

    try:
        return store_from_spec(json.loads((path.parent / "run.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        raise HearthError(f"{path}: its words are sealed and no run.json beside it names the store that holds "
                          "them; read it from its run folder") from None


def seal_run_manifests(store: Store, runs: Path, collection: str, community: str) -> int:
    """Seal the words of COLLECTION in every run manifest under RUNS (a workspace's runs/) that still holds them in
    the clear, as the collection is being sealed; returns the number of manifests sealed.

    Per manifest: its words object is sealed first, then the file is replaced in one atomic rename (a crash leaves
    either the old file, words in the clear, and `hearth keys seal` finishes it, or the sealed one; never a file
    without its words anywhere). A collection whose words a manifest already keeps sealed is skipped: idempotent.
    """
    n, named = 0, {json.dumps(collection, ensure_ascii=False), json.dumps(collection)}
    for path in sorted(runs.glob("*/manifest.json")):
        try:
            text = path.read_text(encoding="utf-8")
            if not any(x in text for x in named):  # none of its entries: leave it unparsed (it may be large)
                continue
            doc = json.loads(text)
        except (OSError, ValueError):
            continue  # not readable as a manifest: every reader refuses it already ("not a readable manifest")
        if not isinstance(doc, dict):
            continue
        info = doc.get(SEALED_WORDS) if isinstance(doc.get(SEALED_WORDS), dict) else {}
        objects = dict(info.get("objects") or {})
        if collection in objects:
            continue
        base = {k: v for k, v in doc.items() if k != SEALED_WORDS}
        clear, words = split_words(base, collection)
        if not words:
            continue
        planned = info.get("sha256") or hashlib.sha256(canonical(base)).hexdigest()
        obj = json.dumps({"manifest": planned, "run": path.parent.name, "collection": collection, "words": words},
                         sort_keys=True, ensure_ascii=False).encode("utf-8")
        objects[collection] = store.put(obj, seal_for=(collection, community))
        _replace(path, canonical({**clear, SEALED_WORDS: {"sha256": planned, "objects": objects}}))
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


def _replace(path: Path, data: bytes) -> None:
    """Write DATA to PATH through a synced temporary file and one rename."""
    tmp = path.with_name(f".{path.name}.sealing")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)

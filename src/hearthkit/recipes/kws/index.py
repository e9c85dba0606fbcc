"""A spoken-term index of one collection: the CTC posteriorgram, 1-best and n-best of every item, built by a
governed run.

Building: the policy computes a manifest for the request (purpose, requester, collection) exactly as for training;
the governed reader reads only its items (hash-verified, each read logged); the asr model is a governed use. Each
item's posteriorgram (float16 log-probabilities, 40 ms frames), 1-best and n-best are one store object: the
collection's words in another form, so a restricted collection's objects are sealed with its data key like its audio.
`index.json` (written last, atomically) names the objects; without it there is no index.

Searching: the searcher's access is decided in the catalog query first (governance/search.py); only the items they
may access are opened, scored and normalised over (score.py: calibrated probability, then KST).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection
from hearthkit.errors import HearthError
from hearthkit.recipes.kws.score import (
    DEFAULT_CALIBRATION,
    LOG_FLOOR,
    Calibration,
    Hit,
    Posteriorgram,
    kst,
    nbest_posterior,
    term_features,
)

FRAME_S = 0.04  # the asr model's output frame (two stride-2 convolutions over 10 ms features)
FORMAT = 1


@dataclass
class IndexedItem:
    """One item of an index: its catalog id and name, the store object of its posteriors, offset in its recording."""

    item_id: int
    external_id: str
    obj: str
    frames: int
    source: str | None = None  # recording a segment was cut from (ELAN/TextGrid imports)
    offset_s: float = 0.0


def _pack(logp: np.ndarray, text: str, item: str, nbest: list[tuple[str, float]] | None = None) -> bytes:
    buf = io.BytesIO()
    nbest = nbest or [(text, 0.0)]
    np.savez(buf, logp=logp.astype(np.float16), text=np.array(text), item=np.array(item),
             nbest_text=np.array([t for t, _ in nbest]), nbest_score=np.array([s for _, s in nbest], np.float64))
    return buf.getvalue()


def _unpack(data: bytes) -> tuple[np.ndarray, str, list[tuple[str, float]]]:
    """(log-posteriors, 1-best, n-best with log scores); an index built before n-best was kept has its 1-best."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        text = str(z["text"])
        if "nbest_text" in z.files:
            nbest = [(str(t), float(s)) for t, s in zip(z["nbest_text"], z["nbest_score"], strict=True)]
        else:
            nbest = [(text, 0.0)]
        return z["logp"].astype(np.float32), text, nbest


@torch.no_grad()
def item_posteriors(loaded, wavs: list[np.ndarray], beam: int | None = None
                    ) -> list[tuple[np.ndarray, str, list[tuple[str, float]]]]:
    """(log-posteriors (T, V), 1-best text, the beam's n-best with log scores) of each 16 kHz waveform, decoded as
    the model's config says (the n-best is the final beam: its posterior mass per term is a search feature)."""
    from hearthkit.data.features import log_mel
    from hearthkit.recipes.asr import decode as ctc
    from hearthkit.recipes.asr.recipe import load_scorer

    cfg, tok = loaded.cfg, loaded.prep["tokenizer"]
    dec = cfg.decode
    width = dec.beam if beam is None else beam
    if width > 1 and "kws_scorer" not in loaded.prep:  # built once per loaded model: an n-gram takes a while
        loaded.prep["kws_scorer"] = load_scorer(cfg, loaded.prep)
    scorer = loaded.prep.get("kws_scorer") if width > 1 else None
    out = []
    for wav in wavs:
        feats = log_mel(torch.from_numpy(np.ascontiguousarray(wav)), 16000, cfg.n_mels)
        logp, lens = loaded.model(feats[None], torch.tensor([len(feats)]))
        lp = logp[0, : int(lens[0])]
        if width == 1:
            text = tok.decode(ctc.greedy(lp))
            nbest = [(text, 0.0)]
        else:
            nbest = ctc.prefix_beam_nbest(lp, tok.piece, width, width, scorer, dec.lm.weight,
                                          dec.lm.bonus if scorer is not None else 0.0)
            text = nbest[0][0]
        out.append((lp.float().numpy(), text, nbest))
    return out


def build_index(catalog: Catalog, ws, name: str, collection: str, served, purpose: str, requester: str,
                beam: int | None = None, progress: Callable[[int, int], None] | None = None,
                only: set[str] | None = None) -> dict:
    """Index COLLECTION with the asr model SERVED (already checked for this use) under WS/indexes/NAME; ONLY
    (external ids) narrows it to some of the permitted items."""
    from hearthkit.data.loader import GovernedReader
    from hearthkit.governance import audit
    from hearthkit.governance.manifest import Request
    from hearthkit.governance.policy import compute_manifest
    from hearthkit.ingest.audio import decode
    from hearthkit.recipes.load import open_model
    from hearthkit.store.vault import workspace_store
    from hearthkit.transcribe.formats import write_atomic

    if not name or "/" in name or name.startswith("."):
        raise HearthError(f"index name {name!r}: use letters, digits, - and _")
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == collection))
        if coll is None:
            raise HearthError(f"collection {collection!r} is not in this workspace; see `hearth data ls`")
        seal_to = (coll.name, coll.community)
        restricted = coll.restricted
    loaded = open_model(served.folder, "asr")
    tok = loaded.prep["tokenizer"]
    if getattr(loaded.cfg, "base", None):
        raise HearthError(f"model {served.name}: spoken-term search needs hearthkit's own CTC models (conformer or "
                          "bigru); a fine-tuned pretrained base is not supported yet")
    if type(tok).__name__ != "CharTokenizer":
        raise HearthError(f"model {served.name}: spoken-term search needs a character-unit asr model "
                          "(model.units: chars), so that words it never saw can be searched")
    manifest = compute_manifest(catalog, Request(purpose=purpose, requester=requester, collections=(collection,),
                                                 as_of=date.today().isoformat()))
    entries = [e for e in manifest.included if e.get("kind", "audio") == "audio"
               and (only is None or e["external_id"] in only)]
    if not entries:
        reasons = ", ".join(f"{k}: {n}" for k, n in manifest.excluded_counts().items()) or "it holds no audio"
        raise HearthError(f"collection {collection}: no item may be indexed for {purpose} by {requester} "
                          f"({reasons}); nothing was written")
    folder = ws.root / "indexes" / name
    folder.mkdir(parents=True, exist_ok=True)
    mhash = manifest.write(folder / "manifest.json")
    store = workspace_store(ws)
    # Derived data is sealed like its source: when the collection is restricted or any of its audio is sealed
    # (a protocol or label sealed it), every object of the index is (the most restricted reading).
    seal_for = seal_to if restricted or any(store.is_sealed(e["content_hash"]) for e in entries) else None
    reader = GovernedReader(store, entries, access_log=folder / "access.jsonl")
    items: list[IndexedItem] = []
    for k, e in enumerate(entries):
        wav = decode(reader.read(e["content_hash"]), 16000)
        [(lp, text, nbest)] = item_posteriors(loaded, [wav], beam)
        digest = store.put(_pack(lp, text, e["external_id"], nbest), seal_for=seal_for)
        meta = e.get("meta") or {}
        items.append(IndexedItem(e["item_id"], e["external_id"], digest, len(lp), meta.get("source_recording"),
                                 float(meta.get("start_s") or 0.0)))
        if progress:
            progress(k + 1, len(entries))
    doc = {"format": FORMAT, "name": name, "collection": collection, "model": served.name, "purpose": purpose,
           "requester": requester, "manifest": mhash, "units": list(tok.chars), "frame_s": FRAME_S,
           # The index is the model's output over the data: it carries the data's labels and the model's own (those
           # it inherited from its training data and parents), the most restricted reading of both.
           "sealed": seal_for is not None,
           "restrictions": sorted(set(manifest.restrictions) | set(served.restrictions)),
           "built_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
           "items": [vars(i) for i in items]}
    write_atomic(folder / "index.json", json.dumps(doc, ensure_ascii=False, indent=1))
    with catalog.session() as s:
        audit.append(s, "manifest", requester, index=name, manifest=mhash, collection=collection, purpose=purpose)
        audit.append(s, "data_access", requester, index=name, manifest=mhash, phase="kws-index", items=len(items))
    return doc


def _redacted(manifest: dict) -> dict:
    """MANIFEST without the words its entries carried (transcripts, translations, tiers): what may stay in the clear
    beside a sealed index."""
    from hearthkit.governance.sealed_manifest import PARTS, strip_words

    return {**manifest, **{k: [strip_words(e) for e in manifest.get(k) or [] if isinstance(e, dict)]
                           for k in PARTS}}


def seal_indexes(store, folder: Path, collection: str, community: str) -> int:
    """Seal every spoken-term index of COLLECTION under FOLDER (a workspace's indexes/) that still has anything in the
    clear, as its collection is being sealed; returns the number of objects encrypted.

    Each index is marked `sealing` first (a search refuses it, in one line, until this finishes: a crash never leaves
    an index half sealed and searchable), its manifest as built is kept as a sealed object, its posteriorgram objects
    are encrypted with the collection's data key before their clear copies are deleted (a crash leaves both, never
    neither; running it again finishes), the manifest beside it loses the words it carried, and index.json is
    rewritten last with `sealed: true`. Idempotent.
    """
    from hearthkit.store.cas import atomic_write  # synced: the clear copies are deleted after it

    n = 0
    for path in sorted(folder.glob("*/index.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            objs = [str(i["obj"]) for i in doc["items"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a usable index (searching it says so); nothing of it can be read as an index either
        if doc.get("collection") != collection:
            continue
        clear = [o for o in objs if store.plain.has(o)]
        mpath = path.parent / "manifest.json"
        if doc.get("sealed") and not doc.get("sealing") and not clear:
            continue
        if not doc.get("manifest_object") and mpath.is_file():  # the manifest as built, words included: kept sealed
            doc["manifest_object"] = store.put(mpath.read_bytes(), seal_for=(collection, community))
        doc = {**doc, "sealed": True, "sealing": True}
        atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=1).encode())
        for o in clear:
            if not store.sealed.has(o):
                store.sealed.put(store.plain.get(o), collection, community, digest=o)
        if mpath.is_file():
            try:
                redacted = _redacted(json.loads(mpath.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                redacted = {"note": "the manifest this index was built from is kept sealed (manifest_object)"}
            atomic_write(mpath, (json.dumps(redacted, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                                 + "\n").encode())
        for o in clear:
            store.plain.delete(o)
            n += 1
        doc.pop("sealing")
        atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=1).encode())
    return n


def erase_from_indexes(store, folder: Path, collection: str, item_ids: set[int], withdrawal: dict,
                       community: str, unreadable: list[tuple[Path, str]] | None = None) -> int:
    """Take the withdrawn ITEM_IDS of COLLECTION out of every spoken-term index under FOLDER (a workspace's
    indexes/): their entries in index.json, their posteriorgram objects (1-best and n-best with them), and their words
    in the manifest the index was built from (the file beside it and its sealed copy); returns the items taken out.

    Order, for crash safety: a new sealed manifest copy first, then the manifest beside (one atomic rename), then
    index.json without the items, naming the objects to delete under `erased` (one atomic rename), then the deletes;
    a re-run deletes what an interrupted one left, and finds nothing else to do. An object another index (or a run
    manifest's sealed words) still names is kept: the store names objects by content, so identical bytes are shared.
    An index that cannot be erased is appended to UNREADABLE as (index.json, why) and the others are still erased.
    """
    n = 0
    for path in sorted(folder.glob("*/index.json")):
        try:
            n += _erase_from_index(store, path, collection, item_ids, withdrawal, community)
        except (OSError, ValueError, KeyError, TypeError, HearthError) as exc:
            if unreadable is None:
                raise
            unreadable.append((path, str(exc) or type(exc).__name__))
    return n


def _erase_from_index(store, path: Path, collection: str, item_ids: set[int], withdrawal: dict,
                      community: str) -> int:
    """Erase ITEM_IDS from the index whose index.json is PATH (see erase_from_indexes); the items taken out."""
    from hearthkit.governance.sealed_manifest import ERASED, canonical, erase_entries
    from hearthkit.store.cas import atomic_write  # synced: the clear copies are deleted after it

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        gone = [i for i in doc["items"] if int(i["item_id"]) in item_ids]
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # not a usable index: searching it says so, and nothing in it can be found by item
    if doc.get("collection") != collection:
        return 0
    erased = dict(doc.get(ERASED) or {})
    pending = [str(o) for o in erased.get("objects") or []]
    mpath = path.parent / "manifest.json"
    if mpath.is_file():  # the manifest beside, in the clear (an open collection's index): words erased
        try:
            beside = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            beside = None
        if isinstance(beside, dict):
            clean, hit = erase_entries({k: v for k, v in beside.items() if k != ERASED}, item_ids)
            if hit:
                rec = dict(beside.get(ERASED) or {})
                rec = {"sha256": rec.get("sha256") or doc.get("manifest"),
                       "after": hashlib.sha256(canonical(clean)).hexdigest(),
                       "items": [*(rec.get("items") or []), *({"item_id": i, **withdrawal} for i in hit)]}
                atomic_write(mpath, canonical({**clean, ERASED: rec}))
    if doc.get("manifest_object"):  # the manifest as built, kept sealed: a copy without the items' words
        old = str(doc["manifest_object"])
        kept = json.loads(store.get(old).decode("utf-8"))
        clean, hit = erase_entries(kept, item_ids)
        if hit:
            doc["manifest_object"] = store.put(canonical(clean), seal_for=(collection, community))
            pending.append(old)
    if gone or pending != list(erased.get("objects") or []):
        pending += [str(i["obj"]) for i in gone]
        ids = [*(erased.get("items") or []), *({"item_id": int(i["item_id"]), **withdrawal} for i in gone)]
        doc = {**doc, "items": [i for i in doc["items"] if int(i["item_id"]) not in item_ids],
               ERASED: {"items": ids, "objects": sorted(set(pending))}}
        atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=1).encode())
    if pending:
        named = _named_elsewhere(path)
        for o in pending:
            if o not in named:
                store.delete(o)
    return len(gone)


def _named_elsewhere(path: Path) -> set[str]:
    """The store objects that indexes beside PATH's (their items and manifests) and the workspace's run manifests
    (their sealed words) name: identical bytes are one object, so erasing one index's copy must leave them."""
    from hearthkit.governance.sealed_manifest import SEALED_WORDS

    out: set[str] = set()
    for other in path.parent.parent.glob("*/index.json"):
        if other == path:
            continue
        try:
            doc = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # nothing in it can be opened as an index, so it names nothing it could read
        if not isinstance(doc, dict):
            continue
        if doc.get("manifest_object"):
            out.add(str(doc["manifest_object"]))
        out.update(str(i["obj"]) for i in doc.get("items") or [] if isinstance(i, dict) and "obj" in i)
    for run in (path.parent.parent.parent / "runs").glob("*/manifest.json"):
        try:
            text = run.read_text(encoding="utf-8")
            if SEALED_WORDS not in text:
                continue
            out.update(str(d) for d in json.loads(text)[SEALED_WORDS]["objects"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # an unreadable manifest is reported by the erasure of run manifests
    return out


class SpokenIndex:
    """An index opened for searching: its items' posteriors are loaded (decrypted in memory) only when asked."""

    def __init__(self, folder: Path):
        path = folder / "index.json"
        try:
            self.doc = json.loads(path.read_text(encoding="utf-8"))
            self.items = [IndexedItem(**i) for i in self.doc["items"]]
            self.units = self.doc["units"]
        except FileNotFoundError:
            raise HearthError(f"{folder}: no spoken-term index here (no index.json); build one with "
                              "`hearth search-index COLLECTION --asr MODEL --index NAME`") from None
        except (ValueError, KeyError, TypeError):
            raise HearthError(f"{path}: not a hearthkit spoken-term index; build it again") from None
        self.folder = folder
        self.index = {c: i + 1 for i, c in enumerate(self.units)}
        self._loaded: tuple[frozenset[int], Posteriorgram, list[IndexedItem], list[str]] | None = None
        self._nbests: list[list[tuple[str, float]]] = []

    def units_of(self, term: str) -> list[int]:
        """Unit ids of TERM, normalised as the model writes; a character it has no unit for is one clear line."""
        from hearthkit.recipes.asr.tokenizer import CharTokenizer

        norm = CharTokenizer.normalise(term)
        if not norm:
            raise HearthError(f"search term {term!r} has no letters to search for")
        missing = sorted({c for c in norm if c not in self.index})
        if missing:
            raise HearthError(f"search term {term!r}: the index's model writes no {', '.join(map(repr, missing))}; "
                              "spell the term as its transcripts do")
        return [self.index[c] for c in norm]

    def check_sealed(self, catalog: Catalog, store) -> None:
        """Refuse, in one line, to search an index that is in the clear while its collection is sealed (built while
        it was open, or its sealing was interrupted): the most restricted reading until a steward seals or
        rebuilds it."""
        from hearthkit.ingest.sealing import collection_must_seal

        name, collection = self.doc.get("name", self.folder.name), self.doc.get("collection")
        fix = (f"a steward runs `hearth keys seal` (it seals the index with its collection) or rebuilds it with "
               f"`hearth search-index {collection} --asr MODEL --index {name}`")
        if self.doc.get("sealing"):
            raise HearthError(f"index {name}: its sealing was interrupted, so it is not searched; {fix}")
        if self.doc.get("sealed"):
            return
        with catalog.session() as s:
            coll = s.scalar(select(Collection).where(Collection.name == collection))
            if coll is None:  # nothing says how its words must be kept: the most restricted reading
                raise HearthError(f"index {name}: its collection {collection!r} is not in this workspace, so it is "
                                  "not searched; rebuild it with `hearth search-index COLLECTION --asr MODEL "
                                  f"--index {name}`")
            sealed = collection_must_seal(s, coll) or store.keys.active_record(coll.name) is not None
        if sealed:
            raise HearthError(f"index {name}: collection {collection} is sealed but this index of it is not (it was "
                              f"built while the collection was open), so it is not searched; {fix}")

    def load(self, store, allowed: set[int]) -> tuple[Posteriorgram, list[IndexedItem], list[str]]:
        """The posteriorgram of the ALLOWED items (decrypted in memory), their records and their 1-best texts."""
        key = frozenset(allowed)
        if self._loaded is None or self._loaded[0] != key:
            chosen = [i for i in self.items if i.item_id in allowed]
            logps, texts, nbests = [], [], []
            for i in chosen:
                lp, text, nbest = _unpack(store.get(i.obj))
                logps.append(lp)
                texts.append(text)
                nbests.append(nbest)
            space = self.index.get(" ")
            self._loaded = (key, Posteriorgram(logps, space, len(self.units) + 1), chosen, texts)
            self._nbests = nbests
        return self._loaded[1], self._loaded[2], self._loaded[3]

    def calibration(self) -> Calibration:
        """The index's own calibration (calibration.json beside it, fitted on held-out terms) or the default."""
        path = self.folder / "calibration.json"
        if not path.is_file():
            return DEFAULT_CALIBRATION
        try:
            return Calibration.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as e:
            raise HearthError(f"{path}: not a usable calibration ({e}); delete it or fit it again") from None

    def term_features(self, store, allowed: set[int], term: str) -> tuple[list[IndexedItem], np.ndarray, list]:
        """Every ALLOWED item's feature row for TERM (score.FEATURES) and its best keyword hit (None: no path).

        Only the allowed items are opened: the features, and every normalisation over them, never see an item the
        searcher may not access."""
        from hearthkit.recipes.asr.tokenizer import CharTokenizer

        units = self.units_of(term)
        norm = CharTokenizer.normalise(term)
        gram, chosen, texts = self.load(store, allowed)
        best: list[Hit | None] = [None] * len(chosen)
        conf = np.zeros(len(chosen))
        for h in gram.search(units, per_item=1, floor=LOG_FLOOR):  # keyword-local max: one hit per item
            best[h.item], conf[h.item] = h, h.score
        nb = np.array([nbest_posterior(n, norm) for n in self._nbests])
        one = np.array([f" {norm} " in f" {t} " for t in texts], np.float64)
        return chosen, term_features(conf, nb, one, len(units)), best

    def search(self, store, allowed: set[int], term: str, limit: int = 20, floor: float = 0.01) -> list[dict]:
        """Hits of TERM among the ALLOWED items, best first, one per item scoring at least FLOOR: item, times (in the
        item and its recording), score (the calibrated probability that the item holds the term) and kst (that
        probability moved by the term's own threshold: at least 0.5 is worth detecting under NIST's costs, whatever
        the term; over a small collection few terms reach it, since a false alarm weighs more there)."""
        chosen, x, best = self.term_features(store, allowed, term)
        if not chosen:
            return []
        p = self.calibration().prob(x)
        frame = float(self.doc.get("frame_s", FRAME_S))
        trials = sum(i.frames for i in chosen) * frame  # NIST's trials: seconds of speech searched
        score = kst(p, trials)
        out = []
        for k in np.argsort(-p, kind="stable"):  # within one term KST keeps the order of p
            h = best[k]
            if h is None or p[k] < floor:
                continue
            it = chosen[k]
            start, end = round(h.start * frame, 2), round(h.end * frame, 2)
            out.append({"item_id": it.item_id, "item": it.external_id, "start_s": start, "end_s": end,
                        "recording": it.source, "recording_start_s": round(it.offset_s + start, 2),
                        "score": round(float(p[k]), 4), "kst": round(float(score[k]), 4)})
            if len(out) >= limit:
                break
        return out

    def text_search(self, store, allowed: set[int], term: str) -> list[dict]:
        """The 1-best baseline: ALLOWED items whose 1-best transcript holds TERM as whole words (score 1)."""
        from hearthkit.recipes.asr.tokenizer import CharTokenizer

        norm = CharTokenizer.normalise(term)
        _, chosen, texts = self.load(store, allowed)
        return [{"item_id": it.item_id, "item": it.external_id, "score": 1.0}
                for it, t in zip(chosen, texts, strict=True) if norm and f" {norm} " in f" {t} "]


def open_index(ws, name: str) -> SpokenIndex:
    """The index NAME of workspace WS (or a folder path)."""
    folder = Path(name)
    if not (folder / "index.json").is_file():
        folder = ws.root / "indexes" / name
    return SpokenIndex(folder)

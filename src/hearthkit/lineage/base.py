"""Pretrained base models (issue 20): local Hugging Face folders registered by content hash, with their terms.

A base is registered once by a steward or the workspace owner (`hearth base add`): its folder is checked offline,
hashed, and stored with its licence, source, Local Contexts labels and declared training data. A run names it as
`model.base: NAME`; `resolve_base` refuses an unknown name and a folder whose bytes changed since registration (the
most restricted reading: a changed folder is not the checkpoint whose terms were recorded). A model trained from a
base inherits `base_restrictions` exactly as it inherits its training items' labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import BaseModelRecord
from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v

OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Files that hold a tokenizer's vocabulary: a folder whose tokenizer_config.json names a tokenizer needs one of them.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "source.spm", "target.spm", "sentencepiece.model")
TOKENIZER_GLOBS = ("*.spm", "*.model", "*vocab*.json", "*vocab*.txt")
VOCAB_FREE = {"ByT5Tokenizer", "CanineTokenizer"}  # byte/character tokenizers: no vocabulary file to miss
# Licences known to allow commercial use. Anything else is read as non-commercial (most restricted), with a reason.
PERMISSIVE = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0",
              "cc-by-3.0", "cc-by-sa-3.0", "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m",
              "mpl-2.0", "unlicense", "isc", "artistic-2.0", "lgpl-3.0", "gpl-3.0", "odc-by", "pddl", "odbl"}
_NC = re.compile(r"(^|[^a-z])nc([^a-z]|$)|non[-_ ]?commercial|research[-_ ]?only", re.I)
NON_COMMERCIAL_KEY = "bc:non_commercial"  # what an NC licence implies, in the labels' own vocabulary
UNDECLARED_KEY = "notice:attribution_incomplete"  # a base whose training data is undeclared: whose data is unknown


@dataclass(frozen=True)
class BaseRef:
    """What a recipe and the lineage need of a registered base model."""

    name: str
    path: Path
    content_hash: str
    architecture: str
    licence: str
    source: str
    labels: tuple[str, ...]
    training_data: str | None

    def record(self) -> dict:
        """The base as a run/model record carries it (JSON-safe)."""
        out = asdict(self)
        out.update(path=str(self.path), labels=list(self.labels), restrictions=base_restrictions(self))
        return out


def set_offline_env() -> None:
    """Make transformers/huggingface_hub/datasets refuse the network (idempotent)."""
    for key in OFFLINE_ENV:
        os.environ[key] = "1"


_FILE_HASHES: dict[tuple, bytes] = {}  # (resolved path, inode, size, mtime_ns, ctime_ns) -> sha256, this process


def _files(root: Path) -> list[tuple[str, Path]]:
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith((".cache/", ".git/")):
            # huggingface_hub's download bookkeeping and a git clone's history are not the checkpoint
            out.append((rel, p))
    return sorted(out)


def hash_base_folder(path: Path) -> str:
    """sha256 over PATH's files: sorted relative paths, each followed by its bytes' own sha256.

    Within one process a file whose inode, size and change times are unchanged is not read again, so a server
    checking a multi-GB base before every use pays for reading it once (a new process always reads everything).
    """
    h = hashlib.sha256()
    for rel, p in _files(Path(path)):
        st = p.stat()
        key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in _FILE_HASHES:
            _FILE_HASHES[key] = _file_sha256(p)
        h.update(rel.encode("utf-8") + b"\0" + _FILE_HASHES[key])
    return h.hexdigest()


def _file_sha256(p: Path) -> bytes:
    f_hash = hashlib.sha256()
    with open(p, "rb") as f:  # follows symlinks: a Hub cache snapshot links to its blobs
        for block in iter(lambda: f.read(1 << 20), b""):
            f_hash.update(block)
    return f_hash.digest()


def _json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise HearthError(f"{path}: {what} is not readable JSON ({type(exc).__name__}); copy the folder again from "
                          "where it was downloaded") from None
    if not isinstance(doc, dict):
        raise HearthError(f"{path}: {what} is not a JSON object; copy the folder again")
    return doc


def _remote_code(doc: dict, path: Path) -> None:
    if doc.get("auto_map"):
        raise HearthError(f"{path}: names remote code (auto_map) that transformers would download and run; "
                          "hearthkit loads only architectures built into transformers: use a folder without it")


def check_base_folder(path: Path) -> str:
    """PATH's architecture (config.json model_type) if it loads offline; else a one-line HearthError."""
    folder = Path(path)
    if not folder.is_dir():
        raise HearthError(f"{folder}: no such folder; give a local Hugging Face model folder (config.json + weights)")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise HearthError(f"{folder}: no config.json; not a Hugging Face model folder (save it with "
                          "`save_pretrained`, or copy the whole snapshot folder)")
    cfg = _json(cfg_path, "config.json")
    arch = cfg.get("model_type")
    if not isinstance(arch, str) or not arch:
        raise HearthError(f"{cfg_path}: has no model_type; transformers cannot tell which architecture it is")
    _remote_code(cfg, cfg_path)
    indexes = [folder / i for i in INDEXES if (folder / i).is_file()]
    if not any((folder / w).is_file() for w in WEIGHTS) and not indexes:
        raise HearthError(f"{folder}: no weights (model.safetensors, pytorch_model.bin or a sharded index); "
                          "copy them into the folder — hearthkit never downloads")
    for index in indexes:
        weight_map = _json(index, index.name).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise HearthError(f"{index}: has no weight_map; copy the folder again")
        missing = sorted({str(s) for s in weight_map.values()} - {p.name for p in folder.iterdir()})
        if missing:
            raise HearthError(f"{index}: names {len(missing)} shard(s) absent here ({missing[0]}…); transformers "
                              "would try to download them: copy every shard into the folder")
    for extra in ("tokenizer_config.json", "preprocessor_config.json", "processor_config.json",
                  "feature_extractor_config.json", "image_processor_config.json"):
        if (folder / extra).is_file():
            _remote_code(_json(folder / extra, extra), folder / extra)
    tok = folder / "tokenizer_config.json"
    if tok.is_file() and _json(tok, tok.name).get("tokenizer_class") not in VOCAB_FREE:
        has_vocab = any((folder / t).is_file() for t in TOKENIZER_FILES) \
            or any(p.is_file() for g in TOKENIZER_GLOBS for p in folder.glob(g))
        if not has_vocab:
            raise HearthError(f"{tok}: a tokenizer is configured but its vocabulary files (tokenizer.json, "
                              "vocab.json, *.model, …) are absent; transformers would try to download them: copy "
                              "them into the folder")
    return arch


def _ref(rec: BaseModelRecord) -> BaseRef:
    return BaseRef(rec.name, Path(rec.path), rec.content_hash, rec.architecture, rec.licence, rec.source,
                   tuple(rec.labels or ()), rec.training_data)


def _check_labels(labels: tuple[str, ...] | list[str]) -> None:
    for key in labels:
        if key not in v.LABELS and not key.startswith("protocol:"):
            raise HearthError(f"--label {key!r}: not a known label key (see `hearth labels list`), e.g. "
                              "bc:non_commercial, tk:attribution, or protocol:NAME")


def _authorised(s: Session, by: str | None, owner: str | None) -> str:
    """The audit actor when BY is a steward of some community, or OWNER is the verified workspace owner."""
    from hearthkit.catalog.models import Membership, Person

    if owner:
        return f"owner:{owner}"
    if by:
        steward = s.scalar(select(Person.id).join(Membership, Membership.person_id == Person.id)
                           .where(Person.name == by, Membership.role == "steward"))
        if steward is not None:
            return by
        raise HearthError(f"{by} is not a steward of any community; a base model is registered by a steward "
                          "(--by NAME) or the workspace owner (--as-owner)")
    raise HearthError("registering a base model needs a steward (--by NAME) or the workspace owner (--as-owner)")


def add_base(catalog: Catalog, path: Path, *, name: str, licence: str, source: str, labels: tuple[str, ...] = (),
             training_data: str | None = None, by: str | None, owner: str | None = None,
             note: str | None = None) -> BaseRef:
    """Register folder PATH as base model NAME with its terms; BY a steward or OWNER (already verified); audited."""
    from hearthkit.governance import audit

    folder = Path(path).resolve()
    name, licence, source = name.strip(), licence.strip(), source.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", name):
        raise HearthError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (no spaces)")
    if not licence:
        raise HearthError("--licence is required: the base's licence as its source states it (e.g. CC-BY-NC-4.0)")
    if not source:
        raise HearthError("--source is required: where the weights came from (a URL or a citation)")
    labels = tuple(sorted(set(labels)))
    _check_labels(labels)
    training_data = (training_data or "").strip() or None

    def _may_add(s: Session) -> str:
        actor = _authorised(s, by, owner)
        if s.scalar(select(BaseModelRecord).where(BaseModelRecord.name == name)) is not None:
            raise HearthError(f"a base model named {name!r} is already registered; choose another --name")
        return actor

    with catalog.session() as s:
        _may_add(s)  # refuse before reading gigabytes
    arch = check_base_folder(folder)
    digest = hash_base_folder(folder)
    with catalog.session() as s:
        actor = _may_add(s)  # again, in the writing transaction
        rec = BaseModelRecord(name=name, content_hash=digest, path=str(folder), architecture=arch, licence=licence,
                              source=source, labels=list(labels), training_data=training_data,
                              registered_by=actor, note=note)
        s.add(rec)
        ref = _ref(rec)
        audit.append(s, "base_model", actor, base=name, content_hash=digest, path=str(folder), architecture=arch,
                     licence=licence, source=source, labels=list(labels), training_data=training_data,
                     restrictions=base_restrictions(ref))
    return ref


def list_bases(catalog: Catalog) -> list[BaseRef]:
    """Every registered base model, by name."""
    with catalog.session() as s:
        return [_ref(r) for r in s.scalars(select(BaseModelRecord).order_by(BaseModelRecord.name))]


def get_base(catalog: Catalog, name: str) -> BaseRef:
    """Registered base NAME as recorded (its folder not checked), or a one-line error listing the known ones."""
    with catalog.session() as s:
        rec = s.scalar(select(BaseModelRecord).where(BaseModelRecord.name == name))
        if rec is None:
            known = ", ".join(s.scalars(select(BaseModelRecord.name).order_by(BaseModelRecord.name))) or "none yet"
            raise HearthError(f"model.base {name!r}: no base model of that name is registered (registered: {known}); "
                              "a steward registers one with `hearth base add FOLDER --name NAME --licence L "
                              "--source S --by STEWARD`")
        return _ref(rec)


def verify_base(ref: BaseRef) -> BaseRef:
    """REF if its folder still holds exactly the registered bytes; else refuse, naming the folder and the way out."""
    if not ref.path.is_dir():
        raise HearthError(f"base model {ref.name}: its folder {ref.path} is missing; restore the registered files "
                          "there (or register the checkpoint again under a new name with `hearth base add`)")
    now = hash_base_folder(ref.path)
    if now != ref.content_hash:
        raise HearthError(f"base model {ref.name}: its folder {ref.path} changed since it was registered (sha256 "
                          f"{now[:12]}… ≠ {ref.content_hash[:12]}…); restore the registered files, or register the "
                          "changed checkpoint under a new name with `hearth base add` so its terms are recorded")
    return ref


def resolve_base(catalog: Catalog, name: str) -> BaseRef:
    """Registered base NAME, refused when unknown or when its folder is missing or changed on disk."""
    return verify_base(get_base(catalog, name))


def licence_non_commercial(licence: str) -> str | None:
    """Why LICENCE forbids commercial use (an NC licence, or one not known to allow it), else None."""
    text = licence.strip()
    if _NC.search(text):
        return f"licence {text} is non-commercial"
    spdx = re.sub(r"\s+", "-", text.lower())
    if spdx not in PERMISSIVE:
        # Most restricted reading: terms hearthkit cannot read are not taken to allow commercial use.
        return f"licence {text!r} is not one known to allow commercial use"
    return None


def base_restrictions(ref: BaseRef) -> list[str]:
    """What a model derived from REF inherits: its labels' inherited restrictions, NC from its licence, notices."""
    out = {k for k in ref.labels if k.startswith("protocol:") or v.LABELS.get(k) in v.INHERITED | {v.NOTICE}}
    if licence_non_commercial(ref.licence):
        out.add(NON_COMMERCIAL_KEY)
    if not ref.training_data:
        out.add(UNDECLARED_KEY)
    return sorted(out)


def base_attribution(ref: BaseRef) -> list[str]:
    """Attribution a derived model carries for its base (the card's attribution list)."""
    return [f"base model {ref.name}: {ref.source} (licence {ref.licence})"]


def base_notices(ref: BaseRef) -> list[str]:
    """Readable notices about REF for the card: why it is non-commercial, undeclared training data."""
    notes = []
    why = licence_non_commercial(ref.licence)
    if why:
        notes.append(f"{why}: every model derived from {ref.name} is non-commercial")
    if not ref.training_data:
        notes.append(f"{ref.name} does not declare its training data: whose data it learned from is unknown")
    return notes


def base_from_record(rec: dict) -> BaseRef:
    """The BaseRef a run record (`BaseRef.record()`) names."""
    return BaseRef(rec["name"], Path(rec["path"]), rec["content_hash"], rec.get("architecture") or "",
                   rec.get("licence") or "", rec.get("source") or "", tuple(rec.get("labels") or ()),
                   rec.get("training_data"))


def check_base_use(s: Session, ref: BaseRef, purpose: str, requester: str | None) -> None:
    """Refuse a run for PURPOSE by REQUESTER that base REF's terms forbid (as a derived model would be refused)."""
    from hearthkit.lineage.guard import check_use
    from hearthkit.lineage.registry import memberships

    restrictions = base_restrictions(ref)
    why = licence_non_commercial(ref.licence)
    if purpose == v.Purpose.commercial and why:
        raise HearthError(f"model.base {ref.name}: {why}, so a commercial run may not fine-tune it; choose a base "
                          "whose licence allows commercial use")
    check_use(f"{ref.name} (base)", "active", restrictions, purpose, requester, lambda who: memberships(s, who))


def base_for_run(catalog: Catalog, model_cfg: dict, purpose: str, requester: str | None) -> dict | None:
    """The record of the base a run's `model.base` names, resolved, hash-checked and allowed for PURPOSE; or None.

    The one place the engine reads `model.base`, whatever the recipe: planning stores what this returns on the run
    (`runs.base`, run.json), and publishing makes the model inherit its restrictions.
    """
    name = (model_cfg or {}).get("base")
    if not name:
        return None
    if not isinstance(name, str):
        raise HearthError(f"model.base: {name!r} is not a base model name; see `hearth base list`")
    ref = resolve_base(catalog, name)
    with catalog.session() as s:
        check_base_use(s, ref, purpose, requester)
    return ref.record()


def recheck_run_base(catalog: Catalog, rec: dict | None) -> None:
    """On resume: the base a run was planned with must still be registered and hold the same bytes."""
    if not rec:
        return
    now = resolve_base(catalog, rec["name"])
    if now.content_hash != rec["content_hash"]:
        raise HearthError(f"run's base model {rec['name']} was registered again with other files since the run was "
                          f"planned (sha256 {rec['content_hash'][:12]}… then, {now.content_hash[:12]}… now); "
                          "plan a new run")


def check_model_base(s: Session, model) -> None:
    """Refuse any use of registered MODEL when the base it was fine-tuned from is missing or changed on disk.

    Most restricted reading: the terms it inherited were recorded for those exact bytes, and adapter-only models
    cannot even be loaded without them.
    """
    from hearthkit.catalog.models import Run

    run = s.get(Run, model.run_id) if model.run_id is not None else None
    if run is None or not run.base:
        return
    try:
        verify_base(base_from_record(run.base))
    except HearthError as exc:
        raise HearthError(f"model {model.name} may not be used: {exc}") from None


def base_terms(rec: dict | None) -> dict | None:
    """What every surface shows of a base (plan, `models show`, the web model page): name, hash, licence, source,
    labels, training data, and what a model fine-tuned from it inherits, with the notices saying why."""
    if not rec:
        return None
    ref = base_from_record(rec)
    return {"name": ref.name, "content_hash": ref.content_hash, "architecture": ref.architecture,
            "licence": ref.licence, "source": ref.source, "labels": list(ref.labels),
            "training_data": ref.training_data, "inherits": base_restrictions(ref), "notices": base_notices(ref)}


def model_base_terms(s: Session, model) -> dict | None:
    """The terms of the base registered MODEL was fine-tuned from (its run's record), or None."""
    from hearthkit.catalog.models import Run

    run = s.get(Run, model.run_id) if model.run_id is not None else None
    return base_terms(run.base) if run is not None else None

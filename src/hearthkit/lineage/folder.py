"""Restrictions that travel with a model folder: a signed restrictions.json, and the check every folder passes.

A model folder may be used as a parent, for serving or for export only when it is (1) a registered model of this
workspace, (2) a folder whose `restrictions.json` was signed with this workspace's key (kept in the key folder,
outside the workspace) and whose weights are the ones it was signed for, or (3) a folder a steward registered in
`external_models` by its weights' hash. Anything else — no file, an edited file, swapped weights, a folder signed
by another workspace, a README.md-only card — is refused: the most restricted reading, with a steward's way out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearthkit.catalog.models import ExternalModel, Model
from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v
from hearthkit.store.cas import atomic_write
from hearthkit.store.keys import local_secret

FILE = "restrictions.json"
FORMAT = "hearthkit-restrictions/1"
SECRET = "model-restrictions"  # <key folder>/model-restrictions.secret signs every restrictions.json
# Model-section keys, besides init_from, that name a parent model folder (st's decoder_from: the mt model its e2e
# decoder starts from): checked for the run's purpose at planning and inherited at publishing like init_from's.
OTHER_PARENT_KEYS = ("decoder_from",)


def weight_hashes(folder: Path) -> dict[str, str]:
    """sha256 of each weight file (*.safetensors) in FOLDER, by file name."""
    out = {}
    for p in sorted(Path(folder).glob("*.safetensors")):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[p.name] = h.hexdigest()
    return out


def content_hash(folder: Path) -> str:
    """One sha256 over FOLDER's weight files (names and hashes): what `external_models.content_hash` stores."""
    hashes = weight_hashes(folder)
    if not hashes:
        raise HearthError(f"{folder}: no weight files (*.safetensors); not a model folder")
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def _mac(key: bytes, doc: dict) -> str:
    body = json.dumps({k: doc[k] for k in sorted(doc) if k != "signature"}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def write_restrictions(folder: Path, ws, model: str, recipe: str | None, restrictions: list[str],
                       attribution: list[str], parents: list[dict], manifest_sha256: str | None = None) -> Path:
    """Write FOLDER/restrictions.json for MODEL of workspace WS, over the weights now in FOLDER, signed."""
    doc = {"format": FORMAT, "model": model, "workspace": ws.config.name, "recipe": recipe,
           "manifest_sha256": manifest_sha256, "weights": weight_hashes(folder),
           "restrictions": sorted(set(restrictions)), "attribution": sorted(set(attribution)),
           "parents": parents, "signed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    doc["signature"] = {"alg": "hmac-sha256", "value": _mac(local_secret(ws.keys_dir, SECRET), doc)}
    path = Path(folder) / FILE
    atomic_write(path, json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8"))
    return path


def _raw(folder: Path) -> dict | None:
    """FOLDER's restrictions.json as JSON, or None when it is missing or unreadable (never trusted by itself)."""
    try:
        doc = json.loads((folder / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def read_signed(folder: Path, ws) -> tuple[dict | None, str]:
    """(the verified restrictions.json, "") or (None, why it cannot be trusted)."""
    folder = Path(folder)
    if not (folder / FILE).is_file():
        card = " (a README.md card is not machine-readable restrictions)" if (folder / "README.md").is_file() else ""
        return None, f"it has no {FILE}{card}"
    doc = _raw(folder)
    if doc is None or doc.get("format") != FORMAT or not isinstance(doc.get("signature"), dict) \
            or not isinstance(doc.get("restrictions"), list) or not isinstance(doc.get("weights"), dict):
        return None, f"its {FILE} is not readable"
    if ws is None:
        return None, f"its {FILE} cannot be verified without this workspace's key folder"
    secret = ws.keys_dir / f"{SECRET}.secret"
    if not secret.is_file():
        return None, f"its {FILE} cannot be verified: this workspace has no signing key ({secret})"
    if not hmac.compare_digest(_mac(local_secret(ws.keys_dir, SECRET), doc), str(doc["signature"].get("value"))):
        return None, f"its {FILE} does not verify (edited, or signed by another workspace)"
    now = weight_hashes(folder)
    if now != doc["weights"]:
        changed = sorted(set(now) ^ set(doc["weights"]) | {k for k in now if doc["weights"].get(k) != now[k]})
        return None, f"its weights ({', '.join(changed)}) are not the ones its {FILE} was signed for"
    return doc, ""


@dataclass
class FolderModel:
    """A model folder accepted for use, and what governs it: its restrictions, status and where they came from."""

    folder: Path
    name: str
    source: str  # registered | signed | external
    restrictions: list[str] = field(default_factory=list)
    attribution: list[str] = field(default_factory=list)
    status: str = "active"
    successor: str | None = None
    model_id: int | None = None  # a registered model of this workspace (a parent for lineage)
    recipe: str | None = None
    parents: list[dict] = field(default_factory=list)


def _registered(s: Session, folder: Path) -> Model | None:
    for m in s.scalars(select(Model).where(Model.name == folder.name)):
        if Path(m.path).resolve() == folder:
            return m
    for m in s.scalars(select(Model)):  # a model folder renamed on disk is still that model
        if Path(m.path).resolve() == folder:
            return m
    return None


def _registered_twin(s: Session, folder: Path, hashes: dict[str, str]) -> Model | None:
    """The registered model whose published weights are byte for byte FOLDER's (looked up by its config's name)."""
    try:
        name = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None
    m = s.scalar(select(Model).where(Model.name == name)) if isinstance(name, str) else None
    return m if m is not None and Path(m.path).is_dir() and weight_hashes(Path(m.path)) == hashes else None


def inspect_folder(s: Session, ws, folder: Path) -> FolderModel:
    """What governs model FOLDER here, or a one-line HearthError saying a steward must register it."""
    from hearthkit.lineage.registry import successor

    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise HearthError(f"{folder}: not a published hearthkit model (no such folder)")
    m = _registered(s, folder)
    if m is not None:
        nxt = successor(s, m)
        return FolderModel(folder, m.name, "registered", list(m.restrictions or []), list(m.attribution or []),
                           m.status, nxt.name if nxt else None, m.id, m.recipe)
    doc, why = read_signed(folder, ws)
    hashes = weight_hashes(folder)
    ext = None
    if hashes:
        ext = s.scalar(select(ExternalModel).where(ExternalModel.content_hash == content_hash(folder)))
    if ext is not None:
        raw = doc or _raw(folder) or {}
        # A steward's registration adds to what the folder says about itself, never removes from it.
        carried = [r for r in raw.get("restrictions") or [] if isinstance(r, str)]
        return FolderModel(folder, ext.name, "external", sorted(set(ext.restrictions or []) | set(carried)),
                           sorted(a for a in raw.get("attribution") or [] if isinstance(a, str)),
                           recipe=raw.get("recipe"), parents=raw.get("parents") or [])
    if doc is None and hashes:
        twin = _registered_twin(s, folder, hashes)
        if twin is not None:  # a plain copy of a registered model's weights: the registry governs it by hash
            nxt = successor(s, twin)
            return FolderModel(folder, twin.name, "registered", list(twin.restrictions or []),
                               list(twin.attribution or []), twin.status, nxt.name if nxt else None, twin.id,
                               twin.recipe)
    if doc is None:
        raise HearthError(f"{folder}: refused: {why}; a steward must register it first: `hearth models register "
                          f"{folder} --name NAME --community COMMUNITY --by STEWARD [--restriction KEY …]`")
    out = FolderModel(folder, doc["model"], "signed", sorted(doc["restrictions"]), sorted(doc.get("attribution", [])),
                      recipe=doc.get("recipe"), parents=doc.get("parents") or [])
    same = s.scalar(select(Model).where(Model.name == doc["model"])) if doc.get("workspace") == ws.config.name \
        else None
    if same is not None:  # an export of a model registered here: the registry's status and restrictions rule too
        nxt = successor(s, same)
        out.restrictions = sorted(set(out.restrictions) | set(same.restrictions or []))
        out.status, out.successor, out.model_id = same.status, nxt.name if nxt else None, same.id
    return out


def authorize_folder(s: Session, ws, folder: Path, purpose: str, requester: str | None = None) -> FolderModel:
    """FOLDER's governing facts if PURPOSE by REQUESTER is allowed (the same guard as registered models)."""
    from hearthkit.lineage.guard import check_use
    from hearthkit.lineage.registry import memberships

    fm = inspect_folder(s, ws, folder)
    check_use(fm.name, fm.status, fm.restrictions, purpose, requester, lambda who: memberships(s, who),
              successor=fm.successor)
    if fm.model_id is not None:  # issue 20: a model of this workspace fine-tuned from a base needs it intact
        from hearthkit.lineage.base import check_model_base

        check_model_base(s, s.get(Model, fm.model_id))
    return fm


def register_external(s: Session, folder: Path, name: str, community: str, by: str, restrictions: list[str],
                      note: str | None) -> ExternalModel:
    """A steward of COMMUNITY registers model FOLDER from elsewhere under NAME with RESTRICTIONS (audited)."""
    from hearthkit.governance import audit
    from hearthkit.governance.stewardship import require_steward

    folder = Path(folder).resolve()
    if not (folder / "config.json").is_file():
        raise HearthError(f"{folder}: not a model folder (no config.json)")
    bad = [r for r in restrictions if r not in v.LABELS and not r.startswith("protocol:")]
    if bad:
        raise HearthError(f"--restriction {bad[0]!r}: not a known label key (see `hearth labels list`) or "
                          "protocol:NAME")
    require_steward(s, by, community)
    if s.scalar(select(ExternalModel).where(ExternalModel.name == name)) is not None \
            or s.scalar(select(Model).where(Model.name == name)) is not None:
        raise HearthError(f"a model named {name!r} is already registered; choose another --name")
    digest = content_hash(folder)
    carried = [r for r in (_raw(folder) or {}).get("restrictions") or [] if isinstance(r, str)]
    ext = ExternalModel(name=name, content_hash=digest, path=str(folder), community=community,
                        restrictions=sorted(set(restrictions) | set(carried)), registered_by=by, note=note)
    s.add(ext)
    audit.append(s, "external_model", by, model=name, community=community, content_hash=digest,
                 restrictions=ext.restrictions, path=str(folder), note=note)
    return ext

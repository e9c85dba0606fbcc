"""Lineage for display: who may see a model, its graph (model <- run <- manifest <- collections, parents),
its per-group results and what withdrawals did to it."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hearthkit.catalog.models import Collection, Item, Model, Run, RunItem, Withdrawal
from hearthkit.governance import vocabulary as v
from hearthkit.lineage.withdraw import impact

STATUS_WORDS = {"active": "active", "needs-retrain": "needs retrain", "revoked": "revoked", "superseded": "revoked"}


def _chain(s: Session, m: Model) -> list[Model]:
    """M and its parents over every parent edge, nearest first."""
    from hearthkit.lineage.registry import ancestors

    return [m, *ancestors(s, m)]


def communities_of(s: Session, m: Model) -> set[str]:
    """Communities whose collections M or any of its parents learned from."""
    runs = [x.run_id for x in _chain(s, m)]
    return set(s.scalars(select(Collection.community).join(Item, Item.collection_id == Collection.id)
                         .join(RunItem, RunItem.item_id == Item.id).where(RunItem.run_id.in_(runs)).distinct()))


def may_see(s: Session, m: Model, roles: dict[str, set[str]], protocols: set[str]) -> bool:
    """Whether a viewer with ROLES (community -> roles) and PROTOCOLS may see model M at all.

    Stewards of a community whose data it learned from always may. Anyone else needs a role in such a community
    and, for a protocol-restricted model, membership of every protocol it carries; a protocol label with no
    recorded protocol leaves nobody but the stewards (most restricted reading).
    """
    mine = communities_of(s, m)
    if any("steward" in roles.get(c, set()) for c in mine):
        return True
    if not any(roles.get(c) for c in mine):
        return False
    restrictions = m.restrictions or []
    needed = {r.split(":", 1)[1] for r in restrictions if r.startswith("protocol:")}
    if not needed and any(v.LABELS.get(r) in (v.STEWARD_ONLY, v.PROTOCOL) for r in restrictions):
        return False
    return needed <= set(protocols)


def visible_models(s: Session, roles: dict[str, set[str]], protocols: set[str]) -> list[Model]:
    """Registered models the viewer may see, by name."""
    return [m for m in s.scalars(select(Model).order_by(Model.name)) if may_see(s, m, roles, protocols)]


def status_word(status: str) -> str:
    """active / needs retrain / revoked, as the pages say it."""
    return STATUS_WORDS.get(status, "revoked")  # unknown status: the most restricted reading


def graph(s: Session, m: Model, roles: dict[str, set[str]], protocols: set[str]) -> dict:
    """Model <- run <- manifest <- collections (item counts), then its parent the same way; hidden parents named
    only as hidden."""
    run = s.get(Run, m.run_id)
    colls = s.execute(select(Collection.name, func.count()).join(Item, Item.collection_id == Collection.id)
                      .join(RunItem, RunItem.item_id == Item.id).where(RunItem.run_id == m.run_id)
                      .group_by(Collection.name).order_by(Collection.name)).all()
    node = {"model": m.name, "status": status_word(m.status), "recipe": m.recipe,
            "run": {"name": run.name if run else None, "purpose": run.purpose if run else None,
                    "requester": run.requester if run else None,
                    "request_id": ((run.config or {}).get("request") or {}).get("id") if run else None},
            "manifest": {"sha256": m.manifest_hash or (run.manifest_hash if run else None),
                         "item_count": sum(n for _, n in colls)},
            "collections": [{"name": c, "item_count": n} for c, n in colls], "parent": None}
    if m.parent_id is not None:
        p = s.get(Model, m.parent_id)
        if p is not None and p.id != m.id:
            node["parent"] = graph(s, p, roles, protocols) if may_see(s, p, roles, protocols) else {"hidden": True}
    return node


def per_group(card_path: str | None) -> list[dict]:
    """Per-group held-out results from a model card's model-index: by, group, metric, value."""
    if not card_path or not Path(card_path).is_file():
        return []
    text = Path(card_path).read_text(encoding="utf-8")
    if not text.startswith("---"):
        return []
    try:
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return []
    rows = []
    for entry in front.get("model-index") or []:
        for r in entry.get("results") or []:
            split = (r.get("dataset") or {}).get("split", "")
            by, _, group = split.removeprefix("held-out, ").partition("=")
            for metric in r.get("metrics") or []:
                if metric.get("value") is not None:
                    rows.append({"by": by, "group": group, "metric": metric["type"], "value": float(metric["value"])})
    return rows


def card_body(card_path: str | None) -> str:
    """The card's Markdown without its YAML front matter ('' when there is no card)."""
    if not card_path or not Path(card_path).is_file():
        return ""
    text = Path(card_path).read_text(encoding="utf-8")
    return text.split("---", 2)[2] if text.startswith("---") and text.count("---") >= 2 else text


def model_impact(s: Session, m: Model) -> dict:
    """What withdrawals did to M: its manifest items withdrawn since, and the withdrawal records that hit them."""
    withdrawn = s.scalar(select(func.count()).select_from(RunItem).join(Item, Item.id == RunItem.item_id)
                         .where(RunItem.run_id == m.run_id, Item.withdrawn_at.is_not(None)))
    colls = set(s.scalars(select(Item.collection_id).join(RunItem, RunItem.item_id == Item.id)
                          .where(RunItem.run_id == m.run_id).distinct()))
    records = []
    for w in s.scalars(select(Withdrawal).where(Withdrawal.collection_id.in_(colls)).order_by(Withdrawal.at)):
        hit = s.scalar(select(func.count()).select_from(RunItem).where(
            RunItem.run_id == m.run_id, RunItem.item_id.in_(withdrawal_items(s, w))))
        if hit:
            records.append({"id": w.id, "scope": w.scope, "subject": w.subject, "at": w.at.isoformat()[:10],
                            "reason": w.reason, "item_count": hit})
    return {"withdrawn_items": withdrawn or 0, "withdrawals": records, "status_reason": m.status_reason}


def withdrawal_items(s: Session, w: Withdrawal):
    """SELECT of the ids of the items a withdrawal record covers."""
    q = select(Item.id).where(Item.collection_id == w.collection_id)
    if w.scope == "item":
        return q.where(Item.external_id == w.subject)
    if w.scope == "speaker":
        return q.where(Item.speaker == w.subject)
    return q


def withdrawal_impact(s: Session, w: Withdrawal) -> list[dict]:
    """Every model a recorded withdrawal touches (directly or through a parent), with its status now."""
    rows = impact(s, withdrawal_items(s, w))
    for r in rows:
        r["status"] = status_word(r["status"])
    return rows

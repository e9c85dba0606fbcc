"""Model pages: the list a viewer may see, and one model's card, per-group charts, lineage, restrictions, impact."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from markdown_it import MarkdownIt
from sqlalchemy import select

from hearthkit.catalog.models import Model
from hearthkit.lineage import graph as g
from hearthkit.lineage.base import model_base_terms
from hearthkit.web.deps import Actor, render, require_scope
from hearthkit.web.paging import PER_PAGE, Page, page_number

router = APIRouter()
_md = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in a card is shown as text, never run
CHART_W, BAR_H = 320, 22


def _visible(s, who: Actor, name: str) -> Model:
    """Model NAME if WHO may see it; otherwise 404, the same answer as for a model that does not exist."""
    m = s.scalar(select(Model).where(Model.name == name))
    if m is None or not g.may_see(s, m, who.roles, who.protocols):
        raise HTTPException(404, "no such model (or you may not see it)")
    return m


def _summary(s, m: Model) -> dict:
    return {"name": m.name, "recipe": m.recipe, "status": g.status_word(m.status), "status_reason": m.status_reason,
            "restrictions": list(m.restrictions or []), "metrics": m.metrics or {},
            "created_at": m.created_at.isoformat()[:19] if m.created_at else None}


def model_list(request: Request, who: Actor) -> dict:
    """The models WHO may see, one page of them."""
    page = page_number(request.query_params.get("page"))
    with request.app.state.catalog.session() as s:
        models = g.visible_models(s, who.roles, who.protocols)
        rows = [_summary(s, m) for m in models[(page - 1) * PER_PAGE:page * PER_PAGE]]
    return {"models": rows, "page": Page(rows, len(models), page, PER_PAGE).as_dict()}


def charts(rows: list[dict]) -> list[dict]:
    """Per metric and grouping, horizontal bars scaled to the largest value (drawn as inline SVG, no script)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        out.setdefault((r["metric"], r["by"]), []).append(r)
    result = []
    for (metric, by), bars in sorted(out.items()):
        top = max((b["value"] for b in bars), default=0.0) or 1.0
        result.append({"metric": metric, "by": by, "height": BAR_H * len(bars) + 4, "width": CHART_W,
                       "bars": [{"group": b["group"], "value": b["value"], "y": 2 + i * BAR_H,
                                 "w": max(1, int((CHART_W - 150) * b["value"] / top))} for i, b in enumerate(bars)]})
    return result


def model_detail(request: Request, who: Actor, name: str) -> dict:
    """Everything the model page shows."""
    with request.app.state.catalog.session() as s:
        m = _visible(s, who, name)
        doc = _summary(s, m)
        doc.update(lineage=g.graph(s, m, who.roles, who.protocols), impact=g.model_impact(s, m),
                   base=model_base_terms(s, m),
                   attribution=list(m.attribution or []), results=g.per_group(m.card_path),
                   card_markdown=g.card_body(m.card_path))
    return doc


@router.get("/models", include_in_schema=False)
def models_page(request: Request, who: Actor = Depends(require_scope("read"))):
    return render(request, "models/list.html", model_list(request, who))


@router.get("/api/v1/models")
def models_api(request: Request, who: Actor = Depends(require_scope("read"))) -> dict:
    return model_list(request, who)


@router.get("/models/{name}", include_in_schema=False)
def model_page(request: Request, name: str, who: Actor = Depends(require_scope("read"))):
    doc = model_detail(request, who, name)
    with request.app.state.catalog.session() as s:
        # The Revoke form only for a steward whose community's data it learned from (the library checks again).
        m = _visible(s, who, name)
        may_revoke = m.status not in ("revoked", "superseded") and bool(g.communities_of(s, m) & who.stewards())
    return render(request, "models/detail.html", {**doc, "card_html": _md.render(doc["card_markdown"]),
                                                  "charts": charts(doc["results"]), "may_revoke": may_revoke})


@router.get("/api/v1/models/{name}")
def model_api(request: Request, name: str, who: Actor = Depends(require_scope("read"))) -> dict:
    return model_detail(request, who, name)

"""Lineage for display: who may see a model, its graph with parents, per-group results, withdrawal impact."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "governance"))

from builder import Builder  # noqa: E402

from hearthkit.catalog.db import Catalog  # noqa: E402
from hearthkit.catalog.models import Item, Model, Run, RunItem, Withdrawal  # noqa: E402
from hearthkit.lineage import graph as g  # noqa: E402

CARD = """---
model_name: m
model-index:
- name: m
  results:
  - dataset: {name: korero, split: 'held-out, speaker=s1'}
    metrics: [{type: cer, value: 0.25}]
  - dataset: {name: korero, split: 'held-out, speaker=s2'}
    metrics: [{type: cer, value: null}]
---

# m
"""


def _model(s, name, items, restrictions=(), parent=None, card=None):
    run = Run(name=f"run-{name}", recipe="asr", purpose="research", requester="rangi", manifest_hash="h" * 64,
              config={"request": {"id": 3}})
    s.add(run)
    s.flush()
    for i in items:
        s.add(RunItem(run_id=run.id, item_id=i))
    m = Model(name=name, run_id=run.id, path="/nowhere", restrictions=list(restrictions), parent_id=parent,
              card_path=card, recipe="asr", manifest_hash="h" * 64)
    s.add(m)
    s.flush()
    return m.id


def test_visibility_graph_groups_and_impact(tmp_path: Path):
    cat = Catalog.open(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True)
    b = Builder(cat)
    a = b.collection("korero", community="A")
    i1, i2 = b.item(a, "r1", speaker="s1"), b.item(a, "r2", speaker="s2")
    card = tmp_path / "card.md"
    card.write_text(CARD, encoding="utf-8")
    with cat.session() as s:
        base = _model(s, "base", [i1, i2], card=str(card))
        _model(s, "secret", [i1], restrictions=["tk:secret_sacred", "protocol:elders"], parent=base)
        _model(s, "unbound", [i2], restrictions=["tk:women_general"])
    member, elder, steward = {"A": {"member"}}, {"A": {"member"}}, {"A": {"steward"}}
    with cat.session() as s:
        assert [m.name for m in g.visible_models(s, member, set())] == ["base"]
        assert [m.name for m in g.visible_models(s, elder, {"elders"})] == ["base", "secret"]
        assert [m.name for m in g.visible_models(s, steward, set())] == ["base", "secret", "unbound"]
        assert g.visible_models(s, {"B": {"steward"}}, {"elders"}) == []
        node = g.graph(s, s.query(Model).filter_by(name="secret").one(), elder, {"elders"})
        assert node["collections"] == [{"name": "korero", "item_count": 1}] and node["run"]["request_id"] == 3
        assert node["parent"]["model"] == "base" and node["parent"]["manifest"]["item_count"] == 2
    assert g.per_group(str(card)) == [{"by": "speaker", "group": "s1", "metric": "cer", "value": 0.25}]
    assert g.per_group(None) == [] and "# m" in g.card_body(str(card))
    with cat.session() as s:
        s.query(Item).filter_by(id=i2).update({"withdrawn_at": datetime.now(UTC)})
        s.add(Withdrawal(collection_id=a, scope="speaker", subject="s2", by="aroha", reason="asked", items=1))
    with cat.session() as s:
        base_m = s.query(Model).filter_by(name="base").one()
        imp = g.model_impact(s, base_m)
        assert imp["withdrawn_items"] == 1 and [w["subject"] for w in imp["withdrawals"]] == ["s2"]
        rows = g.withdrawal_impact(s, s.query(Withdrawal).one())
        # base learned from s2 directly; secret descends from base; unbound learned from s2 directly.
        assert {r["model"]: r["via"] for r in rows} == {"base": None, "secret": "base", "unbound": None}
    cat.close()

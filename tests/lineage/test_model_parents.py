"""A model with two parents (init_from + decoder_from): withdrawal, revocation and lineage reach it through both."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item, Model, ModelParent, Run, RunItem
from hearthkit.lineage.graph import communities_of
from hearthkit.lineage.registry import ancestors, descendants
from hearthkit.lineage.withdraw import impact


def _model(s, name: str, recipe: str, items: list[Item], parent: Model | None = None) -> Model:
    run = Run(name=name, recipe=recipe, purpose="research", requester="ana", manifest_hash=name * 2)
    s.add(run)
    s.flush()
    s.add_all(RunItem(run_id=run.id, item_id=i.id) for i in items)
    m = Model(name=name, run_id=run.id, path=f"/models/{name}", recipe=recipe,
              parent_id=parent.id if parent else None)
    s.add(m)
    s.flush()
    return m


def test_a_second_parents_withdrawal_reaches_the_model_built_on_it(tmp_path: Path) -> None:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True)  # real migrations, 0007 included
    with catalog.session() as s:
        speech, text = Collection(name="speech", community="north"), Collection(name="texts", community="south")
        s.add_all([speech, text])
        s.flush()
        audio = [Item(collection_id=speech.id, external_id=f"a{n}", kind="audio", content_hash=f"{n:064x}",
                      size_bytes=1) for n in range(3)]
        pairs = [Item(collection_id=text.id, external_id=f"t{n}", kind="text", content_hash=f"{n + 9:064x}",
                      size_bytes=1) for n in range(3)]
        s.add_all(audio + pairs)
        s.flush()
        asr = _model(s, "asr", "asr", audio)
        mt = _model(s, "mt", "mt", pairs)
        st = _model(s, "st", "st", audio, parent=asr)  # init_from: asr
        s.add(ModelParent(model_id=st.id, parent_id=mt.id, role="decoder_from"))  # what publishing records
        s.flush()
        # Withdrawing a text pair the mt model learned from reaches st through its second parent, saying via what.
        hit = {r["model"]: r for r in impact(s, [pairs[0].id])}
        assert set(hit) == {"mt", "st"} and hit["st"]["via"] == "mt" and hit["st"]["affected_items"] == 0
        assert {r["model"] for r in impact(s, [audio[0].id])} == {"asr", "st"}
        assert [m.name for m in descendants(s, mt)] == ["st"]  # a revocation of mt marks st too
        assert {m.name for m in ancestors(s, st)} == {"asr", "mt"}
        assert communities_of(s, st) == {"north", "south"}  # both communities' stewards speak for st
        assert s.scalar(select(ModelParent.role).where(ModelParent.model_id == st.id)) == "decoder_from"
    catalog.close()

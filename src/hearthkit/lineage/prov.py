"""W3C PROV (JSON) of a model's derivation: model ← run ← manifest ← items, parent models, agents."""

from __future__ import annotations

import json

from prov.model import ProvDocument
from sqlalchemy import select
from sqlalchemy.orm import Session

from hearthkit.catalog.models import Collection, Item, Model, Run, RunItem
from hearthkit.lineage.registry import ancestors, get_model


def prov_document(s: Session, name: str) -> ProvDocument:
    """A PROV document for model NAME and its ancestors."""
    doc = ProvDocument()
    doc.add_namespace("hearth", "urn:hearthkit:")
    doc.add_namespace("sha256", "urn:sha256:")
    model = get_model(s, name)
    chain = [model, *ancestors(s, model)]
    for m in chain:
        run = s.get(Run, m.run_id)
        ent = doc.entity(f"hearth:model/{m.name}", {"hearth:recipe": m.recipe or "", "hearth:status": m.status,
                                                     "hearth:restrictions": ",".join(m.restrictions or [])})
        act = doc.activity(f"hearth:run/{run.name}", run.created_at, None, {"hearth:purpose": run.purpose})
        man = doc.entity(f"sha256:{run.manifest_hash}", {"prov:type": "hearth:Manifest"})
        requester = doc.agent(f"hearth:person/{run.requester}", {"prov:type": "prov:Person"})
        doc.wasGeneratedBy(ent, act)
        doc.used(act, man)
        doc.wasAssociatedWith(act, requester)
        if run.base:  # issue 20: the pretrained base it fine-tuned, by content hash, with its terms
            _base_entity(doc, ent, act, run.base)
        if m.parent_id:
            parent = s.get(Model, m.parent_id)
            doc.used(act, f"hearth:model/{parent.name}")
            doc.wasDerivedFrom(ent, f"hearth:model/{parent.name}")
        rows = s.execute(select(Item.external_id, Item.content_hash, Collection.name, Collection.community)
                         .join(RunItem, RunItem.item_id == Item.id)
                         .join(Collection, Collection.id == Item.collection_id)
                         .where(RunItem.run_id == run.id).order_by(Item.id)).all()
        communities = set()
        for ext, digest, coll, community in rows:
            item = doc.entity(f"sha256:{digest}", {"hearth:external_id": ext, "hearth:collection": coll})
            doc.hadMember(man, item)
            communities.add(community)
        for c in sorted(communities):
            agent = doc.agent(f"hearth:community/{c.replace(' ', '_')}", {"prov:type": "prov:Organization"})
            doc.wasAttributedTo(ent, agent)
    return doc


def _base_entity(doc: ProvDocument, model_ent, act, base: dict) -> None:
    """The base model as a PROV entity (hash, licence, source, labels); the model was derived from it."""
    from hearthkit.lineage.base import base_from_record, base_restrictions

    ref = base_from_record(base)
    ent = doc.entity(f"hearth:base/{ref.name}", {
        "prov:type": "hearth:BaseModel", "hearth:content_sha256": ref.content_hash,
        "hearth:architecture": ref.architecture, "hearth:licence": ref.licence, "hearth:source": ref.source,
        "hearth:labels": ",".join(ref.labels), "hearth:training_data": ref.training_data or "undeclared",
        "hearth:restrictions": ",".join(base_restrictions(ref))})
    doc.used(act, ent)
    doc.wasDerivedFrom(model_ent, ent)


def prov_json(s: Session, name: str) -> str:
    """PROV-JSON text for model NAME."""
    return json.dumps(json.loads(prov_document(s, name).serialize(format="json")), indent=1, ensure_ascii=False)

"""Croissant 1.0 JSON-LD (with Responsible-AI fields) describing a collection, plus its item index CSV."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.errors import HearthError

# The Croissant 1.0 context, as mlcroissant writes it (kept here so writing a card needs no mlcroissant).
CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/", "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract", "field": "cr:field",
    "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet", "format": "cr:format",
    "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key",
    "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path", "recordSet": "cr:recordSet",
    "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated", "replace": "cr:replace",
    "samplingRate": "cr:samplingRate", "sc": "https://schema.org/", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform",
}
COLUMNS = [("external_id", "sc:Text"), ("kind", "sc:Text"), ("speaker", "sc:Text"), ("dialect", "sc:Text"),
           ("gender", "sc:Text"), ("duration_s", "sc:Float"), ("content_sha256", "sc:Text"), ("labels", "sc:Text")]


def collection_card(s: Session, name: str, out_dir: Path) -> Path:
    """Write NAME.croissant.json and NAME-items.csv (withdrawn items left out) into OUT_DIR; return the JSON path."""
    coll = s.scalar(select(Collection).where(Collection.name == name))
    if coll is None:
        raise HearthError(f"collection {name!r} is not in the catalog; see `hearth data ls`")
    items = s.scalars(select(Item).where(Item.collection_id == coll.id, Item.withdrawn_at.is_(None))
                      .order_by(Item.external_id)).all()
    labels: dict[int, list[str]] = {}
    for lab in s.scalars(select(Label).where(Label.item_id.in_([i.id for i in items]))):
        labels.setdefault(lab.item_id, []).append(lab.key)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c for c, _ in COLUMNS])
    for i in items:
        w.writerow([i.external_id, i.kind, i.speaker or "", i.dialect or "", i.gender or "",
                    f"{i.duration_s or 0:.3f}", i.content_hash, ";".join(sorted(labels.get(i.id, [])))])
    index = buf.getvalue().encode("utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{name}-items.csv"
    csv_path.write_bytes(index)

    consents = s.scalars(select(Consent).where(Consent.collection_id == coll.id, Consent.withdrawn_at.is_(None))).all()
    purposes = sorted({p for c in consents if c.scope == "collective" for p in c.purposes})
    speakers = Counter(i.speaker for i in items if i.speaker)
    label_counts = Counter(k for ks in labels.values() for k in ks)
    hours = sum(i.duration_s or 0 for i in items) / 3600
    doc = {
        "@context": CONTEXT, "@type": "sc:Dataset", "name": coll.name,
        "description": f"{len(items)} items ({hours:.2f} h of audio) held under the authority of {coll.community}.",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "citeAs": coll.citation or f"{coll.name}, {coll.community}",
        "license": coll.licence or "community terms: see consent records",
        "url": f"urn:hearthkit:collection:{coll.name}",
        "creator": {"@type": "sc:Organization", "name": coll.community},
        "rai:dataCollection": "Recordings and texts contributed by community members under recorded collective and "
                              "individual consent; imported with hearthkit (content-addressed, hash-verified).",
        "rai:dataUseCases": [f"consented purpose: {p}" for p in purposes] or ["none: no collective consent on record"],
        "rai:personalSensitiveInformation": [
            f"voices of {len(speakers)} identifiable speakers; individual consent is required per speaker",
            *[f"{k}: {n} items carry this Local Contexts label" for k, n in sorted(label_counts.items())]],
        "rai:dataLimitations": ["Items under protocol, seasonal or secret/sacred labels are excluded from training "
                                "unless a steward approves; withdrawn items are omitted from this description."],
        "rai:dataBiases": [f"speaker {k}: {n} items" for k, n in speakers.most_common()],
        "rai:dataSocialImpact": f"Data of {coll.community}; the community keeps authority over its use.",
        "distribution": [{"@type": "cr:FileObject", "@id": "items-csv", "name": "items-csv",
                          "contentUrl": csv_path.name, "encodingFormat": "text/csv",
                          "sha256": hashlib.sha256(index).hexdigest()}],
        "recordSet": [{"@type": "cr:RecordSet", "@id": "items", "name": "items", "field": [
            {"@type": "cr:Field", "@id": f"items/{c}", "name": c, "dataType": t,
             "source": {"fileObject": {"@id": "items-csv"}, "extract": {"column": c}}} for c, t in COLUMNS]}],
    }
    path = out_dir / f"{name}.croissant.json"
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def base_card(ref, out_dir: Path) -> Path:
    """Write BASE.croissant.json: the pretraining data of registered base model REF (lineage/base.py BaseRef).

    A model fine-tuned from a base also learned from the base's own training data; this describes that data as far
    as its makers declared it (often not at all: then it says so), with the base's licence, source and hash.
    """
    from hearthkit.lineage.base import base_notices, base_restrictions

    declared = ref.training_data or "undeclared by the base model's makers"
    manifest = json.dumps({"base_model": ref.name, "content_sha256": ref.content_hash, "architecture":
                           ref.architecture, "licence": ref.licence, "source": ref.source,
                           "labels": list(ref.labels), "training_data": ref.training_data,
                           "derived_models_inherit": base_restrictions(ref)}, indent=1, ensure_ascii=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / f"{ref.name}-base.json"
    meta_path.write_text(manifest, encoding="utf-8")
    doc = {
        "@context": CONTEXT, "@type": "sc:Dataset", "name": f"{ref.name}-pretraining-data",
        "description": f"The data base model {ref.name} ({ref.architecture}, sha256 {ref.content_hash}) was "
                       f"pretrained on: {declared}. Models fine-tuned from it inherit: "
                       f"{', '.join(base_restrictions(ref)) or 'nothing'}.",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "citeAs": ref.source, "license": ref.licence, "url": f"urn:hearthkit:base:{ref.name}",
        "isBasedOn": ref.source,
        "rai:dataCollection": declared,
        "rai:dataUseCases": [f"pretraining of base model {ref.name}, fine-tuned under hearthkit governance"],
        "rai:dataLimitations": base_notices(ref) or [f"declared by the base's makers: {declared}"],
        "rai:personalSensitiveInformation": [f"{k}: a label the base was registered with" for k in ref.labels]
        or ["not declared by the base model's makers"],
        "distribution": [{"@type": "cr:FileObject", "@id": "base-json", "name": "base-json",
                          "contentUrl": meta_path.name, "encodingFormat": "application/json",
                          "sha256": hashlib.sha256(manifest.encode("utf-8")).hexdigest()}],
        "recordSet": [{"@type": "cr:RecordSet", "@id": "base", "name": "base", "field": [
            {"@type": "cr:Field", "@id": f"base/{c}", "name": c, "dataType": "sc:Text",
             "source": {"fileObject": {"@id": "base-json"}, "extract": {"jsonPath": f"$.{c}"}}}
            for c in ("base_model", "content_sha256", "licence", "source")]}],
    }
    path = out_dir / f"{ref.name}.croissant.json"
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    return path

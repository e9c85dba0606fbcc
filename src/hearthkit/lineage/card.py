"""Hugging Face-style model cards: YAML front matter + sections, per-group model-index results."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from hearthkit.governance.manifest import Manifest

# The Hub's task id (pipeline_tag, model-index task.type) of each recipe; a recipe missing here fails the card test.
HUB_TASKS = {"asr": "automatic-speech-recognition", "st": "automatic-speech-recognition", "mt": "translation",
             "lm": "text-generation", "landcover": "image-segmentation", "change": "image-segmentation",
             "kws": "audio-classification"}
HUB_METRICS = {"ppl": "perplexity", "miou": "mean_iou"}  # the Hub's metric ids where ours differ
LICENSE_NAME = "hearthkit-community-terms"  # `license: other` needs a name; the terms are the inherited restrictions
LICENSE_LINK = "LICENSE.md"  # written beside README.md by `hearth export`


def hub_task(recipe: str) -> str:
    """The Hugging Face Hub task id of RECIPE (e.g. asr -> automatic-speech-recognition)."""
    return HUB_TASKS.get(recipe, "other")


def languages(config: dict, manifest: Manifest) -> list[str]:
    """Languages the model handles, from its config (mt pairs, lm lang) and its items' `lang` metadata."""
    model = config.get("model") or {}
    out: list[str] = []
    for pair in model.get("pairs") or (model.get("text") or {}).get("pairs") or []:
        out += [x for x in str(pair).split("-") if x]
    for key in ("lang", "target"):
        if isinstance(model.get(key), str):
            out.append(model[key])
    out += [str((e.get("meta") or {}).get("lang")) for e in manifest.included if (e.get("meta") or {}).get("lang")]
    return sorted(set(out))


def hub_base_id(base: dict) -> str:
    """The base's Hub id when its source is a huggingface.co URL (base_model metadata), else its registered name."""
    import re

    m = re.match(r"https?://huggingface\.co/([\w.-]+/[\w.-]+)", str(base.get("source") or ""))
    return m.group(1) if m else base["name"]


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _split_unit(config: dict) -> str:
    """What the split keeps apart, in words: sentence for by=text, else the field's name."""
    by = (config.get("split") or {}).get("by", "text")
    return "sentence" if by == "text" else by


def parent_info(folder: Path) -> dict:
    """Lineage of a parent model folder (models/NAME): its name, recipe, data and restrictions, from its card."""
    folder = Path(folder)
    info: dict = {"path": str(folder.resolve()), "name": folder.name}
    card = folder / "model_card.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        if text.startswith("---"):
            front = yaml.safe_load(text.split("---", 2)[1]) or {}
            hk = front.get("hearthkit", {})
            info.update(name=front.get("model_name", folder.name), recipe=hk.get("recipe"),
                        datasets=front.get("datasets", []), manifest_sha256=hk.get("manifest_sha256"),
                        purpose=hk.get("purpose"), restrictions=hk.get("restrictions", []),
                        parent=hk.get("parent"))
    return info


def model_card(name: str, recipe: str, manifest: Manifest, n_train: int, n_test: int, rows: list[dict],
               gaps: dict, metrics: tuple[str, ...], config: dict, restrictions: list[str] | None = None,
               attribution: list[str] | None = None, lineage: list[dict] | None = None,
               signatures: dict | None = None, parent: dict | None = None, base: dict | None = None,
               ledger: list[dict] | None = None) -> str:
    """The card's Markdown text; RESTRICTIONS/ATTRIBUTION default to the manifest's (no parent).

    BASE is the pretrained base's record (lineage/base.py `BaseRef.record()`): the card cites it and its terms.
    LEDGER is the run's benefit ledger (lineage/ledger.py `run_ledger`), one row per community.
    """
    from hearthkit.lineage.base import base_from_record, base_notices, base_restrictions

    restrictions = manifest.restrictions if restrictions is None else restrictions
    restrictions = sorted(set(restrictions) | set((parent or {}).get("restrictions") or [])
                          | set(base_restrictions(base_from_record(base)) if base else []))
    attribution = manifest.attribution if attribution is None else attribution
    lineage = lineage or []
    task = hub_task(recipe)
    data_name = ", ".join(manifest.request.collections)
    results = []
    for r in rows:
        for m in metrics:
            results.append({"task": {"type": task, "name": recipe},
                            "dataset": {"name": data_name, "type": "+".join(manifest.request.collections),
                                        "split": f"held-out, {r['by']}={r['group']}"},
                            "metrics": [{"type": HUB_METRICS.get(m, m), "name": m.upper(),
                                         "value": None if math.isnan(r[m]) else round(r[m], 4)}]})
    langs = languages(config, manifest)
    front = {
        "model_name": name,
        "library_name": "hearthkit",  # an export as a transformers folder says `transformers` (engine/export.py)
        "pipeline_tag": task,
        "tags": [recipe, "hearthkit"],
        "license": "other",
        "license_name": LICENSE_NAME,
        "license_link": LICENSE_LINK,
        **({"language": langs} if langs else {}),
        **({"base_model": hub_base_id(base)} if base else {}),
        "hearthkit": {
            "recipe": recipe,
            "purpose": manifest.request.purpose,
            "requester": manifest.request.requester,
            "manifest_sha256": manifest.hash,
            "restrictions": restrictions,
            "notices": manifest.notices,
            "attribution": attribution,
            "parents": lineage,
            **({"parent": parent} if parent else {}),
            **({"base": {k: base.get(k) for k in ("name", "content_hash", "architecture", "licence", "source",
                                                  "labels", "training_data")}} if base else {}),
        },
        "datasets": list(manifest.request.collections) + [d for d in (parent or {}).get("datasets") or []
                                                          if d not in manifest.request.collections],
        "model-index": [{"name": name, "results": results}],
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {name}", "",
             f"A `{recipe}` model trained by hearthkit for purpose **{manifest.request.purpose}**, "
             f"requested by {manifest.request.requester}.", "",
             "## Restrictions inherited from the training data" + (" and the base model" if base else ""), ""]
    if restrictions:
        lines += [f"- `{r}`" for r in restrictions]
        if any(r.endswith("non_commercial") or r == "bc:research" for r in restrictions):
            lines.append("- This model is **non-commercial**: it may not be used or exported for commercial purposes.")
    else:
        lines.append("- none")
    lines += ["", "## Attribution", ""] + ([f"- {a}" for a in attribution] or ["- none recorded"])
    lines += ["", "## Lineage", "", f"- Manifest sha256: `{manifest.hash}`"]
    lines += [f"- `{p['via']}`: part of the model started from `{p['model']}` ({p['recipe']}, manifest "
              f"`{(p.get('manifest_sha256') or '')[:16]}…`)" if p.get("via") else
              f"- Initialised from `{p['model']}` ({p['recipe']}, manifest `{(p['manifest_sha256'] or '')[:16]}…`)"
              if i == 0 else f"- … which descends from `{p['model']}` (manifest `{(p['manifest_sha256'] or '')[:16]}…`)"
              for i, p in enumerate(lineage)] or ["- Trained from scratch (no parent model)"]
    if parent:
        lines += ["", "## Parent model (transfer)", "",
                  f"- Initialised from **{parent.get('name')}** ({parent.get('path')}); the output layer was re-made "
                  "for this model's units, rows of shared units copied from the parent.",
                  f"- Parent's data: {', '.join(parent.get('datasets') or []) or 'unknown'} "
                  f"(manifest sha256 {parent.get('manifest_sha256') or 'unknown'}, purpose {parent.get('purpose')})",
                  f"- Parent's restrictions, inherited here: {', '.join(parent.get('restrictions') or []) or 'none'}"]
        if parent.get("parent"):
            lines.append(f"- The parent itself descends from {parent['parent'].get('name')} (see its card)")
    if base:
        ref = base_from_record(base)
        lines += ["", "## Base model (pretrained)", "",
                  f"- Fine-tuned from **{ref.name}** ({ref.architecture}), sha256 `{ref.content_hash}`",
                  f"- Licence: {ref.licence}; source: {ref.source}",
                  f"- Labels: {', '.join(ref.labels) or 'none'}",
                  f"- Training data of the base: {ref.training_data or 'undeclared'}",
                  f"- Inherited from the base: {', '.join(base_restrictions(ref)) or 'nothing'}"]
        lines += [f"- Notice: {n}" for n in base_notices(ref)]
    counts = manifest.excluded_counts()
    lines += ["", "## Data", "",
              f"- Collections: {', '.join(manifest.request.collections)} "
              f"(policy evaluated on {manifest.request.as_of})",
              f"- Items permitted by policy: {len(manifest.included)} ({n_train} trained on, {n_test} held out, "
              f"no held-out {_split_unit(config)} seen in training)",
              f"- Items excluded: {len(manifest.excluded)}", ""]
    if counts:
        lines += ["| excluded because | items |", "|---|---|"] + [f"| {k} | {v} |" for k, v in counts.items()]
    if ledger is not None:
        lines += ["", "## Benefit ledger", "", *ledger_lines(ledger)]
    lines += ["", "## Results per group (held-out items)", "",
              "| by | group | n | " + " | ".join(f"{m.upper()} | 95% CI" for m in metrics) + " |",
              "|---|---|---|" + "---|---|" * len(metrics)]
    if not rows:  # published with `hearth train --no-eval`: the test items have not been read yet
        lines = lines[:-2] + ["Not evaluated yet: `hearth eval " + name + "` scores it on its held-out items."]
    for r in rows:
        cells = " | ".join(f"{_fmt(r[m])} | [{_fmt(r[m + '_ci'][0])}, {_fmt(r[m + '_ci'][1])}]"
                           if f"{m}_ci" in r else f"{_fmt(r[m])} | –" for m in metrics)
        lines.append(f"| {r['by']} | {r['group']} | {r['n']} | {cells} |")
    if signatures:
        lines += ["", "Metric signatures (sacrebleu): "
                  + "; ".join(f"{m.upper()} `{s}`" for m, s in signatures.items())]
    if gaps:
        lines += ["", "Gap between best and worst group: " + "; ".join(
            f"{col}: " + ", ".join(f"{m.upper()} {_fmt(v)}" for m, v in g.items()) for col, g in gaps.items())]
    lines += ["", "## Training configuration", "", "```yaml",
              yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return "\n".join(lines)


def ledger_lines(ledger: list[dict]) -> list[str]:
    """The card's benefit ledger table: per community, what its data and compute went into (as `hearth ledger`)."""
    out = ["Per community whose data this model learned from, from the run's own records: items and hours in the "
           "manifest, the community's share of the training reads in the access logs, worker-hours by device kind, "
           "and later uses (exports, serving) as of publishing — `hearth ledger COMMUNITY` gives them now.", "",
           "| community | items | hours | share of training reads | worker-hours | SLURM account | exports | serves |",
           "|---|---|---|---|---|---|---|---|"]
    for r in ledger:
        hours = ", ".join(f"{v:.4f} {k}" for k, v in sorted(r["compute"].items())) or "–"
        out.append(f"| {r['community']} | {r['items']} | {r['hours']:.3f} | {r['share']:.1%} | {hours} | "
                   f"{', '.join(r['slurm_accounts']) or '–'} | {r['uses']['export']} | {r['uses']['serve']} |")
    if not ledger:
        out.append("| (no community's collection in the manifest) | 0 | 0.000 | 0.0% | – | – | 0 | 0 |")
    return out


def write_card(path: Path, text: str) -> None:
    """Write the card atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)

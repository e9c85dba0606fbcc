"""Re-score the Mboshi st models of bench/st_mboshi.sh on dev, both on the French as the corpus ships it and on
the same text unescaped and detokenised.

The corpus's `.fr.cleaned` is Moses-tokenised with XML escapes (`l&apos; os .`): sacrebleu's 13a tokeniser splits
`&apos;` into three tokens, so 40% of the references carry easy n-grams that say nothing about the translation.
Both figures are printed; `detok` applies the same unescaping and detokenisation to references and hypotheses,
`detok lc` lower-cases both too (sacrebleu's -lc: comparable with the lower-cased `.fr.cleaned` figures when `.fr`,
cased, was staged).
Usage: HEARTH_WORKSPACE=.bench/st/ws python bench/st_mboshi.py [--set nbest=4 ...] [--split valid] MODEL [MODEL ...]
"""

from __future__ import annotations

import argparse
import html
import json
import re

from hearthkit.catalog.db import Catalog
from hearthkit.evaluate.metrics import disaggregate, signatures
from hearthkit.evaluate.run import evaluate_run
from hearthkit.workspace import find_workspace


def detok(text: str) -> str:
    """Moses-escaped, tokenised French -> plain text: unescape, glue elisions and punctuation back on."""
    text = html.unescape(text)
    text = re.sub(r"(\w)' ", r"\1'", text)  # l' os -> l'os
    text = re.sub(r" ([.,)])", r"\1", text)  # French keeps a space before ; : ! ? (typography), not before . ,
    return " ".join(text.split())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--split", default="test", help="test (dev here) or valid")
    a = ap.parse_args()
    ws = find_workspace(None)
    catalog = Catalog.open(ws.db_url)
    for name in a.models:
        ev = evaluate_run(ws.run_dir(name), ["speaker", "source"], overrides=a.overrides, catalog=catalog,
                          split_name=a.split)
        recs = ev["records"]
        plain = [{**r, "reference": detok(r["reference"]), "hypothesis": detok(r["hypothesis"])} for r in recs]
        lower = [{**r, "reference": r["reference"].lower(), "hypothesis": r["hypothesis"].lower()} for r in plain]
        for label, rows in (("as shipped", ev["rows"]),
                            ("detok", disaggregate(plain, ["speaker", "source"], ("chrf", "bleu"))),
                            ("detok lc", disaggregate(lower, ["speaker", "source"], ("chrf", "bleu")))):
            for r in rows:
                print(json.dumps({"model": name, "set": a.overrides, "text": label, "by": r["by"], "group": r["group"],
                                  "n": r["n"], "chrf": round(r["chrf"], 2), "chrf_ci": [round(x, 2) for x in
                                                                                       r["chrf_ci"]],
                                  "bleu": round(r["bleu"], 2), "bleu_ci": [round(x, 2) for x in r["bleu_ci"]]}))
        for r in recs[:5]:
            print(json.dumps({"model": name, "example": r["external_id"], "reference": r["reference"],
                              "hypothesis": r["hypothesis"], "transcript": r.get("transcript")}, ensure_ascii=False))
    print(json.dumps({"signatures": signatures(("chrf", "bleu"))}))
    catalog.close()


if __name__ == "__main__":
    main()

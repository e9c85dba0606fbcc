"""`hearth eval`: a model's errors per speaker, dialect, gender or any metadata column, with intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, user_errors
from hearthkit.cli.common import table as cli_table
from hearthkit.errors import HearthError

EXAMPLE = ("\n\nExample: hearth eval mboshi-asr --by speaker --by source\n\n"
           "Choosing a decoder weight on validation items:\n"
           "hearth eval mboshi-asr --split valid --set decode.lm.weight=0.5")


@user_errors
def eval_(
    model: Annotated[str, typer.Argument(help="Model name (see `hearth models`).")],
    by: Annotated[list[str] | None, typer.Option("--by", help="Metadata column to group by (repeat for more); "
                                                              "default speaker, dialect, gender.")] = None,
    beam: Annotated[int | None, typer.Option(help="Beam width for decoding (default: the model's).")] = None,
    split: Annotated[str, typer.Option(help="test (the held-out items; results go into the model card) or valid "
                                            "(split.valid_fraction's items: for choosing decoding settings "
                                            "without looking at the test items).")] = "test",
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Decoding setting of the model section, "
                                                        "e.g. decode.lm.weight=0.5 (repeatable).")] = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Evaluate a model on its run's held-out items: CER/WER overall and per group, 95% CIs, best-worst gap."""
    from hearthkit.evaluate.chart import bar_chart
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.lineage.publish import publish_model

    ws, catalog = open_catalog(workspace)
    run_dir = ws.run_dir(model)
    if not (ws.models_dir / model).is_dir() or not (run_dir / "final" / "model.safetensors").is_file():
        raise HearthError(f"model {model!r} not found in {ws.models_dir} with its run; see `hearth models`")
    # Default groups: the recipe's (speaker, dialect, gender).
    evaluation = evaluate_run(run_dir, by, beam=beam, split_name=split, overrides=overrides, catalog=catalog)
    cols = by or sorted({r["by"] for r in evaluation["rows"] if r["by"] != "overall"})
    if not evaluation["rows"]:
        raise HearthError(f"model {model!r}: its run has no held-out items to evaluate on")
    empty = [c for c in cols if not any(r["by"] == c for r in evaluation["rows"])]
    metrics = evaluation["metrics"]
    # With --json the same work is done (results file, or card and charts) but stdout carries one JSON object.
    say = (lambda *_a, **_k: None) if as_json else console.print
    table = cli_table("by", "group", "n", *[f"{m.upper()} [95% CI]" for m in metrics])
    for r in evaluation["rows"]:
        table.add_row(r["by"], r["group"], str(r["n"]), *[_cell(r, m) for m in metrics])
    say(table)
    for col, g in evaluation["gaps"].items():
        say(f"gap (worst - best) by {col}: " + ", ".join(f"{m.upper()} {v:.3f}" for m, v in g.items()))
    if empty:
        say(f"[yellow]no values[/] for: {', '.join(empty)} (not a field or metadata column of the items)")
    doc = {"model": model, "split": split, "set": overrides or [], "beam": beam, "metrics": list(metrics),
           "rows": evaluation["rows"], "gaps": evaluation["gaps"], "no_values": empty,
           "signatures": evaluation.get("signatures") or {}}
    if split != "test" or overrides:
        # The card reports the model as published (its own decoding) on its test items; a validation or
        # re-decoded evaluation is written beside the run instead.
        out = run_dir / f"eval-{split}{'-set' if overrides else ''}.json"
        out.write_text(json.dumps({"split": split, "set": overrides or [], "beam": beam, "rows": evaluation["rows"],
                                   "gaps": evaluation["gaps"]}, indent=1))
        say(f"results: {out}")
        if as_json:
            print_json({**doc, "results": str(out)})
        return
    card = publish_model(ws, catalog, run_dir, evaluation)
    folder = Path(card).parent
    charts = []
    for m in metrics:
        bar_chart(evaluation["rows"], m, folder / f"eval_{m}.png", title=f"{model}: {m.upper()} per group")
        charts.append(str(folder / f"eval_{m}.png"))
        say(f"chart: {charts[-1]}")
    say(f"model card: {card}")
    if as_json:
        print_json({**doc, "charts": charts, "card": str(card)})


def _cell(r: dict, m: str) -> str:
    lo, hi = r.get(f"{m}_ci", [float("nan")] * 2)
    return f"{r[m]:.3f} [{lo:.3f}, {hi:.3f}]"

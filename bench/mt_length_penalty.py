"""Beam width and length penalty for finished AmericasNLP bench runs, chosen by two-fold cross-validation on dev.

AmericasNLP gives no tuning set apart from dev, and our runs trained on all of train. So dev's lines are split in
two folds (odd and even line numbers); each fold is decoded with the (beam, penalty) that scores best on the
*other* fold, and the two halves together are scored against the baseline's dev output — no line is scored under
a setting chosen on it. The chrF of every setting on the whole of dev is printed as well (a dev-tuned figure,
optimistic, for reference only). chrF's beta = 2 weighs recall twice as much as precision, so outputs shorter
than the references cost more than longer ones; the GNMT penalty ((5+len)/6)^alpha is what moves length.

Example: .venv/bin/python bench/mt_length_penalty.py --workspace /tmp/hearth-bench-mt2 --runs es-nah-n55c --beams 4,8
One fixed setting, e.g. minimum-Bayes-risk decoding, scored on the whole of dev with nothing chosen on it:
  .venv/bin/python bench/mt_length_penalty.py --workspace W --runs es-gn-g55ccc --beams 4 --penalties 1.0 \
      --set mbr=32 --set mbr_epsilon=0.02
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mt_americasnlp import DATA, baseline_records, line_of, paired_test  # noqa: E402  (a sibling script)


def cross_validated(by_setting: dict[tuple[int, float], list[dict]], score
                    ) -> tuple[list[dict], dict[int, tuple[int, float]]]:
    """Records of each fold decoded with the (beam, penalty) best on the other fold; {fold: setting chosen}.

    Ties go to the smaller beam, then to the penalty nearer 1."""
    out, chosen = [], {}
    for fold in (0, 1):
        best = max(by_setting, key=lambda bl: (score([r for r in by_setting[bl] if line_of(r) % 2 != fold]),
                                               -bl[0], -abs(bl[1] - 1)))
        chosen[fold] = best
        out += [r for r in by_setting[best] if line_of(r) % 2 == fold]
    return sorted(out, key=line_of), chosen


def length_ratio(records: list[dict]) -> float:
    """Characters of the hypotheses over characters of the references."""
    return sum(len(r["hypothesis"]) for r in records) / sum(len(r["reference"]) for r in records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--runs", required=True, help="Finished bench runs, comma-separated.")
    ap.add_argument("--langs", default="", help="Only these target languages of a multilingual run (default all).")
    ap.add_argument("--penalties", default="0.6,1.0,1.4,1.8,2.2,2.6,3.0,3.4")
    ap.add_argument("--beams", default="4", help="Beam widths to try with each penalty.")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="A model setting applied to every decode, e.g. --set mbr=32 --set mbr_epsilon=0.02 "
                         "(minimum-Bayes-risk decoding); with one beam and one penalty nothing is chosen on dev.")
    ap.add_argument("--out", type=Path, default=Path("bench/results/mt_length_penalty.jsonl"))
    args = ap.parse_args()

    from hearthkit.engine.config import RunConfig
    from hearthkit.evaluate.metrics import score
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.workspace import find_workspace

    ws = find_workspace(args.workspace)
    settings = [(int(b), float(lp)) for b in args.beams.split(",") for lp in args.penalties.split(",")]
    args.langs = [x for x in args.langs.split(",") if x]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.runs.split(","):
        run_dir = ws.run_dir(name)
        cfg = RunConfig.model_validate(json.loads((run_dir / "run.json").read_text())["config"])
        directions = [d for d in cfg.model["pairs"] if d.split("-")[1] in (args.langs or d.split("-")[1])]
        by_setting: dict[str, dict[tuple[int, float], list[dict]]] = {d: {} for d in directions}
        t0 = time.perf_counter()
        # Decode only the directions asked for (each direction is decoded on its own, so this changes nothing else).
        only = [f"pairs=[{','.join(directions)}]"] if args.langs else []
        for beam, lp in settings:
            ev = evaluate_run(run_dir, by=["direction"],
                              overrides=[f"beam={beam}", f"length_penalty={lp}", *args.extra, *only])
            for d in directions:
                by_setting[d][(beam, lp)] = [r for r in ev["records"] if r["direction"] == d]
        tuned = ", dev-tuned" if len(settings) > 1 else ""
        for d in directions:
            whole = {}
            for (beam, lp), recs in by_setting[d].items():
                whole[f"beam {beam} lp {lp}"] = chrf = score(recs, "chrf")
                print(f"{name} {d} beam {beam} length_penalty {lp} {' '.join(args.extra)}: dev chrF {chrf:.2f} "
                      f"(whole dev{tuned}), hypothesis/reference characters {length_ratio(recs):.3f}", flush=True)
            cv, chosen = cross_validated(by_setting[d], lambda rs: score(rs, "chrf"))
            own = f"beam {cfg.model.get('beam')} lp {float(cfg.model.get('length_penalty', 1.0))}"
            base = baseline_records(args.data, d.split("-")[1], official_refs=True)
            row = {"model": name, "pair": d, "chrf_cv": score(cv, "chrf"), "bleu_cv": score(cv, "bleu"),
                   "hyp_ref_chars_cv": round(length_ratio(cv), 3),
                   "n": len(cv), "chosen": {"odd_lines": chosen[1], "even_lines": chosen[0]}, "set": args.extra,
                   "chrf_config": whole.get(own),
                   "chrf_by_setting_whole_dev": whole, "baseline_chrf_official_refs": score(base, "chrf"),
                   "decode_s_all_settings": round(time.perf_counter() - t0, 1), "date": date.today().isoformat()}
            row.update(paired_test(cv, base))
            print("RESULT " + json.dumps(row), flush=True)
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

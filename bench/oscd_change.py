"""OSCD change benchmark: train `change` on 10 cities through the governed pipeline, score 4 held-out cities.

Prints per-city and overall F1 / precision / recall / IoU of the change class, next to baselines scored by the
same code in the same run: |after - before| band-difference magnitude (threshold fitted on the training cities),
and two that need no labels at all, change-vector analysis + Otsu and IR-MAD + Otsu (issue 24); expected
calibration error on the held-out cities before/after the validation-fitted calibration, whether each city's
90 % changed-area interval covers its true changed area, training wall time, and `hearth monitor` throughput.

Ablations (issue 24): `--validation-only` trains with `--no-eval` (the held-out cities are never read) and
reports the validation strips' F1 (`--tta-ablation`: for test-time augmentation 1/2/4/8); the settings are
fixed from those, then one run without `--validation-only` scores the held-out cities once.

Usage: .venv/bin/python bench/oscd_change.py [--data ../shared/data/oscd] [--steps 500] [--out bench/out/oscd]
Re-running with the same --out resumes the finished run (training is skipped) and repeats the scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TEST_CITIES = ["bordeaux", "hongkong", "mumbai", "pisa"]  # chosen before any result was seen
ROOT = Path(__file__).resolve().parents[1]
HEARTH = [sys.executable, "-m", "hearthkit.cli.main"]


def hearth(*args: str, ws: Path) -> str:
    env = dict(os.environ, HEARTH_WORKSPACE=str(ws), COLUMNS="160")
    proc = subprocess.run([*HEARTH, *args], capture_output=True, text=True, env=env)
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode != 0:
        raise SystemExit(f"hearth {' '.join(args)} failed ({proc.returncode})")
    return proc.stdout


def config(steps: int, path: Path, pos_fraction: float, pos_weight: float, jitter: float, name: str = "oscd-change",
           normalise: str = "training", tta: int = 1, average_last: int = 1, sets: list[str] = ()) -> Path:
    import yaml

    cfg = {"name": name, "recipe": "change",
           "request": {"purpose": "research", "requester": "bench", "collections": ["oscd"]},  # judged today
           "split": {"by": "scene", "test_values": TEST_CITIES},
           "model": {"width": 16, "depth": 4, "fusion": "diff", "patch": 64, "pos_fraction": pos_fraction,
                     "pos_weight": pos_weight, "jitter": jitter, "normalise": normalise, "tta": tta,
                     "val_fraction": 0.2, "tile": 256, "margin": 16, "patches_per_epoch": 4096},
           "train": {"steps": steps, "batch_size": 8, "lr": 0.003, "warmup": 30, "log_every": 25,
                     # model averaging (issue 24): checkpoints every 50 steps, the last N averaged
                     "checkpoint_every": 50 if average_last > 1 else 100, "keep_last": max(2, average_last),
                     "average_last": average_last},
           "launch": {"nproc": 2, "threads_per_worker": 1}}
    for kv in sets:  # --set model.width=32: any run-config field, YAML-typed, as `hearth train --set` reads it
        key, _, value = kv.partition("=")
        *parents, leaf = key.split(".")
        node = cfg
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def scores(tp: int, fp: int, fn: int) -> dict:
    return {"f1": 2 * tp / max(2 * tp + fp + fn, 1), "precision": tp / max(tp + fp, 1),
            "recall": tp / max(tp + fn, 1), "iou": tp / max(tp + fp + fn, 1)}


def baseline(ws: Path, run_dir: Path) -> dict:
    """Band-difference magnitude: threshold fitted on the training cities, scored on the test cities."""
    from hearthkit.data import geo
    from hearthkit.data.loader import GovernedReader
    from hearthkit.governance.manifest import Manifest
    from hearthkit.store.cas import ContentStore

    man = Manifest.read(run_dir / "manifest.json")
    split = json.loads((run_dir / "split.json").read_text())
    stats = json.loads((run_dir / "prep" / "prep.json").read_text())["stats"]
    store = ContentStore(ws / "store")

    def magnitudes(ids):
        entries = [e for e in man.included if e["item_id"] in set(ids)]
        out = {}
        for sc in geo.open_scenes(entries, GovernedReader(store, entries)):
            w = geo.full_window(sc)
            x1, v1 = sc.read_stack("before", w)
            x2, v2 = sc.read_stack("after", w)
            d = np.sqrt(((geo.normalise(x2, v2, stats) - geo.normalise(x1, v1, stats)) ** 2).sum(0))
            out[sc.name] = (d[v1 & v2], sc.read_labels("mask", w)[v1 & v2] > 0)
        return out

    train = magnitudes(split["train"])
    d = np.concatenate([v[0] for v in train.values()])
    y = np.concatenate([v[1] for v in train.values()])
    cands = np.quantile(d, np.linspace(0.5, 0.999, 200))
    f1s = [scores(int((d >= t)[y].sum()), int((d >= t)[~y].sum()), int((d < t)[y].sum()))["f1"] for t in cands]
    th = float(cands[int(np.argmax(f1s))])
    per, tot = {}, np.zeros(3, int)
    for name, (dd, yy) in magnitudes(split["test"]).items():
        p = dd >= th
        c = np.array([(p & yy).sum(), (p & ~yy).sum(), (~p & yy).sum()])
        tot += c
        per[name] = scores(*c)
    return {"threshold": th, "train_f1": float(max(f1s)), "per_city": per, "overall": scores(*tot)}


def _scenes(ws: Path, run_dir: Path, part: str, bands: list[str]):
    """The run's training or test scenes, opened through the governed reader (its manifest only)."""
    from hearthkit.data import geo
    from hearthkit.data.loader import GovernedReader
    from hearthkit.governance.manifest import Manifest
    from hearthkit.store.cas import ContentStore

    man = Manifest.read(run_dir / "manifest.json")
    ids = set(json.loads((run_dir / "split.json").read_text())[part])
    entries = [e for e in man.included if e["item_id"] in ids]
    return geo.open_scenes(entries, GovernedReader(ContentStore(ws / "store"), entries), tuple(bands))


def _model(run_dir: Path):
    """(config, prep, model) of a finished run, from its final weights (calibration included when fitted)."""
    import torch
    from safetensors.torch import load_file

    from hearthkit.recipes import get_recipe

    torch.set_num_threads(1)  # as the engine's evaluation: on a busy machine more threads are slower
    recipe = get_recipe("change")
    cfg = recipe.ModelConfig.model_validate(json.loads((run_dir / "run.json").read_text())["config"]["model"])
    prep = recipe.load_prep(run_dir / "prep")
    model = recipe.build_model(cfg, prep)
    model.load_state_dict(load_file(str(run_dir / "final" / "model.safetensors")))
    return cfg, prep, model.eval()


def last_checkpoint_model(run_dir: Path):
    """(config, prep, model) with the weights of the run's last checkpoint alone (not averaged): what
    train.average_last adds is the final model's validation F1 minus this one's. BatchNorm buffers are those the
    checkpoint holds (rank 0's), the weights are the same on every rank."""
    import torch.distributed.checkpoint as dcp

    cfg, prep, model = _model(run_dir)
    last = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dcp.load({"train": {"model": sd}}, checkpoint_id=str(last))  # no process group: read in this process
    model.load_state_dict(sd)
    return cfg, prep, model.eval()


def validation_tta(ws: Path, run_dir: Path, ttas=(1, 2, 4, 8), last_only: bool = False) -> dict:
    """Best-threshold F1 on the training cities' validation strips for each test-time augmentation."""
    from hearthkit.data import geo
    from hearthkit.recipes.change.recipe import THRESHOLDS, confusion, f1_of

    mcfg, prep, model = last_checkpoint_model(run_dir) if last_only else _model(run_dir)
    scenes = _scenes(ws, run_dir, "train", prep["bands"])
    out = {}
    for n in ttas:
        cfg = mcfg.model_copy(update={"tta": n})
        counts = np.zeros((len(THRESHOLDS), 4), np.int64)
        for sc in scenes:
            r = geo.train_rows(sc, cfg.val_fraction, cfg.patch)
            if r < sc.shape[0]:
                counts += confusion(model, sc, prep["stats"], cfg, THRESHOLDS, (r, sc.shape[0]))
        f1 = f1_of(counts)
        out[n] = {"validation_f1": float(f1.max()), "threshold": float(THRESHOLDS[int(f1.argmax())])}
        print(f"tta {n}: validation F1 {f1.max():.4f}", flush=True)
    return out


def held_out_threshold_diagnostic(ws: Path, run_dir: Path) -> dict:
    """DIAGNOSTIC ONLY, for a run already scored: held-out F1 at every threshold, pooled and per city, to see how
    much of the validation -> held-out gap the validation-chosen threshold explains. Never used to choose."""
    from hearthkit.recipes.change.recipe import THRESHOLDS, confusion, f1_of

    cfg, prep, model = _model(run_dir)
    total, per = np.zeros((len(THRESHOLDS), 4), np.int64), {}
    for sc in _scenes(ws, run_dir, "test", prep["bands"]):
        c = confusion(model, sc, prep["stats"], cfg, THRESHOLDS)
        total += c
        f = f1_of(c)
        per[sc.name] = {"best_threshold": float(THRESHOLDS[f.argmax()]), "best_f1": float(f.max())}
    f = f1_of(total)
    return {"chosen_threshold": prep["threshold"], "curve": {f"{t:.2f}": float(v) for t, v in zip(THRESHOLDS, f,
                                                                                                   strict=True)},
            "best_threshold": float(THRESHOLDS[f.argmax()]), "best_f1": float(f.max()), "per_city": per}


def unsupervised(ws: Path, run_dir: Path, bands: list[str]) -> dict:
    """CVA + Otsu and IR-MAD + Otsu per held-out city (no labels, no training), scored like the model."""
    from hearthkit.data import geo
    from hearthkit.evaluate.pixel import METRICS
    from hearthkit.recipes.change.unsupervised import scene_change

    res = {}
    for method in ("cva", "irmad"):
        records = []
        for sc in _scenes(ws, run_dir, "test", bands):
            pred, covered = scene_change(sc, method)
            y = sc.read_labels("mask", geo.full_window(sc))[covered] > 0
            p = pred[covered]
            records.append({"scene": sc.name, "tp": int((p & y).sum()), "fp": int((p & ~y).sum()),
                            "fn": int((~p & y).sum())})
        score = {k: METRICS[k] for k in ("f1", "precision", "recall", "iou")}
        res[method] = {"per_city": {r["scene"]: {k: f([r]) for k, f in score.items()} for r in records},
                       "overall": {k: f(records) for k, f in score.items()}}
    return res


def held_out_uncertainty(ws: Path, run_dir: Path) -> dict:
    """On the held-out cities: ECE before/after the validation-fitted calibration, reliability, and whether
    each city's 90 % changed-area interval covers its true changed area."""
    from hearthkit.evaluate.calibration import apply_platt, ece, reliability
    from hearthkit.monitor.figures import row_areas_m2
    from hearthkit.monitor.uncertainty import BLOCK, AreaUncertainty, error_terms
    from hearthkit.recipes.change.recipe import predict_tiles

    cfg, prep, model = _model(run_dir)
    cal = prep.get("calibration")
    rel_sd, abs_sd, _ = error_terms(cal)  # the scene-wide terms `hearth monitor` uses (widest where unmeasured)
    probs, labels, cities = [], [], {}
    for sc in _scenes(ws, run_dir, "test", prep["bands"]):
        acc = AreaUncertainty(int(np.gcd(BLOCK, cfg.tile)))
        true_m2 = 0.0
        for core, raw, covered in predict_tiles(model, sc, prep["stats"], cfg):
            y = sc.read_labels("mask", core) > 0
            areas = row_areas_m2(sc.grid, int(core.row_off), raw.shape[0])[:, None]
            acc.add(apply_platt(raw, cal), covered, areas, int(core.row_off), int(core.col_off))
            true_m2 += float((areas * (y & covered)).sum())
            probs.append(raw[covered])
            labels.append(y[covered])
        lo, hi = acc.interval(0.9, rel_sd=rel_sd, abs_sd=abs_sd)  # as `hearth monitor` reports it
        clo, chi = acc.interval(0.9)  # cells only, without the scene-wide term
        nlo, nhi = acc.interval(0.9, independent=True)
        cities[sc.name] = {"true_ha": true_m2 / 1e4, "expected_ha": acc.expected_m2 / 1e4,
                           "interval_ha": [float(lo) / 1e4, float(hi) / 1e4], "covers": bool(lo <= true_m2 <= hi),
                           "cells_only_interval_ha": [float(clo) / 1e4, float(chi) / 1e4],
                           "cells_only_covers": bool(clo <= true_m2 <= chi),
                           "independent_interval_ha": [float(nlo) / 1e4, float(nhi) / 1e4]}
    p, y = np.concatenate(probs), np.concatenate(labels)
    q = apply_platt(p, cal)
    return {"calibration": cal, "ece_before": ece(p, y), "ece_after": ece(q, y),
            "reliability_before": reliability(p, y), "reliability_after": reliability(q, y),
            "area_interval": cities}


def reliability_png(unc: dict, path: Path) -> None:
    """Reliability diagram of the held-out cities' change probability, before and after calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    for key, label, colour in (("reliability_before", f"raw (ECE {unc['ece_before']:.3f})", "tab:red"),
                               ("reliability_after", f"calibrated (ECE {unc['ece_after']:.3f})", "tab:blue")):
        pts = [(b["mean_p"], b["observed"]) for b in unc[key] if b["n"] >= 100]
        ax.plot(*zip(*pts, strict=True), marker="o", color=colour, label=label)
    ax.set(xlabel="predicted change probability", ylabel="observed share changed", xlim=(0, 1), ylim=(0, 1),
           title="OSCD held-out cities (pixels, 10 bins)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def raw_forward_seconds(ws: Path, city: Path, name: str) -> float:
    """Baseline for monitor throughput: the model's forward passes alone over the same tiles, inputs pre-read."""
    import torch

    from hearthkit.catalog.db import Catalog
    from hearthkit.data import geo
    from hearthkit.monitor.inputs import load_model, open_date
    from hearthkit.workspace import open_workspace

    w = open_workspace(ws)
    lm = load_model(w, Catalog.open(w.db_url), name, "research")
    bands = lm.prep["bands"]
    sc = geo.Scene(city.name, open_date(city / "imgs_1", bands), open_date(city / "imgs_2", bands))
    inputs = []
    for _, padded in geo.tiles_with_margin(*sc.shape, lm.cfg.tile, lm.cfg.margin, multiple=2 ** (lm.cfg.depth - 1)):
        pair = [geo.normalise(*sc.read_stack(d, padded), lm.prep["stats"]) for d in ("before", "after")]
        inputs.append([torch.from_numpy(p)[None] for p in pair])
    t0 = time.perf_counter()
    with torch.inference_mode():
        for a, b in inputs:
            torch.sigmoid(lm.model(a, b))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    found = [p / "shared" / "data" / "oscd" for p in ROOT.parents if (p / "shared" / "data" / "oscd").is_dir()]
    ap.add_argument("--data", type=Path, default=found[0] if found else ROOT.parent / "shared" / "data" / "oscd")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "oscd")
    ap.add_argument("--monitor-city", default="hongkong")
    ap.add_argument("--pos-fraction", type=float, default=0.5)
    ap.add_argument("--pos-weight", type=float, default=3.0)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--name", default="oscd-change", help="Run name (several runs share one workspace).")
    ap.add_argument("--normalise", default="training", choices=["training", "per_date", "match"])
    ap.add_argument("--average-last", type=int, default=1, help="train.average_last: average the last N "
                    "checkpoints (every 50 steps) into the final model; --validation-only then also scores the "
                    "last checkpoint alone.")
    ap.add_argument("--tta", type=int, default=1, choices=[1, 2, 4, 8])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="Any other run-config field, e.g. --set model.width=32 --set model.patch=96.")
    ap.add_argument("--tta-ablation", action="store_true", help="With --validation-only: validation F1 for TTA "
                                                                    "1, 2, 4, 8.")
    ap.add_argument("--threshold-diagnostic", action="store_true", help="For a run already scored: held-out F1 "
                    "at every threshold (a diagnostic of the validation -> held-out gap, never used to choose).")
    ap.add_argument("--skip-monitor", action="store_true", help="Leave out the `hearth monitor` throughput part.")
    ap.add_argument("--validation-only", action="store_true",
                    help="Ablation: train with --no-eval and report the validation strips only (no held-out read).")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: OSCD not found (see ../shared/data/README.md)")
    out = args.out.resolve()
    ws = out / "ws"
    out.mkdir(parents=True, exist_ok=True)
    if not (ws / "hearth.yaml").is_file():
        hearth("init", str(ws), ws=ws)
    print(hearth("data", "import-geotiff", str(args.data), "--layout", "oscd", ws=ws))
    cfg = config(args.steps, out / f"{args.name}.yaml", args.pos_fraction, args.pos_weight, args.jitter, args.name,
                 args.normalise, args.tta, args.average_last, args.set)
    commercial = hearth("plan", str(cfg), "--set", "request.purpose=commercial", ws=ws)
    print(commercial)
    run_dir = ws / "runs" / args.name
    timing = out / f"train_time-{args.name}.json"
    t0 = time.perf_counter()
    model_dir = ws / "models" / args.name
    ev_file = model_dir / "evaluation.json"  # --no-eval publishes one with no rows
    evaluated = ev_file.is_file() and json.loads(ev_file.read_text())["rows"]
    if args.threshold_diagnostic:
        if not evaluated:
            raise SystemExit(f"{args.name}: not scored on the held-out cities yet; the diagnostic comes after that")
        diag = held_out_threshold_diagnostic(ws, run_dir)
        (out / f"threshold-diagnostic-{args.name}.json").write_text(json.dumps(diag, indent=1))
        print(json.dumps(diag, indent=1))
        return
    if evaluated and not args.validation_only:
        train_out = "already evaluated: re-scoring from its evaluation.json (the held-out cities are scored once)"
    elif (model_dir / "model.safetensors").is_file() and not args.validation_only:
        train_out = hearth("eval", args.name, ws=ws)  # chosen on validation, trained with --no-eval: score it now
    else:
        train_out = hearth("train", str(cfg), *(["--no-eval"] if args.validation_only else []), ws=ws)
    print(train_out)
    if args.validation_only:  # --no-eval fits nothing: the same best-threshold F1 as `calibrate`, computed here
        wall = time.perf_counter() - t0
        res = {"name": args.name, "steps": args.steps, "normalise": args.normalise, "tta": args.tta,
               "jitter": args.jitter, "average_last": args.average_last, "set": args.set,
               "train_wall_s": wall, "log": [json.loads(x) for x in (run_dir / "metrics.jsonl").open()][-1]}
        res["validation"] = validation_tta(ws, run_dir, (1, 2, 4, 8) if args.tta_ablation else (args.tta,))
        if args.average_last > 1:
            res["validation_last_checkpoint_alone"] = validation_tta(ws, run_dir, (args.tta,), last_only=True)
        (out / f"validation-{args.name}.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
        return
    if not timing.is_file():
        timing.write_text(json.dumps({"train_and_eval_s": time.perf_counter() - t0}))
    wall = json.loads(timing.read_text())["train_and_eval_s"]
    ev = json.loads((model_dir / "evaluation.json").read_text())
    model = {r["group"]: {k: r[k] for k in ("f1", "precision", "recall", "iou")} for r in ev["rows"]}
    base = baseline(ws, run_dir)
    threshold = json.loads((run_dir / "prep" / "threshold.json").read_text())
    prep = json.loads((run_dir / "prep" / "prep.json").read_text())  # the bands live in prep, not threshold.json
    unsup = unsupervised(ws, run_dir, prep["bands"])
    uncertainty = held_out_uncertainty(ws, run_dir)
    log = [json.loads(x) for x in (run_dir / "metrics.jsonl").open()]
    result = {"name": args.name, "test_cities": TEST_CITIES, "steps": args.steps, "train_and_eval_wall_s": wall,
              "training_log_s": {"first_step": log[0]["step"], "last_step": log[-1]["step"],
                                 "seconds_between": log[-1]["time"] - log[0]["time"]},
              "threshold": {k: v for k, v in threshold.items() if k != "calibration"},
              "validation_calibration": threshold.get("calibration"), "model": model, "baseline": base,
              "unsupervised": unsup, "held_out_uncertainty": uncertainty, "gaps": ev.get("gaps")}
    (out / f"result-{args.name}.json").write_text(json.dumps(result, indent=1))
    reliability_png(uncertainty, out / f"reliability-{args.name}.png")
    if args.skip_monitor:
        print(json.dumps(result, indent=1))
        return
    # monitor on one held-out city: maps for docs/, and throughput
    city = args.data / args.monitor_city
    mon = out / "monitor"
    t1 = time.perf_counter()
    hearth("monitor", args.name, "--before", str(city / "imgs_1"), "--after", str(city / "imgs_2"),
           "--territory", str(city / f"{args.monitor_city}.geojson"), "--out", str(mon), ws=ws)
    mon_s = time.perf_counter() - t1
    summary = json.loads((mon / "monitor.json").read_text())
    raw_s = raw_forward_seconds(ws, city, args.name)
    result.update({"f1_ratio_vs_baseline": model["all"]["f1"] / max(base["overall"]["f1"], 1e-9),
              "monitor": {"city": args.monitor_city, "pixels": summary["pixels"],
                          "inference_s": summary["inference_s"],
                          "pixels_per_s": summary["pixels"] / summary["inference_s"], "command_wall_s": mon_s,
                          "raw_forward_s": raw_s, "raw_forward_pixels_per_s": summary["pixels"] / raw_s,
                          "monitor_vs_raw_ratio": summary["inference_s"] / raw_s}})
    (out / f"result-{args.name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

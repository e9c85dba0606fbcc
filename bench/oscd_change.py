"""OSCD change benchmark: train `change` on 10 cities through the governed pipeline, score 4 held-out cities.

Prints per-city and overall F1 / precision / recall / IoU of the change class, next to a trivial baseline in
the same run (|after - before| band-difference magnitude, normalised with training statistics, threshold
chosen on the training cities), the ratio, training wall time, and `hearth monitor` throughput on one city.

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


def config(steps: int, path: Path, pos_fraction: float, pos_weight: float, jitter: float) -> Path:
    import yaml

    cfg = {"name": "oscd-change", "recipe": "change",
           "request": {"purpose": "research", "requester": "bench", "collections": ["oscd"]},  # judged today
           "split": {"by": "scene", "test_values": TEST_CITIES},
           "model": {"width": 16, "depth": 4, "fusion": "diff", "patch": 64, "pos_fraction": pos_fraction,
                     "pos_weight": pos_weight, "jitter": jitter,
                     "val_fraction": 0.2, "tile": 256, "margin": 16, "patches_per_epoch": 4096},
           "train": {"steps": steps, "batch_size": 8, "lr": 0.003, "warmup": 30, "checkpoint_every": 100,
                     "log_every": 25},
           "launch": {"nproc": 2, "threads_per_worker": 1}}
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


def raw_forward_seconds(ws: Path, city: Path) -> float:
    """Baseline for monitor throughput: the model's forward passes alone over the same tiles, inputs pre-read."""
    import torch

    from hearthkit.catalog.db import Catalog
    from hearthkit.data import geo
    from hearthkit.monitor.inputs import load_model, open_date
    from hearthkit.workspace import open_workspace

    w = open_workspace(ws)
    lm = load_model(w, Catalog.open(w.db_url), "oscd-change", "research")
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
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: OSCD not found (see ../shared/data/README.md)")
    out = args.out.resolve()
    ws = out / "ws"
    out.mkdir(parents=True, exist_ok=True)
    if not (ws / "hearth.yaml").is_file():
        hearth("init", str(ws), ws=ws)
    print(hearth("data", "import-geotiff", str(args.data), "--layout", "oscd", ws=ws))
    cfg = config(args.steps, out / "oscd-change.yaml", args.pos_fraction, args.pos_weight, args.jitter)
    commercial = hearth("plan", str(cfg), "--set", "request.purpose=commercial", ws=ws)
    print(commercial)
    run_dir = ws / "runs" / "oscd-change"
    timing = out / "train_time.json"
    t0 = time.perf_counter()
    train_out = hearth("train", str(cfg), ws=ws)
    print(train_out)
    if not timing.is_file():
        timing.write_text(json.dumps({"train_and_eval_s": time.perf_counter() - t0}))
    wall = json.loads(timing.read_text())["train_and_eval_s"]
    ev = json.loads((ws / "models" / "oscd-change" / "evaluation.json").read_text())
    model = {r["group"]: {k: r[k] for k in ("f1", "precision", "recall", "iou")} for r in ev["rows"]}
    base = baseline(ws, run_dir)
    threshold = json.loads((run_dir / "prep" / "threshold.json").read_text())
    # monitor on one held-out city: maps for docs/, and throughput
    city = args.data / args.monitor_city
    mon = out / "monitor"
    t1 = time.perf_counter()
    hearth("monitor", "oscd-change", "--before", str(city / "imgs_1"), "--after", str(city / "imgs_2"),
           "--territory", str(city / f"{args.monitor_city}.geojson"), "--out", str(mon), ws=ws)
    mon_s = time.perf_counter() - t1
    summary = json.loads((mon / "monitor.json").read_text())
    raw_s = raw_forward_seconds(ws, city)
    result = {"test_cities": TEST_CITIES, "steps": args.steps, "train_and_eval_wall_s": wall,
              "threshold": threshold, "model": model, "baseline": base,
              "f1_ratio_vs_baseline": model["all"]["f1"] / max(base["overall"]["f1"], 1e-9),
              "monitor": {"city": args.monitor_city, "pixels": summary["pixels"],
                          "inference_s": summary["inference_s"],
                          "pixels_per_s": summary["pixels"] / summary["inference_s"], "command_wall_s": mon_s,
                          "raw_forward_s": raw_s, "raw_forward_pixels_per_s": summary["pixels"] / raw_s,
                          "monitor_vs_raw_ratio": summary["inference_s"] / raw_s}}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

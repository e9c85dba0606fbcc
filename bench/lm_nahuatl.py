"""Bits per character of the lm recipe on the Nahuatl dev text after training on its train text; tokens/s.

Trains through the engine (plan -> torchrun -> governed reader) on collection americasnlp-nah (imported by
bench/mt_americasnlp.py's import step, or here), dev held out, and scores it next to a same-run baseline: a
character unigram model fitted on the same training text (what any model must beat).

Example: .venv/bin/python bench/lm_nahuatl.py --minutes 5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mt_americasnlp import DATA, import_pair  # noqa: E402


def unigram_bpc(train: list[str], dev: list[str]) -> float:
    """Bits per character of DEV under add-one character unigram counts of TRAIN (line ends counted)."""
    counts = Counter("".join(t + "\n" for t in train))
    total, vocab = sum(counts.values()), len(counts) + 1
    bits = sum(-math.log2((counts.get(c, 0) + 1) / (total + vocab)) for t in dev for c in t + "\n")
    return bits / sum(len(t) + 1 for t in dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/hearth-bench-americasnlp"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=Path("bench/results/lm_nahuatl.jsonl"))
    args = ap.parse_args()

    from hearthkit.catalog.db import Catalog
    from hearthkit.engine.config import RunConfig
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.launch.local import run_torchrun, torchrun_command
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import find_workspace, init_workspace

    ws = find_workspace(args.workspace) if (args.workspace / "hearth.yaml").is_file() else \
        init_workspace(args.workspace)
    catalog = Catalog.open(ws.db_url)
    import_pair(ws, catalog, args.data, "nah")
    cfg = RunConfig.model_validate({
        "name": f"nah-lm{args.tag}", "recipe": "lm",
        "request": {"purpose": "research", "requester": "hearthkit-bench", "collections": ["americasnlp-nah"]},
        "split": {"by": "split", "test_values": ["dev"]},
        "model": {"units": "char", "lang": "nah", "block_size": args.block, "n_layer": args.layers, "n_head": 4,
                  "n_embd": args.width, "dropout": 0.1, "eval_batch": 32, "group_by": ["lang"]},
        "train": {"steps": args.steps, "batch_size": args.batch, "lr": 3e-3, "warmup": min(100, args.steps // 10),
                  "checkpoint_every": args.steps, "log_every": 25},
        "launch": {"nproc": 1, "threads_per_worker": args.threads}})
    run_dir, manifest, _ = plan_run(ws, catalog, cfg)
    t0 = time.perf_counter()
    rc = run_torchrun(torchrun_command(run_dir, cfg.launch), cfg.launch,
                      lambda line: print(f"  {line}", flush=True) if "step" in line or "rror" in line else None)
    t_train = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"training failed (exit {rc})")
    ev = evaluate_run(run_dir, by=["lang"])
    overall = next(r for r in ev["rows"] if r["by"] == "overall")
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tok_s = sum(m["tokens_per_s"] for m in metrics) / len(metrics)
    train_txt = (args.data / "nahuatl-spanish" / "train.nah").read_text(encoding="utf-8").splitlines()
    dev_txt = [r for r in (args.data / "nahuatl-spanish" / "dev.nah").read_text(encoding="utf-8").splitlines()]
    base = unigram_bpc([t.strip() for t in train_txt if t.strip()], [t.strip() for t in dev_txt if t.strip()])
    row = {"metric": "nah dev bpc", "bpc": overall["bpc"], "ppl_per_char_token": overall["ppl"], "n": overall["n"],
           "baseline_unigram_bpc": base, "ratio": overall["bpc"] / base, "tokens_per_s": round(tok_s, 1),
           "train_s": round(t_train, 1), "steps": args.steps, "batch": args.batch, "block": args.block,
           "layers": args.layers, "width": args.width, "date": date.today().isoformat()}
    print("RESULT " + json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

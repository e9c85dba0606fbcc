"""Spanish->X dev chrF of the mt recipe on AmericasNLP 2021, next to the official baseline's dev output.

Both are scored by the same code (hearthkit.evaluate.metrics, sacrebleu chrF) in the same run. Each pair is
imported into its own collection (research consent, bc:research, citation), trained through the engine
(plan -> torchrun -> governed reader) with dev held out, decoded with beam search, and scored.

Example: .venv/bin/python bench/mt_americasnlp.py --pairs oto,bzd --steps 600
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

DATA = Path("/work/shared/data/americasnlp2021")  # the shared corpora folder (see its README)
FOLDERS = {"nah": "nahuatl-spanish", "oto": "hñähñu-spanish", "gn": "guarani-spanish", "bzd": "bribri-spanish",
           "cni": "ashaninka-spanish", "aym": "aymara-spanish"}
BASELINE = {"nah": 18.2, "oto": 6.0, "gn": 22.0, "bzd": 7.7, "cni": 10.4, "aym": 18.8}  # issue 5, for reference
CITATION = ("Mager et al., Findings of the AmericasNLP 2021 Shared Task on Open Machine Translation for Indigenous "
            "Languages of the Americas (2021); see the pair's SOURCE_README.md for the corpus paper")


def import_pair(ws, catalog, data: Path, lang: str) -> str:
    """Import one pair folder into collection americasnlp-LANG (idempotent); return the collection name."""
    from hearthkit.ingest.archive import ArchiveInfo
    from hearthkit.ingest.parallel_text import import_parallel
    from hearthkit.store.cas import ContentStore

    name = f"americasnlp-{lang}"
    info = ArchiveInfo.model_validate({
        "collection": {"name": name, "community": f"{lang} speaking communities (via AmericasNLP 2021 corpora)",
                       "licence": "authors' terms; research only (no licence file)", "citation": CITATION},
        "collective_consent": [{"subject": name, "given_by": "published by the corpus authors for research",
                                "given_at": date(2021, 3, 1), "purposes": ["research"],
                                "evidence": "github.com/AmericasNLP/americasnlp2021 data/"}]})
    rep = import_parallel(catalog, ContentStore(ws.store_dir), data / FOLDERS[lang], "es", lang, info,
                          corpus=lang, collection_labels=["bc:research"])
    print(f"import {name}: {rep.imported} new, {rep.unchanged} present, problems: {rep.problems}", flush=True)
    return name


def publish_parent(ws, catalog, name: str) -> None:
    """Publish the finished bench run NAME as a model (once), so that a run may continue from it."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Model
    from hearthkit.launch.pipeline import finish_run

    with catalog.session() as s:
        if s.scalar(select(Model).where(Model.name == name)) is not None:
            return
    if not (ws.run_dir(name) / "final" / "model.safetensors").is_file():
        raise SystemExit(f"--init-from {name}: no finished run of that name in {ws.root}")
    finish_run(ws, catalog, ws.run_dir(name), evaluate=False)  # the bench scores dev itself
    print(f"published run {name} as a model to continue from", flush=True)


def checkpoint_interval(steps: int, average: int) -> int:
    """Steps between checkpoints, so that the AVERAGE averaged ones come from the last 20% of STEPS."""
    return max(1, steps // (5 * average))


def run_config(name: str, langs: list[str], args) -> dict:
    """The run config of one (bilingual or multilingual) model."""
    model = {"pairs": [f"es-{lang}" for lang in langs], "vocab_size": args.vocab, "d_model": args.d_model,
             "n_heads": 4, "enc_layers": args.layers, "dec_layers": args.layers, "d_ff": 4 * args.d_model,
             "dropout": args.dropout, "subword_alpha": args.subword_alpha, "label_smoothing": 0.1,
             "max_tokens": args.max_tokens, "long_pairs": args.long_pairs, "beam": args.beam,
             "length_penalty": 1.0, "eval_batch": 64, "group_by": ["direction"],
             "sample_temperature": args.temperature if len(langs) > 1 else 1.0}
    every = checkpoint_interval(args.steps, args.average)
    return {"name": name, "recipe": "mt", "init_from": args.init_from,
            "request": {"purpose": "research", "requester": "hearthkit-bench",
                        "collections": [f"americasnlp-{lang}" for lang in langs]},
            "split": {"by": "split", "test_values": ["dev"]}, "model": model,
            "train": {"steps": args.steps, "batch_size": args.batch, "lr": args.lr,
                      "warmup": min(args.warmup, args.steps // 8),
                      "checkpoint_every": every, "keep_last": args.average, "average_last": args.average,
                      "log_every": 25,
                      "weight_decay": 0.01, "bucket": args.bucket},
            "launch": {"nproc": 1, "threads_per_worker": args.threads}}


def train_and_score(ws, catalog, cfg_dict: dict) -> tuple[list[dict], float, float]:
    """Train CFG through the engine, then decode dev: (per-item records, train seconds, decode seconds)."""
    from hearthkit.engine.config import RunConfig
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.launch.local import run_torchrun, torchrun_command
    from hearthkit.launch.plan import plan_run

    cfg = RunConfig.model_validate(cfg_dict)
    run_dir, manifest, resumed = plan_run(ws, catalog, cfg)
    print(f"{cfg.name}: {len(manifest.included)} items permitted, {len(manifest.excluded)} excluded, "
          f"{'resuming' if resumed else 'new run'}", flush=True)
    t0 = time.perf_counter()
    rc = run_torchrun(torchrun_command(run_dir, cfg.launch), cfg.launch,
                      lambda line: print(f"  {line}", flush=True) if "step" in line or "error" in line.lower()
                      or "averaged" in line else None)
    t_train = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{cfg.name}: training failed (exit {rc})")
    t0 = time.perf_counter()
    ev = evaluate_run(run_dir, by=["direction"])
    return ev["records"], t_train, time.perf_counter() - t0


def baseline_records(data: Path, lang: str, official_refs: bool) -> list[dict]:
    """The baseline's dev hypotheses with its own .ref file (which has <<unk>> and re-tokenisation in places),
    or with the official dev.LANG references our model is scored against (OFFICIAL_REFS)."""
    from hearthkit.ingest.parallel_text import normalise_line

    base = data / "baseline_dev_outputs" / f"{lang}_es"
    hyp = (base / f"{lang}_es.hyp").read_text(encoding="utf-8").splitlines()
    ref_file = data / FOLDERS[lang] / f"dev.{lang}" if official_refs else base / f"{lang}_es.ref"
    ref = ref_file.read_text(encoding="utf-8").splitlines()
    norm = normalise_line if official_refs else (lambda x: x)
    return [{"reference": norm(r), "hypothesis": norm(h) if official_refs else h}
            for r, h in zip(ref, hyp, strict=True)]


def line_of(record: dict) -> int:
    """The dev line number of one of our records (its pair id is CORPUS/dev/LINE)."""
    return int(record["pair"].rsplit("/", 1)[1])


def paired_test(ours: list[dict], base: list[dict], samples: int = 1000) -> dict:
    """sacrebleu's paired bootstrap of our chrF against the baseline's on the dev lines both translated.

    Ours are keyed by their pair id (CORPUS/dev/LINE); the baseline's outputs are the dev file's lines in order.
    """
    from sacrebleu.metrics import CHRF
    from sacrebleu.significance import PairedTest

    by_line = {line_of(r): r for r in ours}
    lines = sorted(i for i in by_line if i <= len(base))
    refs = [base[i - 1]["reference"] for i in lines]
    if [by_line[i]["reference"] for i in lines] != refs:
        raise SystemExit("paired test: our references and dev.LANG disagree; the lines are not aligned")
    systems = [("baseline", [base[i - 1]["hypothesis"] for i in lines]),
               ("ours", [by_line[i]["hypothesis"] for i in lines])]
    _, scores = PairedTest(systems, {"chrF": CHRF()}, [refs], test_type="bs", n_samples=samples)()
    base_res, res = next(v for k, v in scores.items() if k != "System")  # keyed by the metric's name, e.g. chrF2
    return {"paired_n": len(lines), "paired_p": float(res.p_value), "chrf_ci95": round(float(res.ci), 2),
            "baseline_chrf_ci95": round(float(base_res.ci), 2)}


def calibrate(cfg_dict: dict, seconds: float, vocab: int) -> int:
    """Steps that fit SECONDS of training, from timing a few steps of the same model and batch shape here."""
    import torch
    import torch.nn.functional as F

    from hearthkit.recipes.mt.model import MTConfig, Seq2Seq

    torch.set_num_threads(cfg_dict["launch"]["threads_per_worker"])
    mcfg = MTConfig.model_validate(cfg_dict["model"])
    model = Seq2Seq(mcfg, vocab)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    B = cfg_dict["train"]["batch_size"]
    src, tgt = torch.randint(4, vocab, (B, 40)), torch.randint(4, vocab, (B, 40))  # ~ typical padded lengths
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(src, tgt).flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    per_step = sorted(times[1:])[1]
    return max(20, int(seconds / per_step))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/hearth-bench-americasnlp"))
    ap.add_argument("--pairs", default="oto,bzd,cni,nah,aym,gn")
    ap.add_argument("--multilingual", action="store_true", help="Also one model for all the pairs together.")
    ap.add_argument("--only-multilingual", action="store_true")
    ap.add_argument("--steps", type=int, default=0, help="Training steps (0: fit --minutes by a timing here).")
    ap.add_argument("--minutes", type=float, default=8.0, help="Training time budget per model (with --steps 0).")
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--long-pairs", choices=["drop", "cut"], default="drop",
                    help="Training pairs longer than --max-tokens (model.long_pairs).")
    ap.add_argument("--subword-alpha", type=float, default=0.0,
                    help="model.subword_alpha: sample each training pair's segmentation afresh (0: off).")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--average", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=5.0, help="Multilingual sampling temperature.")
    ap.add_argument("--bucket", type=int, default=20, help="train.bucket: length-bucketed batches (0: off).")
    ap.add_argument("--warmup", type=int, default=200, help="Warm-up steps (at most an eighth of the steps).")
    ap.add_argument("--init-from", default=None, metavar="RUN",
                    help="Continue from this finished run of the workspace (published as a model first; its "
                         "vocabulary and shape are kept): a fresh schedule from --lr, a warm restart.")
    ap.add_argument("--tag", default="", help="Suffix of run names (a new tag trains afresh).")
    ap.add_argument("--out", type=Path, default=Path("bench/results/mt_americasnlp.jsonl"))
    args = ap.parse_args()

    from hearthkit.catalog.db import Catalog
    from hearthkit.evaluate.metrics import score, signatures
    from hearthkit.workspace import find_workspace, init_workspace

    ws = find_workspace(args.workspace) if (args.workspace / "hearth.yaml").is_file() else \
        init_workspace(args.workspace)
    catalog = Catalog.open(ws.db_url)
    langs = args.pairs.split(",")
    for lang in langs:
        import_pair(ws, catalog, args.data, lang)
    if args.init_from:
        publish_parent(ws, catalog, args.init_from)
    print(f"chrF signature (sacrebleu): {signatures(('chrf',))['chrf']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jobs = [] if args.only_multilingual else [(f"es-{lang}{args.tag}", [lang]) for lang in langs]
    if args.multilingual or args.only_multilingual:
        jobs.append((f"es-multi{args.tag}", langs))
    for name, mine in jobs:
        steps = args.steps
        if not steps:
            probe = run_config(name, mine, args)
            steps = calibrate(probe, 60 * args.minutes, args.vocab)
            print(f"{name}: {steps} steps fit {args.minutes} min at the speed measured now", flush=True)
            every = checkpoint_interval(steps, args.average)
            steps = max(every, steps - steps % every)  # the last checkpoint is not a near-copy of the one before
        args_steps, args.steps = args.steps, steps
        cfg = run_config(name, mine, args)
        args.steps = args_steps
        records, t_train, t_dec = train_and_score(ws, catalog, cfg)
        for lang in mine:
            ours = [r for r in records if r["direction"] == f"es-{lang}"]
            base = baseline_records(args.data, lang, official_refs=False)
            base_off = baseline_records(args.data, lang, official_refs=True)
            row = {"model": name, "kind": "multilingual" if len(mine) > 1 else "bilingual", "pair": f"es-{lang}",
                   "chrf": score(ours, "chrf"), "bleu": score(ours, "bleu"), "n": len(ours),
                   "baseline_chrf": score(base, "chrf"), "baseline_bleu": score(base, "bleu"), "baseline_n": len(base),
                   "baseline_chrf_official_refs": score(base_off, "chrf"),
                   "train_s": round(t_train, 1), "decode_s": round(t_dec, 1),
                   "steps": steps, "batch": args.batch, "d_model": args.d_model, "layers": args.layers,
                   "vocab": args.vocab, "beam": args.beam, "max_tokens": args.max_tokens,
                   "long_pairs": args.long_pairs, "lr": args.lr, "init_from": args.init_from,
                   "dropout": args.dropout, "subword_alpha": args.subword_alpha,
                   "date": date.today().isoformat()}
            row["ratio"] = row["chrf"] / row["baseline_chrf_official_refs"]  # same references as ours
            row.update(paired_test(ours, base_off))
            (ws.run_dir(name) / f"dev.{lang}.hyp").write_text(
                "".join(r["hypothesis"] + "\n" for r in sorted(ours, key=lambda r: r["pair"])), encoding="utf-8")
            print("RESULT " + json.dumps(row), flush=True)
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

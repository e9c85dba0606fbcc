"""Training throughput of the asr encoders: audio-seconds trained per wall-second (CPU, or GPU when present).

The baseline is the walking skeleton's BiGRU-CTC (demo size), run in the same invocation; each encoder trains
on the same synthetic batches of 3-second utterances (Mboshi's mean duration), so the ratio compares models,
not data loading. One command on a GPU machine: `python bench/asr_throughput.py --device cuda`.

`--data-path [FOLDER]` measures the data path instead, on real Mboshi audio (default ../shared/data/mboshi/train)
imported sealed (encrypted) into a scratch workspace: the same model (mboshi-asr.yaml's conformer, its augmentation
and length buckets) trained by the old loop, which read, decrypted and featurised each batch inside the step, and by
the engine's DataLoader path (engine/dataloading.py) with `--workers` processes, alternating in chunks of steps so
both see the same machine load. Both start with cold caches, as a run does. Prints one JSON line.
Example: nice python bench/asr_throughput.py --data-path --items 300 --steps 60 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from hearthkit.recipes.asr.model import ASRConfig, build

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "bigru-demo (baseline)": dict(arch="bigru", conv_channels=160, hidden=160, layers=2),
    "conformer-bench (2.4M)": dict(arch="conformer", d_model=144, conv_channels=128, layers=4, conv_kernel=15),
    "conformer-small (10M)": dict(arch="conformer", d_model=176, conv_channels=176, layers=12, conv_kernel=15),
}


def measure(spec: dict, device: str, batch: int, seconds: float, steps: int) -> dict:
    """Audio-seconds per wall-second over STEPS optimizer steps (after one warm-up step)."""
    torch.manual_seed(0)
    model = build(ASRConfig(**spec), 60).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    frames = int(seconds * 100)
    x = torch.randn(batch, frames, 80, device=device)
    lens = torch.full((batch,), frames, device=device)
    tgt = torch.randint(1, 61, (batch * int(seconds * 10),), device=device)
    tlen = torch.full((batch,), int(seconds * 10), device=device)

    def step():
        logp, out = model(x, lens)
        loss = F.ctc_loss(logp.transpose(0, 1), tgt, out, tlen, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    audio = steps * batch * seconds
    # CPU seconds (all threads) tell the model's cost apart from how busy the shared machine is.
    return {"params_M": sum(p.numel() for p in model.parameters()) / 1e6, "audio_s_per_s": audio / dt,
            "audio_s_per_cpu_s": audio / cpu}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process PID so far (a data-loader worker's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def synthesize(folder: Path, n: int) -> None:
    """N Mboshi-like utterances (1-8 s of voiced tones in noise, 16 kHz WAV) with random transcripts, named like
    the corpus (speaker first), for a machine without ../shared/data (e.g. the GPU machine of bench/gpu_check.sh)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for k in range(n):
        seconds = float(np.clip(rng.lognormal(1.0, 0.5), 1.0, 8.0))
        t = np.arange(int(seconds * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t * (1 + 0.1 * np.sin(3 * t))) \
            + 0.05 * rng.standard_normal(t.size)
        # the corpus's name layout (speaker, recording time, device, elicitation source), as the archive expects
        speaker = ("abiayi", "kouarata", "martial")[k % 3]
        stem = f"{speaker}_2015-09-08-11-{k // 60 % 60:02d}-{k % 60:02d}_synthetic_mdw_elicit_Dico{k}_1"
        sf.write(folder / f"{stem}.wav", wav.astype(np.float32), 16000, subtype="PCM_16")
        words = ["".join(rng.choice(list("abdeiklmnosty"), rng.integers(2, 8))) for _ in range(int(seconds * 2))]
        (folder / f"{stem}.mb.cleaned").write_text(" ".join(words) + "\n", encoding="utf-8")


def data_path(a: argparse.Namespace) -> dict:
    """Audio-seconds per second of the old in-step data path and the DataLoader path, same model, same run."""
    from sqlalchemy import select

    from hearthkit.catalog.db import Catalog
    from hearthkit.catalog.models import Item
    from hearthkit.data.loader import GovernedReader
    from hearthkit.engine.config import DataConfig
    from hearthkit.engine.dataloading import StepBatches, loader
    from hearthkit.engine.sampler import StepSampler
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.recipes import get_recipe
    from hearthkit.recipes.asr.tokenizer import CharTokenizer
    from hearthkit.store.vault import Store
    from hearthkit.workspace import init_workspace

    run_cfg = yaml.safe_load((ROOT / "configs/mboshi-asr.yaml").read_text())
    mcfg = ASRConfig(**{k: v for k, v in run_cfg["model"].items() if k != "decode"})
    batch, bucket = run_cfg["train"]["batch_size"], run_cfg["train"]["bucket"]
    recipe = get_recipe("asr")
    folder = Path(a.data_path or ".")
    device = torch.device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "audio"  # the first ITEMS recordings with their transcripts, copied (the importer
        sub.mkdir()               # refuses links that point outside the folder it imports)
        if a.synthetic:
            synthesize(sub, a.items)
        else:
            for stem in sorted(p.name[:-5] for p in folder.glob("*.flac"))[: a.items]:
                for f in folder.glob(f"{stem}.*"):
                    shutil.copyfile(f, sub / f.name)
        ws = init_workspace(Path(tmp) / "ws")
        info = yaml.safe_load((ROOT / "configs/archives/mboshi.yaml").read_text())
        info["collection"]["restricted"] = True  # sealed: every read decrypts in memory and verifies its hash
        (Path(tmp) / "info.yaml").write_text(yaml.safe_dump(info, allow_unicode=True))
        catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)
        report = import_speech_folder(catalog, store, sub, info_path=Path(tmp) / "info.yaml")
        if not report.imported or not report.sealed:
            raise SystemExit(f"import failed: {report.imported} imported, problems: {report.problems[:3]}")
        with catalog.session() as s:
            entries = [{"item_id": i.id, "content_hash": i.content_hash, "duration_s": i.duration_s, "text": i.text,
                        "meta": i.meta} for i in s.scalars(select(Item).order_by(Item.external_id))]
        catalog.close()
        tok = CharTokenizer.fit([GovernedReader(store, entries).text(e) for e in entries])
        prep = {"tokenizer": tok}

        def setup(name: str):
            data = recipe.dataset(mcfg, prep, entries, GovernedReader(store, entries, Path(tmp) / f"{name}.jsonl"),
                                  train=True)
            sampler = StepSampler(len(data), batch, 0, 1, 0, data.lengths(), bucket)
            torch.manual_seed(0)
            model = recipe.build_model(mcfg, prep).to(device)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            if name == "old":  # the loop before: the step collates its items itself, in the training process
                feed = (recipe.collate([data[i] for i in sampler.indices(k)]) for k in range(a.steps))
                workers = []
            else:
                it = iter(loader(StepBatches(data, sampler, recipe.collate, 0, 0), 0, a.steps,
                                 DataConfig(workers=a.workers, prefetch=a.prefetch), device, a.workers))
                feed, workers = it, [w.pid for w in getattr(it, "_workers", [])]
            return {"model": model, "opt": opt, "feed": feed, "workers": workers, "wall": 0.0, "cpu": 0.0,
                    "audio": 0.0, "samples": 0.0, "steps": 0}

        def run(p: dict, n: int) -> None:
            t0, c0 = time.perf_counter(), time.process_time()
            w0 = sum(_cpu_s(w) for w in p["workers"])
            for _ in range(n):
                b = {k: v.to(device, non_blocking=True) for k, v in next(p["feed"]).items()}
                loss, stats = recipe.loss(p["model"], b)
                p["opt"].zero_grad()
                loss.backward()
                p["opt"].step()
                p["audio"] += stats["audio_seconds"]
                p["samples"] += stats["samples"]
                p["steps"] += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
            p["wall"] += time.perf_counter() - t0
            p["cpu"] += time.process_time() - c0 + sum(_cpu_s(w) for w in p["workers"]) - w0

        paths = {"old": setup("old"), "new": setup("new")}
        walls: dict[str, list[float]] = {"old": [], "new": []}
        for c in range(0, a.steps, a.chunk):  # alternate, order flipped every chunk: both see the same load
            n = min(a.chunk, a.steps - c)
            for name in (("old", "new") if (c // a.chunk) % 2 == 0 else ("new", "old")):
                before = paths[name]["wall"]
                run(paths[name], n)
                walls[name].append(paths[name]["wall"] - before)
    # Both paths train on the same batches (same sampler), so a chunk's wall times compare like for like.
    per_chunk = [old / new for old, new in zip(walls["old"], walls["new"], strict=True)]
    res = {name: {"samples_per_s": round(p["samples"] / p["wall"], 2),
                  "audio_s_per_s": round(p["audio"] / p["wall"], 2),
                  "audio_s_per_cpu_s": round(p["audio"] / p["cpu"], 2), "wall_s": round(p["wall"], 1),
                  "cpu_s": round(p["cpu"], 1), "audio_s": round(p["audio"], 1)} for name, p in paths.items()}
    return {"metric": "asr data path: DataLoader vs in-step reading (same model, same run)", "device": a.device,
            "data": "synthetic" if a.synthetic else str(folder), "items": len(entries),
            "steps": a.steps, "batch": batch, "bucket": bucket, "workers": a.workers, "prefetch": a.prefetch,
            "threads": a.threads, **res,
            "ratio_new_vs_old": round(res["new"]["audio_s_per_s"] / res["old"]["audio_s_per_s"], 3),
            "ratio_median_of_chunks": round(statistics.median(per_chunk), 3),
            "chunk_ratios": [round(r, 3) for r in per_chunk],
            "load_average": open("/proc/loadavg").read().split()[0]}


def compiled_vs_eager(a: argparse.Namespace) -> dict:
    """Training audio-s/s of mboshi-asr.yaml's conformer compiled (inductor; length dims marked dynamic and compiled
    by engine/compiling.py's compile_model, as the engine does) and eager, on synthetic batches of varying length
    (8 x 1-6 s), steps alternating in one process; graphs compiled during warm-up and after it."""
    from torch._dynamo.utils import counters

    from hearthkit.engine.compiling import compile_model
    from hearthkit.engine.dataloading import to_device
    from hearthkit.recipes import get_recipe

    run_cfg = yaml.safe_load((ROOT / "configs/mboshi-asr.yaml").read_text())
    mcfg = ASRConfig(**{k: v for k, v in run_cfg["model"].items() if k != "decode"})
    if a.tiny:  # compiles in minutes on a busy CPU: the graph count, not the speed, is what it shows
        mcfg = mcfg.model_copy(update=dict(d_model=16, heads=2, conv_channels=8, layers=1, conv_kernel=3))
    recipe = get_recipe("asr")
    device = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(a.steps + a.warmup):
        frames = torch.randint(100, 600, (8,), generator=g).tolist()
        batches.append(recipe.collate([{"feats": torch.randn(n, mcfg.n_mels, generator=g),
                                        "tokens": torch.randint(1, 40, (n // 10,), generator=g)} for n in frames]))
    sides = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build(mcfg, 40).to(device)
        if name == "compiled":  # --plain-compile: torch.compile's defaults (before compile_model): the recompiles
            model = torch.compile(model) if a.plain_compile else compile_model(model, dynamic_lengths=True)
        sides[name] = {"model": model,
                       "opt": torch.optim.AdamW(model.parameters(), lr=1e-3), "wall": 0.0, "audio": 0.0}

    def step(side: dict, b: dict) -> float:
        b = to_device(b, device, compiled=side["model"] is not sides["eager"]["model"])
        loss, stats = recipe.loss(side["model"], b)
        side["opt"].zero_grad()
        loss.backward()
        side["opt"].step()
        return stats["audio_seconds"]

    t0 = time.perf_counter()
    for b in batches[: a.warmup]:  # compiles (one dynamic graph) and warms both
        for side in sides.values():
            step(side, b)
    warm = time.perf_counter() - t0
    graphs_warm = counters["stats"]["unique_graphs"]
    for k, b in enumerate(batches[a.warmup:]):
        for name in (("eager", "compiled") if k % 2 == 0 else ("compiled", "eager")):
            t = time.perf_counter()
            sides[name]["audio"] += step(sides[name], b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            sides[name]["wall"] += time.perf_counter() - t
    res = {n: round(v["audio"] / v["wall"], 2) for n, v in sides.items()}
    return {"metric": "asr conformer training, compiled vs eager (varying lengths)", "device": a.device,
            "compile": "torch.compile defaults" if a.plain_compile else "engine compile_model",
            "model": "tiny conformer (d_model 16, 1 layer)" if a.tiny else "mboshi-asr.yaml conformer",
            "steps": a.steps, "warmup_steps": a.warmup, "warmup_s": round(warm, 1), "audio_s_per_s": res,
            "ratio_compiled_vs_eager": round(res["compiled"] / res["eager"], 3),
            "graphs_compiled": counters["stats"]["unique_graphs"], "graphs_in_warmup": graphs_warm,
            "graphs_after_warmup": counters["stats"]["unique_graphs"] - graphs_warm,
            "lengths_timed": len({b["feats"].shape[1] for b in batches[a.warmup:]}),
            "load_average": open("/proc/loadavg").read().split()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-path", nargs="?", const=str(ROOT.parent / "shared/data/mboshi/train"), default=None,
                    help="Compare the data paths on this folder of Mboshi recordings instead of the encoders.")
    ap.add_argument("--items", type=int, default=300, help="--data-path: recordings imported.")
    ap.add_argument("--synthetic", action="store_true", help="--data-path: synthetic utterances instead of Mboshi.")
    ap.add_argument("--workers", type=int, default=1, help="--data-path: data-loader processes of the new path.")
    ap.add_argument("--prefetch", type=int, default=2, help="--data-path: batches each worker prepares ahead.")
    ap.add_argument("--chunk", type=int, default=10, help="--data-path: steps per alternation.")
    ap.add_argument("--compiled-vs-eager", action="store_true",
                    help="Compare torch.compile (inductor, dynamic lengths) with eager on the Mboshi conformer.")
    ap.add_argument("--warmup", type=int, default=2, help="--compiled-vs-eager: untimed steps (compilation).")
    ap.add_argument("--tiny", action="store_true", help="--compiled-vs-eager: a 1-layer, d_model 16 conformer.")
    ap.add_argument("--plain-compile", action="store_true",
                    help="--compiled-vs-eager: torch.compile's default options instead of the engine's compile_model.")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.compiled_vs_eager:
        print(json.dumps(compiled_vs_eager(a)))
        return
    if a.data_path or a.synthetic:
        print(json.dumps(data_path(a)))
        return
    print(f"device {a.device} ({torch.cuda.get_device_name() if a.device == 'cuda' else platform.processor()}), "
          f"batch {a.batch} x {a.seconds} s, {a.steps} steps, load average {open('/proc/loadavg').read().split()[0]}")
    results = {name: measure(spec, a.device, a.batch, a.seconds, a.steps) for name, spec in MODELS.items()}
    base = results["bigru-demo (baseline)"]["audio_s_per_s"]
    for name, r in results.items():
        print(f"{name:26s} {r['params_M']:6.2f}M params  {r['audio_s_per_s']:9.1f} audio-s/s  "
              f"ratio vs baseline {r['audio_s_per_s'] / base:.2f}  ({r['audio_s_per_cpu_s']:.1f} audio-s per CPU-s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Training throughput of the asr encoders: audio-seconds trained per wall-second (CPU, or GPU when present).

The baseline is the walking skeleton's BiGRU-CTC (demo size), run in the same invocation; each encoder trains
on the same synthetic batches of 3-second utterances (Mboshi's mean duration), so the ratio compares models,
not data loading. One command on a GPU machine: `python bench/asr_throughput.py --device cuda`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from hearthkit.recipes.asr.model import ASRConfig, build

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
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

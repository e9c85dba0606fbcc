"""Training metrics on rank 0: loss, throughput, MFU, peak memory, GPU utilisation; metrics.jsonl and one line."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

# Dense bf16 tensor-core peak (TFLOP/s) by device-name fragment, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "4090": 165.0, "3090": 71.0}


def peak_tflops(device: torch.device, configured: float | None) -> float | None:
    """Peak TFLOP/s of one device: the configured figure, else a known GPU's, else None (no MFU)."""
    if configured is not None:
        return configured
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory of this process: allocated GPU memory on GPU, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / (2**30 if sys.platform == "darwin" else 2**20)


class GpuMonitor:
    """GPU utilisation and memory in use through NVML, when the NVIDIA bindings are installed."""

    def __init__(self, device: torch.device):
        self.handle = None
        if device.type != "cuda":
            return
        try:
            import pynvml  # optional: nvidia-ml-py

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception:  # no bindings or no driver: leave the figures out rather than fail training
            self.handle = None

    def sample(self) -> dict[str, float]:
        if self.handle is None:
            return {}
        util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
        mem = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return {"gpu_util_pct": float(util.gpu), "gpu_mem_used_gib": mem.used / 2**30}


class Meter:
    """Sums a log interval's loss and counts; at each log step reduces them over ranks and reports."""

    def __init__(self, run_dir: Path, total_steps: int, device: torch.device, flops_per_sample: float | None,
                 peak: float | None, tracker: Any = None, group: dist.ProcessGroup | None = None):
        self.run_dir, self.total, self.device = run_dir, total_steps, device
        self.group = group  # a gloo group: the sums are CPU tensors, which an NCCL group refuses
        self.flops, self.peak, self.tracker = flops_per_sample, peak, tracker
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.gpu = GpuMonitor(device) if self.rank == 0 else None
        self.unit = "samples"
        self._reset()

    def _reset(self) -> None:
        # Loss stays on the device: no host sync per step (it would stall a GPU pipeline).
        self.loss = torch.zeros((), device=self.device)
        self.counts = [0.0, 0.0]  # samples, natural units
        self.steps = 0
        self.t0 = time.perf_counter()

    def add(self, loss: torch.Tensor, stats: dict[str, float]) -> None:
        """Count one optimizer step: its mean loss and the recipe's counts (samples + natural unit)."""
        self.unit = next((k for k in stats if k != "samples"), "samples")
        self.loss += loss.detach().float()
        self.counts[0] += stats["samples"]
        self.counts[1] += stats.get(self.unit, stats["samples"])
        self.steps += 1

    def report(self, step: int, lr: float) -> dict:
        """Reduce over ranks and, on rank 0, print one line and append to metrics.jsonl; return the record."""
        dt = time.perf_counter() - self.t0
        sums = torch.tensor([float(self.loss), *self.counts])
        dist.all_reduce(sums, group=self.group)
        mem = torch.tensor([peak_memory_gib(self.device)])
        dist.all_reduce(mem, op=dist.ReduceOp.MAX, group=self.group)
        samples_s = sums[1].item() / dt
        rec: dict[str, Any] = {"step": step, "steps": self.total, "loss": sums[0].item() / (self.world * self.steps),
                               "lr": lr, "samples_per_s": samples_s, f"{self.unit}_per_s": sums[2].item() / dt,
                               "peak_mem_gib": mem.item(), "time": time.time()}
        if self.flops is not None and self.peak is not None:
            rec["mfu"] = self.flops * samples_s / (self.peak * 1e12 * self.world)
        if self.gpu is not None:
            rec.update(self.gpu.sample())
        self._emit(rec, format_line(rec, self.unit))
        self._reset()
        return rec

    def report_valid(self, step: int, loss: float) -> None:
        """On rank 0: print and record the validation loss at STEP (metrics.jsonl, tracking)."""
        self._emit({"step": step, "valid_loss": loss, "time": time.time()},
                   f"validation loss at step {step}: {loss:.4f}")

    def report_valid_averaged(self, step: int, loss: float, n: int) -> None:
        """On rank 0: the validation loss of the final weights, averaged over N checkpoints (what is shipped)."""
        self._emit({"step": step, "valid_loss_averaged": loss, "averaged_checkpoints": n, "time": time.time()},
                   f"validation loss of the {n} averaged checkpoints: {loss:.4f}")

    def note(self, rec: dict, line: str) -> None:
        """On rank 0: record REC in metrics.jsonl (and tracking) and print LINE, e.g. a decision taken on resume."""
        self._emit(rec | {"time": time.time()}, line)

    def _emit(self, rec: dict, line: str) -> None:
        """On rank 0: append REC to metrics.jsonl, print LINE, send REC to the tracker."""
        if self.rank != 0:
            return
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(line, flush=True)
        if self.tracker is not None:
            self.tracker.log(rec)


def format_line(rec: dict, unit: str) -> str:
    """The progress line the CLI parses (`step X/Y ...`) and a person reads."""
    line = (f"step {rec['step']}/{rec['steps']} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
            f"samples/s {rec['samples_per_s']:.1f}")
    if unit != "samples":
        line += f" {unit}/s {rec[f'{unit}_per_s']:.1f}"
    if "mfu" in rec:
        line += f" mfu {100 * rec['mfu']:.1f}%"
    line += f" mem {rec['peak_mem_gib']:.2f}GiB"
    if "gpu_util_pct" in rec:
        line += f" gpu {rec['gpu_util_pct']:.0f}%"
    return line

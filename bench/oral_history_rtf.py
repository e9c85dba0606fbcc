"""Real-time factor of `hearth oral-history` against plain `hearth transcribe` on the same 10-minute recording.

The recording: Mboshi dev utterances with 0.5-2 s pauses (bench/asr_transcribe_rtf.py's `make_recording`, same seed).
Runs the real CLI, in one invocation: `transcribe` (the baseline, energy VAD, vtt + eaf), then `oral-history` with
silero-vad and with the energy VAD (eaf + vtt + html; with --mt and --to, or --st, also the translation), then the
baseline again (the machine is shared: the two baseline runs bracket the load). Every run uses one torch thread
(OMP_NUM_THREADS=1). Prints wall / audio and the ratios.

Usage: HEARTH_WORKSPACE=WS python bench/oral_history_rtf.py MODEL --data ../shared/data/mboshi [--mt M --to fr | --st M]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_transcribe_rtf import make_recording  # noqa: E402


def run(args: list[str]) -> tuple[float, str]:
    # One torch thread in every run (the machine is shared; `transcribe` has no --threads): same footing for all.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hearthkit.cli.main", *args], capture_output=True, text=True,
                          env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return wall, proc.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--mt", default=None)
    ap.add_argument("--to", default=None)
    ap.add_argument("--st", default=None, help="An st model (cascade or end-to-end) translating each segment")
    ap.add_argument("--requester", default="hearthkit-benchmark")
    a = ap.parse_args()
    common = ["--purpose", "research", "--requester", a.requester]
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "mboshi-10min.wav"
        dur = make_recording(a.data, rec)
        runs = [("transcribe (baseline)", ["transcribe", a.model, str(rec), "-f", "vtt", "-f", "eaf", "--out",
                                           f"{tmp}/t1", *common])]
        extra = ["--mt", a.mt, "--to", a.to] if a.mt else ["--st", a.st] if a.st else []
        for vad in ("silero", "energy"):
            runs.append((f"oral-history --vad {vad}", ["oral-history", str(rec), "--asr", a.model, "--out",
                                                        f"{tmp}/o-{vad}", "--vad", vad, *extra, *common]))
        runs.append(("transcribe (baseline, again)", runs[0][1][:-len(common) - 1] + [f"{tmp}/t2", *common]))
        walls = {}
        for label, args in runs:
            wall, said = run(args)
            walls[label] = wall
            print(f"{label:30s} audio {dur:.1f} s, wall {wall:.1f} s (process start included), RTF {wall / dur:.3f}; "
                  f"CLI: {said}", flush=True)
        base = (walls["transcribe (baseline)"] + walls["transcribe (baseline, again)"]) / 2
        for vad in ("silero", "energy"):
            print(f"oral-history --vad {vad} / transcribe (mean of the two baseline runs): "
                  f"{walls[f'oral-history --vad {vad}'] / base:.2f}")


if __name__ == "__main__":
    main()

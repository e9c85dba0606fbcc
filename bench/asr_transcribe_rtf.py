"""Real-time factor of `hearth transcribe`: a 10-minute recording made of Mboshi dev utterances and pauses.

Usage: python bench/asr_transcribe_rtf.py MODEL_FOLDER --data ../shared/data/mboshi [--beam N]
Runs the real CLI (greedy and the model's own beam search in the same invocation: the greedy run is the
baseline) and prints wall time / audio duration for each.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_recording(data: Path, out: Path, minutes: float = 10.0) -> float:
    """Concatenate dev utterances with 0.5-2 s pauses into OUT until MINUTES long; return its duration."""
    rng = random.Random(0)
    files = sorted((data / "dev").glob("*.flac"))
    parts, total = [], 0.0
    while total < minutes * 60:
        wav, sr = sf.read(rng.choice(files), dtype="float32")
        pause = np.zeros(int(rng.uniform(0.5, 2.0) * sr), np.float32)
        parts += [pause, wav]
        total += (len(pause) + len(wav)) / sr
    sf.write(out, np.concatenate(parts), 16000, subtype="PCM_16")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--beam", type=int, default=None, help="beam of the second run (default: the model's)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "mboshi-10min.wav"
        dur = make_recording(a.data, rec)
        for label, extra in (("greedy (baseline)", ["--beam", "1"]),
                             ("model's decoding", ["--beam", str(a.beam)] if a.beam else [])):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "hearthkit.cli.main", "transcribe", str(a.model), str(rec),
                                   "-f", "vtt", "-f", "eaf", "--out", tmp, *extra], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(proc.stderr)
            segs = (Path(tmp) / "mboshi-10min.vtt").read_text().count("-->")
            print(f"{label:20s} audio {dur:.1f} s, wall {wall:.1f} s (process start included), RTF {wall / dur:.3f}, "
                  f"{segs} segments; CLI says: {proc.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()

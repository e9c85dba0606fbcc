"""Cost of checking a base model's folder before a use (lineage/base.py `verify_base`): cold vs cached.

A model fine-tuned from a base is refused when the base folder changed (issue 20); a server checks it before every
use. The baseline is a plain sha256 over the same bytes (`hashlib`, 1 MiB blocks) in the same invocation; the
first `hash_base_folder` call reads every byte (cold), later calls in the same process only stat the files.
Writes a synthetic folder shaped like a checkpoint (config.json, tokenizer files, one large safetensors file).
Example: nice python bench/base_hash.py --mb 512 --repeat 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from hearthkit.lineage.base import hash_base_folder


def plain_sha256(folder: Path) -> str:
    """The baseline: one sha256 over every file's bytes, in name order."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def main() -> None:
    """Time plain sha256, the first (cold) and the repeated (cached) folder check; print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=512, help="Size of the weights file in MiB.")
    ap.add_argument("--repeat", type=int, default=20, help="Cached checks to time.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "base"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
        (folder / "vocab.json").write_text(json.dumps({str(i): i for i in range(100)}))
        with open(folder / "model.safetensors", "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        t = time.perf_counter()
        plain_sha256(folder)
        plain = time.perf_counter() - t
        t = time.perf_counter()
        first = hash_base_folder(folder)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(args.repeat):
            assert hash_base_folder(folder) == first
        cached = (time.perf_counter() - t) / args.repeat
    print(json.dumps({"mb": args.mb, "plain_sha256_s": round(plain, 3), "cold_check_s": round(cold, 3),
                      "cold_vs_plain": round(cold / plain, 3), "cached_check_ms": round(cached * 1000, 3),
                      "cached_vs_plain": round(cached / plain, 6), "machine": platform.machine(),
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()

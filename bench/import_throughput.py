"""Import throughput (files/s) of a speech folder: plaintext vs encrypted collection, same invocation.

Usage: .venv/bin/python bench/import_throughput.py [FOLDER] [--info archive.yaml] [--limit N] [--repeats R]
Default FOLDER: ../shared/data/mboshi/train with configs/archives/mboshi.yaml. Each repeat imports the folder
into a fresh workspace twice (plaintext, then encrypted, alternating which goes first); the median is reported.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from hearthkit.catalog.db import Catalog
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.vault import Store
from hearthkit.workspace import init_workspace

ROOT = Path(__file__).resolve().parents[1]


def subset(folder: Path, limit: int | None, dest: Path) -> Path:
    """FOLDER itself, or a copy of its first LIMIT recordings and their text files (links out are refused)."""
    if not limit:
        return folder
    dest.mkdir()
    stems = sorted({p.name.split(".")[0] for p in folder.iterdir() if p.suffix in (".flac", ".wav")})[:limit]
    for p in folder.iterdir():
        if p.name.split(".")[0] in stems:
            shutil.copy(p, dest / p.name)
    return dest


def one_import(folder: Path, info: dict, restricted: bool, tmp: Path) -> tuple[float, int]:
    """Seconds to import FOLDER into a fresh workspace, and the number of items imported."""
    work = Path(tempfile.mkdtemp(dir=tmp))
    ws = init_workspace(work / "ws")
    info = {**info, "collection": {**info["collection"], "restricted": restricted}}
    info_path = work / "info.yaml"
    info_path.write_text(yaml.safe_dump(info, allow_unicode=True))
    catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)
    t0 = time.perf_counter()
    report = import_speech_folder(catalog, store, folder, info_path=info_path)
    dt = time.perf_counter() - t0
    assert report.sealed == restricted and report.imported, report.problems[:3]
    shutil.rmtree(work)
    return dt, report.imported


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared/data/mboshi/train"))
    ap.add_argument("--info", default=str(ROOT / "configs/archives/mboshi.yaml"))
    ap.add_argument("--limit", type=int, default=None, help="Only the first N recordings.")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    info = yaml.safe_load(Path(args.info).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        folder = subset(Path(args.folder), args.limit, Path(tmp) / "subset")
        for p in folder.iterdir():  # warm the page cache so neither mode pays for the first disk read
            p.read_bytes()
        times: dict[bool, list[float]] = {False: [], True: []}
        n = 0
        for r in range(args.repeats):
            for restricted in ((False, True) if r % 2 == 0 else (True, False)):
                dt, n = one_import(folder, info, restricted, Path(tmp))
                times[restricted].append(dt)
    plain, enc = (n / statistics.median(times[k]) for k in (False, True))
    print(json.dumps({"metric": "import throughput", "files": n, "plain_files_per_s": round(plain, 1),
                      "encrypted_files_per_s": round(enc, 1), "ratio_encrypted_vs_plain": round(enc / plain, 3),
                      "times_s": {"plain": times[False], "encrypted": times[True]}}))


if __name__ == "__main__":
    main()

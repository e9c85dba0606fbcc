"""Stage ../shared/data/mboshi as a hearthkit speech archive (linked audio, .txt transcripts, metadata.csv).

Speaker, elicitation source (dico/part) and the corpus split come from the file names; train and dev are one
collection with a `split` column so that a run config can hold out `split: dev` (or a speaker).
Usage: python bench/mboshi_stage.py OUT --data ../shared/data/mboshi
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
from pathlib import Path

import yaml

SOURCE = re.compile(r"_elicit_(Dico|Part)", re.I)
SPEAKERS = ["abiayi", "kouarata", "martial"]


def stage(data: Path, out: Path) -> int:
    """Write the staged archive into OUT; return the number of recordings."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for split in ("train", "dev"):
        for audio in sorted((data / split).iterdir()):
            if audio.suffix not in (".flac", ".wav"):
                continue
            text = (audio.with_suffix(".mb")).read_text(encoding="utf-8")
            link = out / audio.name
            if link.is_symlink():  # staged by an older version; the importer refuses links leaving the archive
                link.unlink()
            if not link.exists():
                try:  # a hard link is the file itself (no copy); across file systems, copy
                    link.hardlink_to(audio.resolve())
                except OSError:
                    shutil.copy2(audio, link)
            (out / f"{audio.stem}.txt").write_text(text, encoding="utf-8")
            m = SOURCE.search(audio.stem)
            rows.append({"file": audio.name, "speaker": audio.stem.split("_")[0],
                         "source": m.group(1).lower() if m else "other", "split": split})
    with (out / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file", "speaker", "source", "split"])
        w.writeheader()
        w.writerows(rows)
    info = {
        "collection": {"name": "mboshi", "community": "Mboshi speakers (Godard et al. 2018 corpus)",
                       "licence": "research use, as published by the authors",
                       "citation": "Godard et al., A Very Low Resource Language Speech Corpus for Computational "
                                   "Language Documentation Experiments, LREC 2018 (arXiv:1710.03501)"},
        "collective_consent": [{"subject": "Mboshi speakers (Godard et al. 2018 corpus)", "given_by": "corpus authors",
                                "given_at": "2018-05-07", "purposes": ["research"],
                                "evidence": "public research release"}],
        "individual_consent": [{"subject": s, "given_by": "corpus authors", "given_at": "2018-05-07",
                                "purposes": ["research"], "evidence": "public research release"} for s in SPEAKERS],
    }
    (out / "archive.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return len(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="The mboshi folder, e.g. ../shared/data/mboshi")
    a = ap.parse_args()
    print(f"staged {stage(a.data, a.out)} recordings in {a.out}")

"""A synthetic parallel corpus (Spanish <-> an invented language "xx") for demos and tests.

The invented language maps each word through a fixed lexicon and puts the verb last (SOV), so a model
must learn both word choice and reordering; lines carry a domain and some carry Local Contexts labels.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SUBJECTS = {"el niño": "kali", "la abuela": "tupa", "el perro": "wawa", "mi hermana": "nuri", "el pescador": "mako"}
VERBS = {"come": "aru", "mira": "isha", "lleva": "tawi", "busca": "maski", "canta": "taki"}
OBJECTS = {"el pan": "tanta", "el río": "mayu", "la casa": "wasi", "el maíz": "sara", "la luna": "killa",
           "el agua": "yaku"}
PLACES = {"": "", "en el bosque": "sachapi", "por la mañana": "tutapi"}
DOMAINS = ("cuentos", "noticias")


def sentence(rng: random.Random) -> tuple[str, str]:
    """One (Spanish, xx) pair."""
    s, v, o, p = (rng.choice(sorted(d)) for d in (SUBJECTS, VERBS, OBJECTS, PLACES))
    es = " ".join(w for w in (s, v, o, p) if w) + " ."
    xx = " ".join(w for w in (SUBJECTS[s], PLACES[p], OBJECTS[o], VERBS[v]) if w) + " ."
    return es, xx


def make_parallel_corpus(folder: Path, n_train: int = 200, n_dev: int = 30, seed: int = 0,
                         secret: int = 0, secret_marker: str = "") -> Path:
    """Write train/dev .es and .xx files and line-aligned train/dev.meta.csv; SECRET train lines get
    tk:secret_sacred on their xx side only and carry SECRET_MARKER (a word found nowhere else) on both sides."""
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        if n == 0:
            continue
        es, xx, meta = [], [], []
        for i in range(n):
            a, b = sentence(rng)
            labels = ""
            if split == "train" and i < secret:
                a, b, labels = f"{a} {secret_marker}".strip(), f"{b} {secret_marker}".strip(), "tk:secret_sacred"
            es.append(a)
            xx.append(b)
            meta.append({"domain": DOMAINS[i % 2], "labels.xx": labels})
        (folder / f"{split}.es").write_text("\n".join(es) + "\n", encoding="utf-8")
        (folder / f"{split}.xx").write_text("\n".join(xx) + "\n", encoding="utf-8")
        with (folder / f"{split}.meta.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["domain", "labels.xx"])
            w.writeheader()
            w.writerows(meta)
    return folder

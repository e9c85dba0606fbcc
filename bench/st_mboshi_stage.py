"""Stage ../shared/data/mboshi for speech translation: bench/mboshi_stage.py's archive plus each recording's French.

The French (`.fr` by default: cased, punctuated, no XML escapes; `--suffix .fr.cleaned` is the corpus's lower-cased,
Moses-tokenised copy with `&apos;`) is imported through `layout.translations`, so it is item metadata governed with
its recording (sealed with it in a restricted collection).
Usage: python bench/st_mboshi_stage.py OUT --data ../shared/data/mboshi [--suffix .fr]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from mboshi_stage import stage  # noqa: E402

SUFFIX = ".fr"


def stage_st(data: Path, out: Path, suffix: str = SUFFIX) -> int:
    """The asr archive in OUT, with the French translation files and the layout that imports them."""
    n = stage(data, out)
    for split in ("train", "dev"):
        for fr in sorted((data / split).glob(f"*{suffix}")):
            dst = out / fr.name
            if not dst.exists():
                shutil.copyfile(fr, dst)
    info = yaml.safe_load((out / "archive.yaml").read_text(encoding="utf-8"))
    info["layout"] = {"translations": {"fr": suffix}}
    (out / "archive.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return n


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="The mboshi folder, e.g. ../shared/data/mboshi")
    ap.add_argument("--suffix", default=SUFFIX, help="Which French file: .fr (default) or .fr.cleaned")
    a = ap.parse_args()
    print(f"staged {stage_st(a.data, a.out, a.suffix)} recordings with French translations in {a.out}")

"""A synthetic te reo Māori "oral-history" archive spoken by espeak-ng voices.

The sentences are composed here from a small word list; six voices in two
"dialect" groups read them. Consent and labels are set so that every policy
rule of the walking skeleton fires: secret/sacred items, non-commercial items,
one speaker with no individual consent, one who did not consent to the demo's
purpose.
"""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from hearthkit.errors import HearthError

NOUNS = ["tamaiti", "kurī", "ngeru", "manu", "rākau", "maunga", "awa", "moana", "whenua", "tangata",
         "wahine", "tāne", "kura", "pukapuka", "waka", "whare", "kai", "wai", "ika", "hoiho"]
VERBS = ["kai", "inu", "haere", "titiro", "kite", "whakarongo", "waiata", "oma", "noho", "moe", "tuhi", "pānui"]
ADJS = ["nui", "iti", "pai", "ātaahua", "tawhito", "hou", "mā", "pango", "whero", "kākāriki", "roa", "poto"]
PLACES = ["marae", "kāinga", "ngahere", "taone", "moana", "awa", "kura", "whare"]
TEMPLATES = [
    "kei te {v} te {n}",
    "he {a} te {n}",
    "ka {v} ngā {n} ki te {p}",
    "i kite au i te {n} {a}",
    "kei hea te {n} {a}",
    "e {v} ana te {n} i te {p}",
]


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng variant, pitch and speed."""

    speaker: str
    dialect: str
    gender: str
    variant: str
    pitch: int
    speed: int


VOICES = [
    Voice("hemi", "raki", "male", "m1", 40, 150),
    Voice("tama", "raki", "male", "m3", 34, 165),
    Voice("aroha", "raki", "female", "f2", 62, 140),
    Voice("mere", "tonga", "female", "f4", 70, 132),
    Voice("kiri", "tonga", "female", "f5", 66, 170),
    Voice("wiremu", "tonga", "male", "m7", 50, 158),
]
NO_CONSENT = "tama"  # no individual consent on record
RESEARCH_ONLY = "kiri"  # consented to research only, not the demo's language_revitalization


def sentences(n: int, seed: int = 7) -> list[str]:
    """N distinct sentences composed from the word list."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = rng.choice(TEMPLATES).format(n=rng.choice(NOUNS), v=rng.choice(VERBS), a=rng.choice(ADJS),
                                         p=rng.choice(PLACES))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def synthesize(text: str, voice: Voice, dest: Path) -> None:
    """Speak TEXT with VOICE into DEST as 16 kHz mono 16-bit WAV (espeak-ng piped into sox)."""
    espeak = subprocess.Popen(
        ["espeak-ng", "-v", f"mi+{voice.variant}", "-p", str(voice.pitch), "-s", str(voice.speed), "--stdout", text],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    subprocess.run(["sox", "-q", "-t", "wav", "-", "-r", "16000", "-c", "1", "-b", "16", str(dest)],
                   stdin=espeak.stdout, check=True, stderr=subprocess.PIPE)
    espeak.wait()
    if espeak.returncode != 0:
        raise HearthError(f"espeak-ng failed for {text!r} with voice {voice.speaker}")


def make_speech_archive(folder: Path, n_sentences: int = 110, n_voices: int = 6, secret: int = 6,
                        progress=None) -> int:
    """Write the demo archive into FOLDER; return the number of recordings."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise HearthError(f"{tool} is not installed; run `make demo` (installs it) or `apt-get install {tool}`")
    if not 4 <= n_voices <= len(VOICES):
        raise HearthError(f"--voices must be between 4 and {len(VOICES)}")
    folder.mkdir(parents=True, exist_ok=True)
    voices = VOICES[:3][: n_voices // 2 + n_voices % 2] + VOICES[3:][: n_voices // 2]
    sents = sentences(n_sentences)
    rng = random.Random(11)
    rows = []
    total = len(sents) * len(voices)
    k = 0
    for si, text in enumerate(sents):
        for voice in voices:
            uid = f"{voice.speaker}_{si:04d}"
            synthesize(text, voice, folder / f"{uid}.wav")
            (folder / f"{uid}.txt").write_text(text + "\n", encoding="utf-8")
            labels = ["tk:non_commercial"] if rng.random() < 0.3 else []
            rows.append({"file": f"{uid}.wav", "speaker": voice.speaker, "dialect": voice.dialect,
                         "gender": voice.gender, "sentence": f"s{si:04d}", "labels": ";".join(labels)})
            k += 1
            if progress:
                progress(k, total)
    # A few recordings are secret/sacred: they must never reach a gradient step without approval.
    for row in rng.sample(rows, min(secret, len(rows))):
        row["labels"] = ";".join(filter(None, [row["labels"], "tk:secret_sacred"]))
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file", "speaker", "dialect", "gender", "sentence", "labels"])
        w.writeheader()
        w.writerows(rows)
    individual = []
    for v in voices:
        if v.speaker == NO_CONSENT:
            continue
        purposes = ["research"] if v.speaker == RESEARCH_ONLY else [
            "community_use", "language_revitalization", "education_outreach", "research"]
        individual.append({"subject": v.speaker, "given_by": v.speaker, "given_at": "2026-03-02",
                           "purposes": purposes, "evidence": f"consent-forms/{v.speaker}.pdf"})
    info = {
        "collection": {"name": "demo-korero", "community": "Te Hapori Tauira (demo community)",
                       "licence": "community terms: see consent records",
                       "citation": "Demo kōrero archive, synthetic speech generated by hearthkit with espeak-ng"},
        "collective_consent": [{"subject": "Te Hapori Tauira (demo community)", "given_by": "demo council",
                                "given_at": "2026-03-01", "evidence": "hui minutes 2026-03-01",
                                "purposes": ["community_use", "language_revitalization",
                                             "education_outreach", "research"]}],
        "individual_consent": individual,
    }
    (folder / "archive.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return len(rows)

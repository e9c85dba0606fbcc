"""Three site workspaces cut from the tiny espeak-ng archive: their own collection, community, consent, labels and
espeak-ng language (Māori, Guaraní, Quechua voices); and the YAML configs of a federation over them (TLS with the
federation's CA, each site's public signing key)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from datetime import date
from pathlib import Path

import yaml

PURPOSE, REQUESTER = "language_revitalization", "fed-team"
# site -> (community, sentence indices, change to its archive)
SITES = {
    "north": ("Te Hapori Raki", range(0, 4), "as-is"),  # secret/sacred items held until its stewards approve
    "south": ("Te Hapori Tonga", range(4, 8), "kiri-consents"),  # kiri consented to revitalisation here
    "east": ("Te Hapori Rāwhiti", range(8, 12), "non-commercial"),  # every item tk:non_commercial
}
LANGUAGE = {"north": "mi", "south": "gn", "east": "qu"}  # each site's espeak-ng voice set: Māori, Guaraní, Quechua
UNITS = "abcdefghijklmnopqrstuvwxyzāēīōū '-"
MODEL = {"arch": "bigru", "n_mels": 40, "conv_channels": 8, "hidden": 16, "layers": 1, "spec_augment": False}


def site_archive(src: Path, dest: Path, site: str) -> Path:
    """A copy of the archive SRC holding only SITE's sentences, under its own collection and community."""
    community, keep, change = SITES[site]
    dest.mkdir(parents=True)
    with (src / "metadata.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["sentence"][1:]) in keep]
    for r in rows:
        stem = r["file"][:-4]
        if LANGUAGE[site] == "mi":
            shutil.copy(src / f"{stem}.wav", dest / f"{stem}.wav")
        else:  # the same speaker's variant, pitch and speed in the site's own espeak-ng language
            speak(src.joinpath(f"{stem}.txt").read_text(encoding="utf-8").strip(), LANGUAGE[site], r["speaker"],
                  dest / f"{stem}.wav")
        shutil.copy(src / f"{stem}.txt", dest / f"{stem}.txt")
        if change == "non-commercial":
            r["labels"] = ";".join(sorted({*filter(None, r["labels"].split(";")), "tk:non_commercial"}))
    with (dest / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = yaml.safe_load((src / "archive.yaml").read_text(encoding="utf-8"))
    info["collection"]["name"] = f"korero-{site}"
    info["collection"]["community"] = community
    for c in info["collective_consent"]:
        c["subject"] = community
    if change == "kiri-consents":
        for c in info["individual_consent"]:
            if c["subject"] == "kiri":
                c["purposes"] = ["language_revitalization", "research"]
    (dest / "archive.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return dest


def speak(text: str, language: str, speaker: str, dest: Path) -> None:
    """TEXT spoken by the demo voice SPEAKER in espeak-ng's LANGUAGE, as 16 kHz mono 16-bit WAV."""
    from hearthkit.demo.speech import VOICES

    v = next(v for v in VOICES if v.speaker == speaker)
    wav = subprocess.run(["espeak-ng", "-v", f"{language}+{v.variant}", "-p", str(v.pitch), "-s", str(v.speed),
                          "--stdout", text], capture_output=True, check=True).stdout
    subprocess.run(["sox", "-q", "-t", "wav", "-", "-r", "16000", "-c", "1", "-b", "16", str(dest)], input=wav,
                   check=True, capture_output=True)


def make_site(root: Path, archive: Path, site: str) -> Path:
    """SITE's own workspace: its archive imported, a steward, a request approved by that steward, its site
    signing key."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.federate.signing import site_key
    from hearthkit.governance.stewardship import add_person
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import init_workspace

    ws = init_workspace(root / f"ws-{site}")
    folder = site_archive(archive, root / f"archive-{site}", site)
    catalog = open_workspace_catalog(ws)
    try:
        import_speech_folder(catalog, workspace_store(ws), folder)
        add_person(catalog, f"steward-{site}", SITES[site][0], "steward", owner="test")
        approve(catalog, site)
    finally:
        catalog.close()
    site_key(ws.keys_dir)
    return ws.root


def approve(catalog, site: str) -> int:
    """A new request of the site's federated use, approved by its steward; its id."""
    from hearthkit.governance.requests import create_request, decide

    req, _ = create_request(catalog, PURPOSE, REQUESTER, [f"korero-{site}"], "asr", date.today().isoformat())
    if req.status == "pending":
        decide(catalog, req.id, f"steward-{site}", "approve")
    return req.id


def write_configs(root: Path, port: int, dial: int, rounds: int = 3, min_sites: int = 3,
                  **extra) -> tuple[Path, dict]:
    """The coordinator's config (it listens on PORT) and one site config per site (they dial DIAL), over TLS with
    a CA made in ROOT/tls, listing each site workspace's public signing key."""
    from hearthkit.federate.signing import public_key_text, site_key
    from hearthkit.federate.tls import CA, make_tls
    from hearthkit.workspace import open_workspace

    ca = root / "tls" / CA
    if not ca.is_file():
        make_tls(root / "tls", ["127.0.0.1"])
    keys = {s: public_key_text(site_key(open_workspace(root / f"ws-{s}").keys_dir, create=False)) for s in SITES}
    fed = {"name": "fed-asr", "recipe": "asr", "model": MODEL, "units": UNITS, "rounds": rounds, "local_steps": 2,
           "batch_size": 4, "lr": 0.003, "seed": 0, "min_sites": min_sites, "address": f"127.0.0.1:{port}",
           "round_timeout_s": 120, "tls": {"folder": str(root / "tls")},
           "sites": [{"name": s, "community": c, "public_key": keys[s]} for s, (c, _, _) in SITES.items()], **extra}
    cfg = root / "fed.yaml"
    cfg.write_text(yaml.safe_dump(fed, allow_unicode=True), encoding="utf-8")
    sites = {}
    for s in SITES:
        p = root / f"site-{s}.yaml"
        p.write_text(yaml.safe_dump({"site": s, "coordinator": f"127.0.0.1:{dial}", "purpose": PURPOSE,
                                     "requester": REQUESTER, "collections": [f"korero-{s}"], "ca": str(ca),
                                     "split": {"by": "text", "test_fraction": 0.25}}), encoding="utf-8")
        sites[s] = p
    return cfg, sites

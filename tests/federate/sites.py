"""Three site workspaces cut from the tiny espeak-ng archive: their own collection, community, consent and labels;
and the YAML configs of a federation over them."""

from __future__ import annotations

import csv
import shutil
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
        shutil.copy(src / f"{stem}.wav", dest / f"{stem}.wav")
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


def make_site(root: Path, archive: Path, site: str) -> Path:
    """SITE's own workspace: its archive imported, a steward, a request approved by that steward."""
    from hearthkit.catalog.context import open_workspace_catalog
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
    """The coordinator's config (it listens on PORT) and one site config per site (they dial DIAL)."""
    fed = {"name": "fed-asr", "recipe": "asr", "model": MODEL, "units": UNITS, "rounds": rounds, "local_steps": 2,
           "batch_size": 4, "lr": 0.003, "seed": 0, "min_sites": min_sites, "address": f"127.0.0.1:{port}",
           "round_timeout_s": 120, "sites": [{"name": s, "community": c} for s, (c, _, _) in SITES.items()],
           **extra}
    cfg = root / "fed.yaml"
    cfg.write_text(yaml.safe_dump(fed, allow_unicode=True), encoding="utf-8")
    sites = {}
    for s in SITES:
        p = root / f"site-{s}.yaml"
        p.write_text(yaml.safe_dump({"site": s, "coordinator": f"127.0.0.1:{dial}", "purpose": PURPOSE,
                                     "requester": REQUESTER, "collections": [f"korero-{s}"],
                                     "split": {"by": "text", "test_fraction": 0.25}}), encoding="utf-8")
        sites[s] = p
    return cfg, sites

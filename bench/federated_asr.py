"""The cost of federation (issue 23): held-out CER of a federated asr model vs the same recipe trained centrally on
the pooled data (same optimizer steps, same samples drawn, same seed), with and without DP noise, per site.

Three sites, each its own workspace cut from one synthetic espeak-ng archive (disjoint sentences, its own
community); the coordinator and the sites run as separate `hearth federate` processes on localhost. Every model is
scored on each site's held-out sentences (the same sentences are held out of the centralised run), read at the
site through its governed reader. Prints one JSON line.

    nice -n 10 python bench/federated_asr.py --out /tmp/fed-bench
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import yaml

HEARTH = [sys.executable, "-m", "hearthkit.cli.main"]
SITES = {"north": "Te Hapori Raki", "south": "Te Hapori Tonga", "east": "Te Hapori Rāwhiti"}
UNITS = "abcdefghijklmnopqrstuvwxyzāēīōū '-"
PURPOSE, REQUESTER = "language_revitalization", "fed-team"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def site_archive(src: Path, dest: Path, site: str, keep: set[int]) -> Path:
    """SRC's recordings of the sentences KEEP, as SITE's own collection of its own community."""
    dest.mkdir(parents=True)
    with (src / "metadata.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["sentence"][1:]) in keep]
    for r in rows:
        for ext in (".wav", ".txt"):
            shutil.copy(src / (r["file"][:-4] + ext), dest / (r["file"][:-4] + ext))
    with (dest / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = yaml.safe_load((src / "archive.yaml").read_text(encoding="utf-8"))
    info["collection"]["name"], info["collection"]["community"] = f"korero-{site}", SITES[site]
    for c in info["collective_consent"]:
        c["subject"] = SITES[site]
    (dest / "archive.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return dest


def workspace(root: Path, folders: dict[str, Path]) -> Path:
    """A workspace holding FOLDERS (site -> archive), a steward per community, one request approved by all."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.governance.requests import create_request, decide
    from hearthkit.governance.stewardship import add_person
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import init_workspace

    ws = init_workspace(root)
    cat = open_workspace_catalog(ws)
    for site, folder in folders.items():
        import_speech_folder(cat, workspace_store(ws), folder)
        add_person(cat, f"steward-{site}", SITES[site], "steward", owner="bench")
    req, _ = create_request(cat, PURPOSE, REQUESTER, [f"korero-{s}" for s in folders], "asr",
                            date.today().isoformat())
    for site in folders:
        if req.status == "pending":
            req = decide(cat, req.id, f"steward-{site}", "approve")
    cat.close()
    return ws.root


def federate(root: Path, tag: str, args, split: dict, privacy: dict, strategy: dict | None = None) -> Path:
    """Run one federation (coordinator + 3 site processes, over TLS with signed updates); its folder."""
    from hearthkit.federate.signing import public_key_text, site_key
    from hearthkit.federate.tls import CA, make_tls
    from hearthkit.workspace import open_workspace

    port = _port()
    ca = root / "tls" / CA
    if not ca.is_file():
        make_tls(root / "tls", ["127.0.0.1"])
    keys = {s: public_key_text(site_key(open_workspace(root / f"ws-{s}").keys_dir)) for s in SITES}
    fed = {"name": f"fed-{tag}", "model": args.model, "units": UNITS, "rounds": args.rounds,
           "local_steps": args.local_steps, "batch_size": args.batch, "lr": args.lr, "seed": 0, "min_sites": 3,
           "address": f"127.0.0.1:{port}", "round_timeout_s": 1800, "privacy": privacy,
           "strategy": strategy or {"kind": "fedavg"},
           "tls": {"folder": str(root / "tls")},
           "sites": [{"name": s, "community": c, "public_key": keys[s]} for s, c in SITES.items()]}
    (root / f"fed-{tag}.yaml").write_text(yaml.safe_dump(fed, allow_unicode=True), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    coord = subprocess.Popen([*HEARTH, "federate", "coordinator", str(root / f"fed-{tag}.yaml"), "--folder",
                              str(root / f"coord-{tag}")], stdout=(root / f"coord-{tag}.log").open("w"),
                             stderr=subprocess.STDOUT, env=env)
    sites = []
    for s in SITES:
        cfg = root / f"site-{s}-{tag}.yaml"
        cfg.write_text(yaml.safe_dump({"site": s, "coordinator": f"127.0.0.1:{port}", "purpose": PURPOSE,
                                       "requester": REQUESTER, "collections": [f"korero-{s}"], "split": split,
                                       "ca": str(ca)}))
        sites.append(subprocess.Popen([*HEARTH, "federate", "join", str(cfg), "-w", str(root / f"ws-{s}")],
                                      stdout=(root / f"site-{s}-{tag}.log").open("w"), stderr=subprocess.STDOUT,
                                      env=env))
    if coord.wait() != 0 or any(p.wait() != 0 for p in sites):
        raise SystemExit(f"federation {tag} failed: see {root}/coord-{tag}.log and the site logs")
    return root / f"coord-{tag}" / "model"


def central(root: Path, args, split: dict) -> Path:
    """The same recipe trained on the pooled workspace: steps = rounds x local steps, 3x the batch (same samples)."""
    cfg = {"name": "central", "recipe": "asr",
           "request": {"purpose": PURPOSE, "requester": REQUESTER, "collections": [f"korero-{s}" for s in SITES],
                       "id": 1},
           "split": split, "model": args.model,
           "train": {"steps": args.rounds * args.local_steps, "batch_size": args.batch * len(SITES), "lr": args.lr,
                     "warmup": 0, "schedule": "constant", "seed": 1, "checkpoint_every": 10_000, "mlflow": False},
           "launch": {"nproc": 1}}
    (root / "central.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    with (root / "central.log").open("w") as log:
        subprocess.run([*HEARTH, "train", str(root / "central.yaml")], check=True, stdout=log,
                       stderr=subprocess.STDOUT, env=dict(os.environ, HEARTH_WORKSPACE=str(root / "ws-pooled")))
    return root / "ws-pooled" / "runs" / "central"


def site_cer(ws_root: Path, weights_path: Path, prep_dir: Path, model: dict, tag: str) -> tuple[float, int]:
    """CER of a model on the site's held-out items (its last federated round's split), read through its reader."""
    import jiwer
    import torch
    from safetensors.torch import load_file

    from hearthkit.data.loader import GovernedReader
    from hearthkit.governance.manifest import Manifest
    from hearthkit.recipes import get_recipe
    from hearthkit.store.vault import store_from_spec

    run = sorted((ws_root / "runs").glob("fed-plain-*"))[-1]
    ids = set(json.loads((run / "split.json").read_text())["test"])
    entries = [e for e in Manifest.read(run / "manifest.json").included if e["item_id"] in ids]
    recipe = get_recipe("asr")
    mcfg = recipe.ModelConfig.model_validate(model)
    prep = recipe.load_prep(prep_dir)
    net = recipe.build_model(mcfg, prep)
    net.load_state_dict(load_file(str(weights_path)))
    torch.set_num_threads(1)
    reader = GovernedReader(store_from_spec(json.loads((run / "run.json").read_text())), entries,
                            run / "access" / f"eval-bench-{tag}.jsonl")
    rows = recipe.evaluate(net, mcfg, prep, entries, reader)
    return jiwer.cer([r["reference"] for r in rows], [r["hypothesis"] for r in rows]), len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--archive", type=Path, help="An archive made earlier by make_speech_archive (4 voices) to reuse")
    p.add_argument("--sentences", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--noise", type=float, default=1.0)
    p.add_argument("--prox", type=float, default=0.0, help="Also run FedProx with this proximal_mu (0: skip)")
    p.add_argument("--no-dp", action="store_true", help="Skip the federation with DP noise")
    args = p.parse_args()
    args.model = {"arch": "bigru", "n_mels": 40, "conv_channels": 16, "hidden": 32, "layers": 1,
                  "spec_augment": False}
    from hearthkit.demo.speech import make_speech_archive

    t0 = time.time()
    root = args.out
    shutil.rmtree(root, ignore_errors=True)
    if args.archive:
        shutil.copytree(args.archive, root / "archive")
    else:
        make_speech_archive(root / "archive", n_sentences=args.sentences, n_voices=4, secret=3)
    third = args.sentences // 3
    keep = {s: set(range(i * third, (i + 1) * third)) for i, s in enumerate(SITES)}
    held = sorted(f"s{i:04d}" for i in range(args.sentences) if i % 4 == 3)  # the same sentences held out everywhere
    split = {"by": "sentence", "test_values": held}
    folders = {s: site_archive(root / "archive", root / f"archive-{s}", s, keep[s]) for s in SITES}
    for s in SITES:
        workspace(root / f"ws-{s}", {s: folders[s]})
    workspace(root / "ws-pooled", folders)
    models = {"federated": federate(root, "plain", args, split, {})}
    if args.prox:
        models["federated+fedprox"] = federate(root, "prox", args, split, {},
                                               {"kind": "fedprox", "proximal_mu": args.prox})
    if not args.no_dp:
        models["federated+dp"] = federate(root, "dp", args, split, {"clip": args.clip, "noise_multiplier": args.noise})
    run = central(root, args, split)
    result = {"metric": "federated asr CER", "rounds": args.rounds, "local_steps": args.local_steps,
              "batch": args.batch, "clip": args.clip, "noise_multiplier": args.noise, "proximal_mu": args.prox,
              "per_site": {}}
    for s in SITES:
        ws = root / f"ws-{s}"
        row = {}
        for name, folder in models.items():
            row[name], n = site_cer(ws, folder / "model.safetensors", folder / "prep", args.model, name)
        row["centralised"], n = site_cer(ws, run / "final" / "model.safetensors", run / "prep", args.model, "central")
        row["items"] = n
        result["per_site"][s] = row
    for name in [*models, "centralised"]:
        n = sum(r["items"] for r in result["per_site"].values())
        result[name] = sum(r[name] * r["items"] for r in result["per_site"].values()) / n  # item-weighted mean
    result["ratio_federated_to_centralised"] = result["federated"] / result["centralised"]
    if "federated+dp" in models:
        card = (models["federated+dp"].parent / "model" / "model_card.md").read_text(encoding="utf-8")
        result["dp_card_line"] = next((line for line in card.splitlines() if "(ε, δ)" in line), None)
    result["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()

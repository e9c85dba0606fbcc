"""A site's side of a federation: each round, its own manifest under its own policy, approved by its own
stewards, one local training run through the engine and the governed reader, and only the weights sent back.

The Flower client is the legacy NumPyClient over `flwr.compat` (see coordinator.py for why).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AccessRequest, Model, Run
from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError
from hearthkit.federate import signing, weights
from hearthkit.federate.config import SiteConfig
from hearthkit.governance.manifest import Manifest
from hearthkit.workspace import Workspace

FAULT_ENV = "HEARTH_FEDERATE_FAULT"  # tests only: "die:ROUND" or "bad_shape:ROUND" plays a broken site
RECORD = "federation.json"  # in a round's run folder: which federation and round it served


@dataclass(frozen=True)
class RoundSpec:
    """What the coordinator asks of a site for one round (all public: no data of any site)."""

    federation: str
    round: int
    recipe: str
    model: dict
    units: str
    local_steps: int
    batch_size: int
    lr: float
    seed: int
    proximal_mu: float = 0.0  # FedProx: the site adds μ/2·‖w − w_global‖² to its local loss
    nonce: str = ""  # the coordinator's fresh challenge of this round, signed back with the update

    @classmethod
    def from_config(cls, config: dict) -> RoundSpec:
        """Read the Flower fit config the coordinator sends."""
        try:
            return cls(str(config["federation"]), int(config["round"]), str(config["recipe"]),
                       json.loads(str(config["model"])), str(config["units"]), int(config["local_steps"]),
                       int(config["batch_size"]), float(config["lr"]), int(config["seed"]),
                       float(config.get("proximal_mu", 0.0)), str(config.get("nonce", "")))
        except (KeyError, ValueError, TypeError) as exc:
            raise HearthError(f"the coordinator's round instructions are incomplete ({exc}); is it a hearthkit "
                              "coordinator of the same version?") from None

    def to_config(self) -> dict:
        """The Flower fit config (scalar values only)."""
        return {"federation": self.federation, "round": self.round, "recipe": self.recipe,
                "model": json.dumps(self.model, sort_keys=True), "units": self.units,
                "local_steps": self.local_steps, "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "proximal_mu": self.proximal_mu, "nonce": self.nonce}


class Lapsed(HearthError):
    """The site may not contribute this round: no approval holds for today's manifest."""


def run_config(site: SiteConfig, spec: RoundSpec, name: str, request_id: int | None) -> RunConfig:
    """The local run of one round: the site's request, the federation's model, a few local steps."""
    return RunConfig.model_validate({
        "name": name, "recipe": spec.recipe,
        "request": {"purpose": site.purpose, "requester": site.requester, "collections": site.collections,
                    "id": request_id},
        "split": site.split.model_dump(), "model": spec.model,
        "train": {"steps": spec.local_steps, "batch_size": spec.batch_size, "lr": spec.lr, "warmup": 0,
                  "schedule": "constant",  # one schedule per round would restart a decay every round
                  "seed": spec.seed + spec.round, "checkpoint_every": spec.local_steps, "keep_last": 1,
                  "proximal_mu": spec.proximal_mu,
                  "log_every": spec.local_steps, "mlflow": False},
        "launch": {"nproc": 1, "backend": "gloo", "threads_per_worker": site.threads}})


def approved_request(catalog: Catalog, site: SiteConfig, spec: RoundSpec) -> tuple[int, Manifest]:
    """The newest stored request of this site's use whose approval holds for today's manifest, and that manifest.

    Approvals are bound to a manifest hash (governance/requests.py): a withdrawal, an expired consent or a closed
    season changes today's manifest, the old approval lapses, and the site stops contributing until its stewards
    approve a new request.
    """
    from hearthkit.launch.plan import governed_manifest, make_request

    with catalog.session() as s:
        ids = list(s.scalars(select(AccessRequest.id).where(
            AccessRequest.purpose == site.purpose, AccessRequest.requester == site.requester,
            AccessRequest.recipe == spec.recipe).order_by(AccessRequest.id.desc())))
    reason = "no request was ever made"
    for rid in ids:
        try:
            return rid, governed_manifest(catalog, run_config(site, spec, "check", rid))
        except HearthError as exc:
            reason = str(exc)
            if "differs from request" in reason:  # another use (other collections): not this site's request
                continue
            break  # the newest request of this use decides; an older approval never revives
    today = make_request(run_config(site, spec, "check", None))
    from hearthkit.governance.policy import compute_manifest

    full = compute_manifest(catalog, today)
    raise Lapsed(f"no approval holds for today's manifest ({full.hash[:12]}…): {reason}; its stewards approve a new "
                 f"request with `hearth request --purpose {site.purpose} --requester {site.requester} --recipe "
                 f"{spec.recipe} {' '.join('-c ' + c for c in site.collections)}` and `hearth approve ID --by STEWARD`")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_here(run_dir: Path) -> str:
    """Train RUN_DIR with the engine in this process, as a one-worker group (no torchrun: one site, one worker)."""
    from hearthkit.engine.trainer import train

    os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())})
    return train(run_dir, [], exit_process=False)


def _fault(kind: str, round_: int) -> bool:
    """Whether the test hook asks this site to play KIND in ROUND (a broken or killed site cannot be had here
    otherwise)."""
    want = os.environ.get(FAULT_ENV, "")
    return want == f"{kind}:{round_}"


def flagged_rounds(catalog: Catalog, federation: str, site: str) -> list[dict]:
    """This site's contributions to FEDERATION whose data was withdrawn since: {round, reason} from its registry."""
    with catalog.session() as s:
        rows = s.execute(select(Model.metrics, Model.status_reason).where(
            Model.name.like(f"{federation}-{site}-r%"), Model.status == "needs-retrain")).all()
    return sorted(({"round": int(m.get("round", 0)), "reason": why or "needs retrain"} for m, why in rows
                   if (m or {}).get("federation") == federation), key=lambda r: r["round"])


def local_round(ws: Workspace, catalog: Catalog, site: SiteConfig, spec: RoundSpec, names: list[str],
                arrays: list[np.ndarray]) -> tuple[list[np.ndarray], int, dict]:
    """One round at this site: (weights after local training, samples drawn, what the coordinator records)."""
    from hearthkit.launch.plan import plan_run, record_data_access
    from hearthkit.recipes.asr.tokenizer import CharTokenizer

    base = {"site": site.site, "flagged": json.dumps(flagged_rounds(catalog, spec.federation, site.site))}
    try:
        rid, today = approved_request(catalog, site, spec)
    except Lapsed as exc:
        return arrays, 0, {**base, "status": "lapsed", "reason": str(exc)}
    started = time.time()
    name = f"{spec.federation}-{site.site}-r{spec.round:04d}-{weights.digest(arrays)[:8]}"
    run_dir, manifest, _ = plan_run(ws, catalog, run_config(site, spec, name, rid))
    # One output layer for every site: the federation's units, not characters fitted on this site's transcripts.
    CharTokenizer(list(spec.units)).save(run_dir / "prep" / "tokenizer.json")
    start = run_dir / "global_in"
    weights.save(start / "model.safetensors", names, arrays)
    (start / "config.json").write_text(json.dumps({"recipe": spec.recipe, "model": spec.model}))
    (start / "prep").mkdir(exist_ok=True)
    CharTokenizer(list(spec.units)).save(start / "prep" / "tokenizer.json")
    run_spec = json.loads((run_dir / "run.json").read_text())
    # The engine starts from the global model the way it starts from any parent model (recipe.init_from_parent).
    run_spec["parent"] = {"name": f"federation {spec.federation} round {spec.round}", "path": str(start)}
    (run_dir / "run.json").write_text(json.dumps(run_spec, indent=1))
    (run_dir / RECORD).write_text(json.dumps({"federation": spec.federation, "round": spec.round,
                                              "site": site.site, "request": rid}))
    if _fault("die", spec.round):
        os._exit(17)  # a site killed mid-round: planned, nothing sent
    status = _train_here(run_dir)
    record_data_access(catalog, run_dir, name)
    if status != "finished":
        raise HearthError(f"round {spec.round}: local training stopped at a checkpoint; the site sends nothing")
    out_names, out = weights.load(run_dir / "final" / "model.safetensors")
    if out_names != names:
        raise HearthError(f"round {spec.round}: the local model's tensors differ from the global model's")
    seconds = time.time() - started
    (run_dir / "compute.json").write_text(json.dumps({"device": "cpu", "workers": 1, "seconds": seconds}))
    _register(catalog, name, run_dir, manifest, spec, rid)
    if _fault("bad_shape", spec.round):
        out = [out[0].reshape(-1)[:-1].copy(), *out[1:]]  # a wrongly shaped update: the coordinator must refuse
    train_items = len(json.loads((run_dir / "split.json").read_text())["train"])
    return out, spec.local_steps * spec.batch_size, {
        **base, "status": "ok", "manifest": manifest.hash, "request": rid, "items": train_items,
        "restrictions": json.dumps(manifest.restrictions), "attribution": json.dumps(manifest.attribution),
        "seconds": round(seconds, 3), "device": "cpu", "today": today.hash, "proximal_mu": spec.proximal_mu}


def _register(catalog: Catalog, name: str, run_dir: Path, manifest: Manifest, spec: RoundSpec, rid: int) -> None:
    """The site's registry entry of this contribution: a withdrawal of any of its items marks it needs-retrain,
    which the site reports to the coordinator the next time they talk."""
    with catalog.session() as s:
        run = s.scalar(select(Run).where(Run.name == name))
        run.status = "finished"
        if s.scalar(select(Model).where(Model.name == name)) is None:
            s.add(Model(name=name, run_id=run.id, path=str(run_dir / "final"), recipe=spec.recipe,
                        manifest_hash=manifest.hash, restrictions=manifest.restrictions,
                        attribution=manifest.attribution, status="active",
                        metrics={"federation": spec.federation, "round": spec.round, "request": rid,
                                 "kind": "federated contribution"}))


def signed(key, spec: RoundSpec, arrays: list[np.ndarray], n: int, metrics: dict) -> dict:
    """METRICS with the site's signature over the reply (the arrays serialised as Flower will send them)."""
    from flwr.common import ndarrays_to_parameters

    tensors = ndarrays_to_parameters(arrays).tensors
    return {**metrics, "nonce": spec.nonce,
            signing.SIGNATURE: signing.sign(key, spec.federation, spec.round, spec.nonce, tensors, n,
                                            {**metrics, "nonce": spec.nonce})}


def make_client(ws: Workspace, catalog: Catalog, site: SiteConfig, say):
    """The Flower client of this site."""
    from flwr.client import NumPyClient

    key = None if site.insecure else signing.site_key(ws.keys_dir)

    class SiteClient(NumPyClient):
        def get_parameters(self, config):
            return []  # the coordinator always sends the global model first

        def fit(self, parameters, config):
            spec = RoundSpec.from_config(config)
            names = json.loads(str(config["names"]))
            say(f"round {spec.round}: computing this site's manifest and training {spec.local_steps} steps")
            try:
                out, n, metrics = local_round(ws, catalog, site, spec, names, parameters)
            except HearthError as exc:  # e.g. a collection the config names is not in this catalog
                out, n, metrics = parameters, 0, {"site": site.site, "status": "error", "reason": str(exc),
                                                  "flagged": json.dumps(flagged_rounds(catalog, spec.federation,
                                                                                       site.site))}
            say(f"round {spec.round}: {metrics['status']}" + (f" ({metrics.get('reason')})"
                                                               if metrics["status"] != "ok" else
                                                               f", manifest {metrics['manifest'][:12]}…"))
            return out, n, (metrics if key is None else signed(key, spec, out, n, metrics))

        def evaluate(self, parameters, config):
            return 0.0, 0, {}

    return SiteClient().to_client()


def join(ws: Workspace, catalog: Catalog, site: SiteConfig, say, max_wait_s: float = 60) -> None:
    """Connect to the coordinator and serve its rounds until it ends the federation."""
    import grpc
    from flwr.compat.client.app import start_client

    try:
        if site.insecure:
            say("warning: insecure: true — no TLS and unsigned updates; the weights travel in clear")
        root = None if site.insecure else Path(site.ca).read_bytes()
        start_client(server_address=site.coordinator, client=make_client(ws, catalog, site, say),
                     insecure=site.insecure, root_certificates=root, max_wait_time=max_wait_s)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
        raise HearthError(f"cannot reach the coordinator at {site.coordinator} ({code}) within {max_wait_s:g} s; "
                          "is it running, is the site config's coordinator address right, and was the coordinator's "
                          "certificate made by the CA in the config's ca (both sides TLS, or both insecure)?") from None

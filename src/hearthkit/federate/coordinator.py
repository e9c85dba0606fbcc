"""The coordinator: Flower's server with its strategies, wrapped so every site update is checked and recorded.

Plain federations use Flower's lower-level gRPC server and client that still ship in 1.42
(`flwr.compat.server.app.start_server`, `flwr.compat.client.app.start_client`, deprecated there) with Flower's own
strategies (FedAvg, FedProx, FedAdam) and its differential-privacy wrapper: one coordinator process, one process per
site. SecAgg+ exists only as a mod of Flower's deployment engine, so `secure_aggregation: true` runs the same
checked strategy on a SuperLink with one SuperNode per site instead (federate/secagg.py).
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import numpy as np
from flwr.server.strategy import Strategy

from hearthkit.errors import HearthError
from hearthkit.federate import signing, tls, weights
from hearthkit.federate.config import FederationConfig
from hearthkit.federate.privacy import epsilon
from hearthkit.federate.records import Lineage, card
from hearthkit.federate.site import RoundSpec

ROUNDS = "rounds"


def initial_weights(cfg: FederationConfig) -> tuple[list[str], list[np.ndarray]]:
    """The round-0 global model: the recipe's model at the federation's seed, over the shared units."""
    import torch

    from hearthkit.recipes import get_recipe
    from hearthkit.recipes.asr.tokenizer import CharTokenizer

    recipe = get_recipe(cfg.recipe)
    torch.manual_seed(cfg.seed)
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    model = recipe.build_model(mcfg, {"tokenizer": CharTokenizer(list(cfg.units))})
    return weights.to_arrays(model.state_dict())


def last_round(folder: Path) -> int:
    """The last round whose global model was checkpointed (0: only the initial model, -1: none)."""
    done = [int(p.name.split("_")[1]) for p in (folder / ROUNDS).glob("round_*")
            if (p / "global.safetensors").is_file()]
    return max(done, default=-1)


def checkpoint_path(folder: Path, round_: int) -> Path:
    return folder / ROUNDS / f"round_{round_:04d}" / "global.safetensors"


STATE = ("current_weights", "m_t", "v_t")  # Flower's FedOpt family (FedAdam): the server optimizer's state


def _stateful(inner):
    """The Flower strategy that holds the optimizer state (inside Flower's DP wrapper when there is one)."""
    return getattr(inner, "strategy", inner)


def save_strategy_state(path: Path, inner) -> bool:
    """Write the server optimizer's arrays (FedAdam's moments and its own copy of the weights) in their own dtypes
    (Flower's Adam step computes in float64), atomically; False if the strategy has none."""
    from safetensors.numpy import save_file

    held = _stateful(inner)
    arrays = {f"{attr}.{i:05d}": np.ascontiguousarray(a) for attr in STATE
              for i, a in enumerate(getattr(held, attr, None) or [])}
    if arrays:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(arrays, str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").replace(path)
    return bool(arrays)


def load_strategy_state(path: Path, inner) -> None:
    """Put the arrays saved by save_strategy_state back into the Flower strategy."""
    from safetensors.numpy import load_file

    arrays = load_file(str(path))
    held = _stateful(inner)
    for attr in STATE:
        got = [arrays[n] for n in sorted(arrays) if n.split(".")[0] == attr]
        if got:
            setattr(held, attr, got)


class Governed(Strategy):
    """A Flower strategy around Flower's own: adds the round instructions, refuses malformed updates, records the
    lineage, checkpoints the global model after every round."""

    def __init__(self, cfg: FederationConfig, folder: Path, names: list[str], current: list[np.ndarray],
                 offset: int, say) -> None:
        self.cfg, self.folder, self.names, self.current = cfg, folder, names, current
        self.offset, self.say = offset, say
        self.lineage = Lineage.load(folder, cfg.name)
        self.inner = _flower_strategy(cfg, current)
        self.nonces: dict[int, str] = {}  # round -> the challenge sent with it; a signed reply must answer it
        self.keys = {} if cfg.insecure else {s.name: signing.parse_public_key(s.public_key, s.name) for s in cfg.sites}
        saved = checkpoint_path(folder, offset).with_name("strategy.safetensors")
        if saved.is_file():  # a restart: FedAdam continues with its moments, as an uninterrupted run would
            load_strategy_state(saved, self.inner)
            say(f"server optimizer state of round {offset} restored")

    def __repr__(self) -> str:
        return f"Governed({self.inner!r})"

    def initialize_parameters(self, client_manager):
        from flwr.common import ndarrays_to_parameters

        return ndarrays_to_parameters(self.current)

    def configure_fit(self, server_round, parameters, client_manager):
        from flwr.common import FitIns

        r = server_round + self.offset
        spec = RoundSpec(self.cfg.name, r, self.cfg.recipe, self.cfg.model, self.cfg.units, self.cfg.local_steps,
                         self.cfg.batch_size, self.cfg.lr, self.cfg.seed, self.cfg.strategy.proximal_mu or 0.0,
                         self.challenge(r))
        extra = {**spec.to_config(), "names": json.dumps(self.names)}
        self.say(f"round {r}: asking the sites to train")
        return [(c, FitIns(ins.parameters, {**ins.config, **extra}))
                for c, ins in self.inner.configure_fit(server_round, parameters, client_manager)]

    def aggregate_fit(self, server_round, results, failures):
        from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

        r = server_round + self.offset
        accepted = []
        for client, res in results:
            m = dict(res.metrics or {})
            site = self.cfg.site(str(m.get("site", "")))
            who = str(m.get("site") or "an unnamed site")
            if site is None:
                self._refuse(r, who, f"not a site of federation {self.cfg.name}")
                continue
            if not self.cfg.insecure:  # before anything the reply says is believed
                why = signing.verify(self.keys[site.name], self.cfg.name, r, self.nonces.get(r, ""),
                                     list(res.parameters.tensors), int(res.num_examples), m)
                if why is not None:
                    self._refuse(r, site.name, why)
                    continue
            try:
                self.lineage.flag(site.name, json.loads(str(m.get("flagged") or "[]")), r)
            except (ValueError, TypeError, KeyError):
                self._refuse(r, site.name, "its report of withdrawn rounds is not readable")
                continue
            if m.get("status") != "ok":
                self.lineage.event(r, site.name, "lapsed", str(m.get("reason") or "no reason given"))
                self.say(f"round {r}: {site.name} does not contribute: {m.get('reason')}")
                continue
            try:
                update = parameters_to_ndarrays(res.parameters)
            except Exception as exc:  # bytes that are no arrays at all
                self._refuse(r, site.name, f"the update is not readable as arrays ({type(exc).__name__})")
                continue
            problem = weights.check_update(self.names, self.current, update)
            if problem is None and any(res2.metrics["site"] == site.name for _, res2 in accepted):
                problem = "a second update in the same round"
            if problem is None and (res.num_examples <= 0 or not m.get("manifest")):
                problem = "no samples or no manifest hash reported"
            if problem is not None:
                self._refuse(r, site.name, problem)
                continue
            self._record_contribution(r, site, m, res, json.loads(str(m.get("restrictions") or "[]")),
                                      json.loads(str(m.get("attribution") or "[]")))
            accepted.append((client, res))
        for f in failures:
            why = type(f).__name__ if isinstance(f, BaseException) else "failed"
            self.lineage.event(r, "?", "no_answer", f"a site did not answer in time or disconnected ({why})")
        if not accepted:
            self.say(f"round {r}: no update accepted; the global model is unchanged")
            self.lineage.rounds.append({"round": r, "accepted": [], "global": weights.digest(self.current),
                                        **self._round_record()})
            self._checkpoint(r)
            return None, {}
        if hasattr(self.inner, "current_round_params"):
            # Flower's DP wrapper clips each update against the model it sent this round (set in configure_fit);
            # that is the checked global model held here, also after a restart between configure and aggregate.
            self.inner.current_round_params = self.current
        # The federation's round, not this process's: FedAdam's bias correction must not restart with the process.
        params, metrics = self.inner.aggregate_fit(r, accepted, [])
        if params is not None:  # float32, as checkpointed: a restarted coordinator holds exactly this model
            self.current = [a.astype(np.float32) for a in parameters_to_ndarrays(params)]
        sites = [str(res.metrics["site"]) for _, res in accepted]
        self.lineage.rounds.append({"round": r, "accepted": sites, "global": weights.digest(self.current),
                                    **self._round_record()})
        self._checkpoint(r)
        self.say(f"round {r}: aggregated {', '.join(sites)}")
        return ndarrays_to_parameters(self.current), metrics

    def challenge(self, r: int) -> str:
        """A fresh nonce for round R: a site signs it with its update, so no reply of another round passes."""
        self.nonces[r] = secrets.token_hex(16)
        return self.nonces[r]

    def _round_record(self) -> dict:
        s = self.cfg.strategy
        return {"strategy": s.kind, **({"proximal_mu": s.proximal_mu} if s.kind == "fedprox" else {})}

    def _record_contribution(self, r: int, site, m, res, restrictions: list, attribution: list, **extra) -> None:
        """One accepted site update in the lineage: what it trained on (manifest hash, request), never its items."""
        prev = [c for c in self.lineage.contributions if c["site"] == site.name]
        if prev and prev[-1]["manifest"] != m["manifest"]:
            self.lineage.event(r, site.name, "manifest_changed",
                               f"manifest {str(m['manifest'])[:12]}… (was {prev[-1]['manifest'][:12]}…)")
        self.lineage.contributions.append({
            "round": r, "site": site.name, "community": site.community, "manifest": str(m["manifest"]),
            "request": int(m.get("request", 0)), "samples": int(res.num_examples), "items": int(m.get("items", 0)),
            "restrictions": restrictions, "attribution": attribution,
            "seconds": float(m.get("seconds", 0.0)), "device": str(m.get("device", "unknown")),
            "proximal_mu": float(m.get("proximal_mu", 0.0)), "signed": not self.cfg.insecure, **extra})

    def _refuse(self, r: int, site: str, why: str) -> None:
        self.lineage.event(r, site, "refused", f"update refused: {why}")
        self.say(f"round {r}: update of {site} refused: {why}; the global model is unchanged by it")

    def _checkpoint(self, r: int) -> None:
        """The server optimizer's state and the global model after round R, then the lineage: a restart resumes
        after R (the global model's file is what marks the round done, so it is written after the state)."""
        save_strategy_state(checkpoint_path(self.folder, r).with_name("strategy.safetensors"), self.inner)
        weights.save(checkpoint_path(self.folder, r), self.names, self.current)
        self.lineage.save(self.folder)

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


def _flower_strategy(cfg: FederationConfig, current: list[np.ndarray]):
    """Flower's strategy for CFG, inside Flower's server-side fixed-clipping DP wrapper when privacy.clip is set."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAdam, FedAvg, FedProx

    common = {"fraction_fit": 1.0, "fraction_evaluate": 0.0, "min_fit_clients": cfg.min_sites,
              "min_evaluate_clients": 0, "min_available_clients": cfg.min_sites,
              "initial_parameters": ndarrays_to_parameters(current)}
    s = cfg.strategy
    if s.kind == "fedadam":
        inner = FedAdam(**common, eta=s.eta, beta_1=s.beta_1, beta_2=s.beta_2, tau=s.tau)
    elif s.kind == "fedprox":  # FedAvg on the server; it sends proximal_mu, the sites' engine adds the term
        inner = FedProx(**common, proximal_mu=s.proximal_mu)
    else:
        inner = FedAvg(**common)
    if cfg.privacy.clip is not None:
        inner = DifferentialPrivacyServerSideFixedClipping(inner, cfg.privacy.noise_multiplier, cfg.privacy.clip,
                                                            len(cfg.sites))
    return inner


def open_folder(cfg: FederationConfig, folder: Path) -> int:
    """FOLDER made ready for federation CFG (another model shape there is refused); its last checkpointed round."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / "federation.json"
    if saved.is_file() and json.loads(saved.read_text())["model"] != cfg.model:
        raise HearthError(f"{folder}: holds federation {cfg.name} with another model shape; use a new folder")
    saved.write_text(cfg.model_dump_json(indent=1))
    return last_round(folder)


def run(cfg: FederationConfig, folder: Path, say) -> Lineage:
    """Run (or resume, from the last checkpointed round) the federation; write the global model and its card."""
    from flwr.compat.server.app import start_server
    from flwr.server import ServerConfig

    done = open_folder(cfg, folder)
    if done >= 0:
        names, current = weights.load(checkpoint_path(folder, done))
        if done > 0:
            say(f"resuming after round {done} from {checkpoint_path(folder, done)}")
    else:
        names, current = initial_weights(cfg)
        done = 0
        weights.save(checkpoint_path(folder, 0), names, current)
    strategy = Governed(cfg, folder, names, current, done, say)
    if done < cfg.rounds:
        _check_address(cfg.address)
        start_server(server_address=cfg.address, strategy=strategy, certificates=certificates(cfg, folder, say),
                     config=ServerConfig(num_rounds=cfg.rounds - done, round_timeout=cfg.round_timeout_s))
    return publish(cfg, folder, strategy.lineage, say)


def certificates(cfg: FederationConfig, folder: Path, say) -> tuple[bytes, bytes, bytes] | None:
    """Flower's server certificates from the config's TLS folder (made there when missing); None when insecure."""
    if cfg.insecure:
        say("warning: insecure: true — no TLS and no update signatures: the weights travel in clear and anyone "
            "who knows a site's name can send updates as it; this is written on the model's card")
        return None
    where = Path(cfg.tls.folder) if cfg.tls.folder else folder / "tls"
    if not (where / tls.CA).is_file():
        host = cfg.address.rpartition(":")[0].strip("[]")
        tls.make_tls(where, [h for h in [*cfg.tls.hosts, host] if h and h not in ("0.0.0.0", "::")])
        say(f"made a TLS certificate authority and server certificate in {where}; give each site {where / tls.CA}")
    return tls.server_certificates(where)


def _check_address(address: str) -> None:
    """Refuse, in one line, an address the coordinator cannot listen on (Flower would exit with its own message)."""
    import socket

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            # As gRPC does: connections of a previous run in TIME_WAIT must not block a restarted coordinator.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        raise HearthError(f"address {address}: the coordinator cannot listen there ({exc}); free the port or set "
                          "another address in the config") from None


def publish(cfg: FederationConfig, folder: Path, lineage: Lineage, say) -> Lineage:
    """The global model folder: weights of the last round, its config and units, the card."""
    from hearthkit.recipes.asr.tokenizer import CharTokenizer

    last = last_round(folder)
    out = folder / "model"
    (out / "prep").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint_path(folder, last), out / "model.safetensors")
    (out / "config.json").write_text(json.dumps({"recipe": cfg.recipe, "model": cfg.model}))
    CharTokenizer(list(cfg.units)).save(out / "prep" / "tokenizer.json")
    eps = epsilon(cfg.privacy.noise_multiplier, len(lineage.rounds), cfg.privacy.delta) if cfg.privacy.clip else None
    (out / "model_card.md").write_text(card(lineage, cfg, eps), encoding="utf-8")
    say(f"global model after round {last}: {out} ({lineage.status})")
    return lineage

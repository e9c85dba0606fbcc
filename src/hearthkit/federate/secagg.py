"""Secure aggregation: the federation's rounds on Flower's deployment engine with SecAgg+.

The coordinator runs a SuperLink and submits a Flower app that hearthkit writes into its folder (a pyproject.toml
only: its ServerApp and ClientApp are this module's, installed at every site); each site runs a SuperNode whose
ClientApp is this module's `client_app` behind Flower's `secaggplus_mod`. Flower's `SecAggPlusWorkflow` then carries
each round: a site's weights leave it only quantised and masked (pairwise masks shared with its neighbours plus a
private mask, the seeds Shamir-shared), and the coordinator learns only the weighted sum. Everything the coordinator
records per site (manifest hash, approval id, restrictions, attribution, withdrawn rounds) travels in clear in the
reply's metrics, signed with the site's key over the round's challenge: no item list, no single site's weights.
What secure aggregation takes away is the per-site check of the weights: a wrongly shaped update stops the round
(the global model unchanged), and every value is clipped to ±clipping_range before quantisation, which bounds how
far one site can move the mean.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hearthkit.errors import HearthError
from hearthkit.federate import signing, tls, weights
from hearthkit.federate.config import FederationConfig, SiteConfig
from hearthkit.federate.coordinator import Governed, checkpoint_path, initial_weights, last_round, publish
from hearthkit.federate.records import Lineage

APP = "secagg"  # in the coordinator's folder: the Flower app, the SuperLink's home, state and log
MODULUS = 2**32  # Flower's mask range; a power of two above quantization_range
SAY = "hearth: "  # lines of the ServerApp's output that are the coordinator's messages


def settings(cfg: FederationConfig) -> dict:
    """The SecAgg+ parameters of CFG as the card and the workflow use them."""
    sa = cfg.secure_aggregation
    shares = sa.num_shares or len(cfg.sites)
    return {"num_shares": shares, "reconstruction_threshold": sa.threshold or shares // 2 + 1,
            "clipping_range": sa.clipping_range, "quantization_range": sa.quantization_range,
            "max_weight": float(cfg.local_steps * cfg.batch_size)}


def quantisation_step(cfg: FederationConfig) -> float:
    """The width of one quantisation level: a site's value is rounded (stochastically) to a multiple of it."""
    s = settings(cfg)
    return 2 * s["clipping_range"] / s["quantization_range"]


def card_section(cfg: FederationConfig) -> str:
    """What the model card says about secure aggregation."""
    s = settings(cfg)
    return "\n".join([
        "## Secure aggregation", "",
        f"secure aggregation: SecAgg+ ({s['num_shares']} shares, threshold {s['reconstruction_threshold']}) — "
        "Flower's SecAggPlusWorkflow and secaggplus_mod: the coordinator received each site's weights only "
        "quantised and masked, and learned only their weighted sum.", "",
        f"Quantisation: every value clipped to ±{s['clipping_range']:g} and mapped to {s['quantization_range']} "
        f"levels (step {quantisation_step(cfg):.3g}, stochastic rounding), weights by samples up to "
        f"{s['max_weight']:g}; the global model differs from the exact weighted mean by at most about one step per "
        "value.", ""])


class SecureGoverned(Governed):
    """Governed, for replies whose weights Flower's SecAgg+ has already summed: every reply carries the same
    aggregate, so a reply that must be refused refuses the whole round (its weights are inside the sum)."""

    def configure_fit(self, server_round, parameters, client_manager):
        # SecAgg+ needs the neighbours present at set-up: wait for every listed site, up to the round timeout.
        client_manager.wait_for(len(self.cfg.sites), timeout=int(self.cfg.round_timeout_s))
        out = super().configure_fit(server_round, parameters, client_manager)
        for _, ins in out:
            ins.config["secagg_clip"] = self.cfg.secure_aggregation.clipping_range
        return out

    def aggregate_fit(self, server_round, results, failures):
        from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

        r = server_round + self.offset
        contributing, lapsed, refused, seen = [], [], [], set()
        for client, res in results:
            m = dict(res.metrics or {})
            site = self.cfg.site(str(m.get("site", "")))
            if site is None:
                refused.append((str(m.get("site") or "an unnamed site"), f"not a site of federation {self.cfg.name}"))
                continue
            if not self.cfg.insecure:  # the weights are not the site's (the sum), so the signature covers none
                why = signing.verify(self.keys[site.name], self.cfg.name, r, self.nonces.get(r, ""), [],
                                     int(res.num_examples), m)
                if why is not None:
                    refused.append((site.name, why))
                    continue
            if site.name in seen:
                refused.append((site.name, "a second reply in the same round"))
                continue
            seen.add(site.name)
            try:
                flagged = json.loads(str(m.get("flagged") or "[]"))
                restrictions = json.loads(str(m.get("restrictions") or "[]"))
                attribution = json.loads(str(m.get("attribution") or "[]"))
            except ValueError:
                refused.append((site.name, "its report is not readable"))
                continue
            self.lineage.flag(site.name, flagged, r)
            if m.get("status") != "ok" or res.num_examples <= 0:
                lapsed.append((site.name, str(m.get("reason") or "no reason given")))
                continue
            if not m.get("manifest"):
                refused.append((site.name, "no manifest hash reported"))
                continue
            if int(m.get("clipped", 0)):
                self.lineage.event(r, site.name, "clipped", f"{int(m['clipped'])} values beyond ±"
                                   f"{self.cfg.secure_aggregation.clipping_range:g} were clipped before aggregation")
            contributing.append((client, res, site, m, restrictions, attribution))
        # Flower's workflow lists a dropped site once per stage loop; Flower's error names no node: one event each.
        for why in dict.fromkeys(str(f)[:160] or type(f).__name__ for f in failures):
            self.lineage.event(r, "?", "no_answer", f"a site dropped out of the round ({why}); SecAgg+ removed its "
                               "masks with its neighbours' shares")
        for name, why in lapsed:
            self.lineage.event(r, name, "lapsed", why)
            self.say(f"round {r}: {name} does not contribute: {why}")
        agg = parameters_to_ndarrays(results[0][1].parameters) if results else []
        problem = weights.check_update(self.names, self.current, agg) if contributing else None
        if refused or problem or not contributing:
            for name, why in refused:
                self._refuse(r, name, why)
            if problem:
                self.lineage.event(r, "*", "refused", f"the securely aggregated sum is unusable: {problem}")
            return self.halted(r, "a reply was refused and its weights are inside the secure sum" if refused else
                               problem or "no site contributed")
        accepted = []
        for client, res, site, m, restrictions, attribution in contributing:
            self._record_contribution(r, site, m, res, restrictions, attribution, secure_aggregation=True)
            accepted.append((client, res))
        # Every reply holds the same securely summed mean: FedAvg returns it, FedAdam steps on it.
        params, metrics = self.inner.aggregate_fit(r, accepted, [])
        if params is not None:
            self.current = parameters_to_ndarrays(params)
        sites = [site.name for _, _, site, *_ in contributing]
        self.lineage.rounds.append({"round": r, "accepted": sites, "global": weights.digest(self.current),
                                    **self._round_record(), "secure_aggregation": settings(self.cfg)})
        self._checkpoint(r)
        self.say(f"round {r}: securely aggregated {', '.join(sites)}")
        return ndarrays_to_parameters(self.current), metrics

    def halted(self, r: int, why: str):
        """Round R ends without a new global model: recorded, checkpointed unchanged."""
        self.say(f"round {r}: no secure aggregate accepted ({why}); the global model is unchanged")
        self.lineage.rounds.append({"round": r, "accepted": [], "global": weights.digest(self.current),
                                    **self._round_record(), "secure_aggregation": settings(self.cfg)})
        self._checkpoint(r)
        return None, {}


def _workflow(cfg: FederationConfig):
    """Flower's SecAggPlusWorkflow whose halts (too few sites, a wrongly shaped masked update) end the round
    recorded and unchanged instead of silently."""
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState

    class Workflow(SecAggPlusWorkflow):
        def __call__(self, grid, context) -> None:
            state = WorkflowState()
            steps = (self.setup_stage, self.share_keys_stage, self.collect_masked_vectors_stage, self.unmask_stage)
            for step in steps:
                try:
                    ok = step(grid, context, state)
                    why = (f"fewer sites than SecAgg+ needs (at least 2, and threshold {state.threshold} per "
                           f"neighbourhood) answered its {step.__name__.removesuffix('_stage')} stage within "
                           f"{cfg.round_timeout_s:g} s")
                except (ValueError, TypeError, KeyError, ArithmeticError) as exc:  # e.g. masked vectors' shapes differ
                    ok, why = False, f"{step.__name__} failed: {exc}"
                if not ok:
                    r = int(context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND])
                    context.strategy.halted(r + context.strategy.offset, why)
                    return

    s = settings(cfg)
    return Workflow(s["num_shares"], s["reconstruction_threshold"], max_weight=s["max_weight"],
                    clipping_range=s["clipping_range"], quantization_range=s["quantization_range"],
                    modulus_range=MODULUS, timeout=cfg.round_timeout_s)


def _server_main(grid, context) -> None:
    """The ServerApp: the federation saved in the coordinator's folder, its remaining rounds under SecAgg+."""
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow

    folder = Path(str(context.run_config["folder"]))
    cfg = FederationConfig.model_validate_json((folder / "federation.json").read_text())
    done = last_round(folder)
    names, current = weights.load(checkpoint_path(folder, done))
    strategy = SecureGoverned(cfg, folder, names, current, done, lambda m: print(SAY + m, flush=True))
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=cfg.rounds - done,
                                                                round_timeout=cfg.round_timeout_s), strategy=strategy)
    DefaultWorkflow(fit_workflow=_workflow(cfg))(grid, legacy)


def _client(context):
    """The ClientApp's client: the site's workspace and config from the SuperNode's node config."""
    from flwr.client import NumPyClient

    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.federate.config import load_site
    from hearthkit.federate.site import RoundSpec, flagged_rounds, local_round, signed
    from hearthkit.workspace import open_workspace

    ws = open_workspace(Path(str(context.node_config["workspace"])))
    site = load_site(Path(str(context.node_config["site-config"])))

    def say(msg: str) -> None:
        print(f"site {site.site}: {msg}", flush=True)

    class SecureSiteClient(NumPyClient):
        def get_parameters(self, config):
            return []

        def fit(self, parameters, config):
            spec = RoundSpec.from_config(config)
            names = json.loads(str(config["names"]))
            catalog = open_workspace_catalog(ws)
            try:
                try:
                    out, n, metrics = local_round(ws, catalog, site, spec, names, parameters)
                except HearthError as exc:
                    out, n, metrics = parameters, 0, {"site": site.site, "status": "error", "reason": str(exc),
                                                      "flagged": json.dumps(flagged_rounds(catalog, spec.federation,
                                                                                           site.site))}
            finally:
                catalog.close()
            if n <= 0:  # a site that does not contribute adds zeros with weight 0 to the secure sum
                out = [np.zeros_like(a) for a in parameters]
            clip = float(config.get("secagg_clip", 0.0))
            if clip:
                metrics["clipped"] = int(sum(int((np.abs(a) > clip).sum()) for a in out))
            say(f"round {spec.round}: {metrics['status']}, sent masked")
            key = None if site.insecure else signing.site_key(ws.keys_dir)
            return out, n, (metrics if key is None else signed(key, spec, [], n, metrics))

        def evaluate(self, parameters, config):
            return 0.0, 0, {}

    return SecureSiteClient().to_client()


def _server_app():
    from flwr.server import ServerApp

    app = ServerApp()
    app.main()(_server_main)
    return app


def _client_app():
    from flwr.client import ClientApp
    from flwr.client.mod import secaggplus_mod

    return ClientApp(client_fn=_client, mods=[secaggplus_mod])


# Named by the generated app's pyproject.toml; Flower finds them by plain assignment (it reads this file's syntax).
server_app = _server_app()
client_app = _client_app()


def write_app(folder: Path) -> Path:
    """The Flower app hearthkit submits: a pyproject.toml naming this module's apps, carrying no code."""
    app = folder / APP / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text("\n".join([
        "[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", 'name = "hearthkit-secagg"', 'version = "1.0.0"',
        'description = "hearthkit federation with SecAgg+ (generated)"', 'license = "Apache-2.0"',
        "dependencies = []", "",
        "[tool.flwr.app]", 'publisher = "hearthkit"', "",
        "[tool.flwr.app.components]", f'serverapp = "{__name__}:server_app"', f'clientapp = "{__name__}:client_app"',
        "", "[tool.flwr.app.config]", f"folder = {json.dumps(str(folder.resolve()))}", ""]), encoding="utf-8")
    return app


def _bin(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if not exe.is_file():
        raise HearthError(f"{name} not found beside {sys.executable}; secure aggregation needs Flower's deployment "
                          "engine (pip install flwr)")
    return str(exe)


def _wait_port(host: str, port: int, proc: subprocess.Popen, log: Path, seconds: float = 600) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
            raise HearthError(f"the SuperLink exited ({proc.returncode}): {' '.join(tail)}; log: {log}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise HearthError(f"the SuperLink did not listen on {host}:{port} within {seconds:g} s; log: {log}")


def _env(home: Path) -> dict:
    """The environment of Flower's processes: its home here, and its binaries (they start each other by name)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "FLWR_HOME": str(home), "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}


def _exit_on_term() -> None:
    """SIGTERM ends this process through its `finally` blocks, so the Flower processes it started end with it."""
    try:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    except ValueError:  # not the main thread: whoever runs us handles signals
        pass


def _stop(proc: subprocess.Popen) -> None:
    """End PROC (started here); Flower's helper processes watch their parent and end with it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tls_folder(cfg: FederationConfig, folder: Path) -> Path:
    return Path(cfg.tls.folder) if cfg.tls.folder else folder / "tls"


def run(cfg: FederationConfig, folder: Path, say) -> Lineage:
    """Run (or resume) the federation's rounds under SecAgg+: a SuperLink on cfg.address, the app submitted with
    `flwr run`, the sites' SuperNodes doing the rest; then the global model and its card."""
    from hearthkit.federate.coordinator import _check_address, certificates, open_folder

    folder = folder.resolve()
    done = open_folder(cfg, folder)
    if done < 0:
        names, current = initial_weights(cfg)
        weights.save(checkpoint_path(folder, 0), names, current)
        done = 0
    elif done > 0:
        say(f"resuming after round {done} from {checkpoint_path(folder, done)}")
    if done < cfg.rounds:
        _check_address(cfg.address)
        host, _, port = cfg.address.rpartition(":")
        home = folder / APP / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        env = _env(home)
        log = folder / APP / "superlink.log"
        cmd = [_bin("flower-superlink"), "--host", host.strip("[]") or "0.0.0.0", "--port", port,
               "--database", str(folder / APP / "superlink.db"), "--disable-runtime-dependency-installation"]
        conn = [f'address = "127.0.0.1:{port}"']
        if certificates(cfg, folder, say) is None:  # warns when insecure; makes the CA when missing
            cmd.append("--insecure")
            conn.append("insecure = true")
        else:
            where = _tls_folder(cfg, folder)
            cmd += ["--ssl-certfile", str(where / tls.CERT), "--ssl-keyfile", str(where / tls.KEY),
                    "--ssl-ca-certfile", str(where / tls.CA)]
            conn.append(f"root-certificates = {json.dumps(str(where / tls.CA))}")
        (home / "config.toml").write_text("\n".join(["[superlink]", 'default = "hearth"', "",
                                                     "[superlink.hearth]", *conn, ""]), encoding="utf-8")
        s = settings(cfg)
        say(f"secure aggregation: SecAgg+ ({s['num_shares']} shares, threshold {s['reconstruction_threshold']}); "
            f"SuperLink on {cfg.address}, log {log}")
        _exit_on_term()
        with log.open("ab") as out:
            link = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_port("127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host.strip("[]"), int(port), link, log)
            _submit(write_app(folder), env, folder / APP / "run.log", say)
        finally:
            _stop(link)
    lineage = Lineage.load(folder, cfg.name)
    if last_round(folder) < cfg.rounds:
        raise HearthError(f"the SecAgg+ run ended after round {last_round(folder)} of {cfg.rounds}; see "
                          f"{folder / APP / 'run.log'} and {folder / APP / 'superlink.log'}; run the coordinator "
                          "again to resume")
    publish(cfg, folder, lineage, say)
    with (folder / "model" / "model_card.md").open("a", encoding="utf-8") as f:
        f.write("\n" + card_section(cfg))
    return lineage


def _submit(app: Path, env: dict, log: Path, say) -> None:
    """`flwr run APP` against the SuperLink, its stream logged and the coordinator's own lines shown."""
    with log.open("a", encoding="utf-8") as out:
        proc = subprocess.Popen([_bin("flwr"), "run", str(app), "hearth", "--stream"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if SAY in line:
                    say(line.split(SAY, 1)[1].rstrip())
            proc.wait()
        finally:
            _stop(proc)
    if proc.returncode != 0:
        raise HearthError(f"`flwr run` of the federation's app failed ({proc.returncode}); see {log}")


def join(ws_root: Path, site_config: Path, site: SiteConfig, say, max_wait_s: float = 60) -> int:
    """Serve the federation's SecAgg+ rounds from this workspace through a SuperNode, until the coordinator's
    SuperLink has been gone for MAX_WAIT_S; the SuperNode's exit status."""
    home = ws_root / "federation" / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    node = f"workspace={json.dumps(str(ws_root.resolve()))} site-config={json.dumps(str(site_config.resolve()))}"
    cmd = [_bin("flower-supernode"), "--superlink", site.coordinator, "--port", str(port), "--node-config", node,
           "--max-wait-time", str(max_wait_s)]
    if site.insecure:
        say("warning: insecure: true — no TLS and unsigned reports; the weights still leave only masked")
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(site.ca)]
    _exit_on_term()
    proc = subprocess.Popen(cmd, env=_env(home))
    try:
        return proc.wait()
    finally:
        _stop(proc)

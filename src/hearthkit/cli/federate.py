"""`hearth federate coordinator|join`: federated training on Flower, each site under its own governance."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli.common import WorkspaceOpt, console, open_catalog, user_errors

federate_app = typer.Typer(help="Federated training across communities (Flower): each site keeps its data and "
                                "sends only weight updates.\n\nExample: hearth federate coordinator fed.yaml",
                           no_args_is_help=True)


def _say(msg: str) -> None:
    console.print(msg, highlight=False, markup=False)


@federate_app.command("coordinator", help="Run the coordinator of a federation: Flower's server with the config's "
                      "strategy; resumes after the last checkpointed round.\n\n"
                      "Example: hearth federate coordinator fed.yaml --folder federations/fed")
@user_errors
def coordinator(config: Annotated[Path, typer.Argument(help="Coordinator config (YAML).")],
                folder: Annotated[Path | None, typer.Option(help="Where the global model, its checkpoints and "
                                                                  "lineage go (default: federations/NAME).")] = None
                ) -> None:
    """Run the coordinator of the federation in CONFIG."""
    from hearthkit.federate import coordinator as coord
    from hearthkit.federate.config import load_federation

    cfg = load_federation(config)
    out = folder or Path("federations") / cfg.name
    _say(f"federation {cfg.name}: {cfg.rounds} rounds, {cfg.strategy.kind}, sites "
         f"{', '.join(s.name for s in cfg.sites)}; listening on {cfg.address}")
    if cfg.secure_aggregation.enabled:  # SecAgg+ runs on Flower's deployment engine (SuperLink/SuperNodes)
        from hearthkit.federate import secagg

        lineage = secagg.run(cfg, out, _say)
    else:
        lineage = coord.run(cfg, out, _say)
    _say(f"{len(lineage.contributions)} contributions over {len(lineage.rounds)} rounds; card: "
         f"{out / 'model' / 'model_card.md'}")


@federate_app.command("join", help="Join a federation as a site: every round this workspace's own manifest, "
                      "approved by its own stewards, is trained on locally and only the weights are sent.\n\n"
                      "Example: hearth federate join site.yaml --workspace ws")
@user_errors
def join(config: Annotated[Path, typer.Argument(help="Site config (YAML).")],
         wait: Annotated[float, typer.Option(help="Seconds to keep trying to reach the coordinator.")] = 60,
         workspace: WorkspaceOpt = None) -> None:
    """Serve the coordinator's rounds from this workspace until the federation ends."""
    from hearthkit.federate.config import load_site
    from hearthkit.federate.site import join as join_site

    site = load_site(config)
    ws, catalog = open_catalog(workspace)
    _say(f"site {site.site} ({ws.root}) joining {site.coordinator}")
    if site.secure_aggregation:  # a SuperNode serves the coordinator's SecAgg+ rounds from this workspace
        from hearthkit.errors import HearthError
        from hearthkit.federate import secagg

        catalog.close()
        code = secagg.join(ws.root, config, site, _say, max_wait_s=wait)
        if code not in (0, -signal.SIGTERM):
            raise HearthError(f"the SuperNode stopped with exit status {code} (its output above)")
    else:
        join_site(ws, catalog, site, _say, max_wait_s=wait)
    _say("the coordinator ended the federation")


@federate_app.command("init-tls", help="Make the coordinator's TLS certificate authority and server certificate "
                      "(ca.pem, server.pem, server.key; ca.key kept beside them). Give each site ca.pem; point the "
                      "coordinator config's tls.folder here.\n\n"
                      "Example: hearth federate init-tls federations/fed/tls --host coordinator.example.org")
@user_errors
def init_tls(folder: Annotated[Path, typer.Argument(help="Folder to write (must not hold a certificate yet).")],
             host: Annotated[list[str] | None, typer.Option(help="A name or IP address sites dial (repeatable); "
                                                                 "localhost and 127.0.0.1 are always included.")]
             = None) -> None:
    """Write a new CA and server certificate into FOLDER."""
    from hearthkit.federate.tls import make_tls

    ca = make_tls(folder, host or [])
    _say(f"TLS certificate authority and server certificate in {folder}; give each site {ca} (its config's ca:)")


@federate_app.command("site-key", help="Print this workspace's public update-signing key (made on first use, kept "
                      "in the workspace's key folder): list it as the site's public_key in the coordinator config."
                      "\n\nExample: hearth federate site-key --workspace ws")
@user_errors
def site_key(workspace: WorkspaceOpt = None) -> None:
    """Print the site's public signing key."""
    from hearthkit.federate.signing import public_key_text
    from hearthkit.federate.signing import site_key as key_of
    from hearthkit.workspace import find_workspace

    ws = find_workspace(workspace)
    print(public_key_text(key_of(ws.keys_dir)))

"""`hearth serve`: the steward and community web app and its JSON API, with uvicorn."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli.common import WorkspaceOpt, console, user_errors
from hearthkit.errors import HearthError

EXAMPLE = ("\n\nExample: hearth serve --workspace demo-workspace   (then open http://127.0.0.1:8080)"
           "\n\nOn a network: hearth serve --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem")


def is_loopback(host: str) -> bool:
    """Whether HOST only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_listen(host: str, tls_cert: Path | None, tls_key: Path | None, behind_proxy: bool) -> None:
    """Refuse a non-loopback address without TLS or an explicit --behind-proxy; TLS needs both files."""
    if (tls_cert is None) != (tls_key is None):
        raise HearthError("TLS needs both --tls-cert and --tls-key")
    for f in (tls_cert, tls_key):
        if f is not None and not f.is_file():
            raise HearthError(f"{f}: no such file (--tls-cert/--tls-key)")
    if not is_loopback(host) and tls_cert is None and not behind_proxy:
        raise HearthError(f"refusing to listen on {host} without TLS: passwords and sessions would cross the network "
                          "in the clear; pass --tls-cert and --tls-key, or --behind-proxy when a TLS proxy "
                          "forwards to this address")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (each loads models once).")] = 1,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM), with --tls-key.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM), with --tls-cert.")] = None,
    behind_proxy: Annotated[bool, typer.Option("--behind-proxy", help="A TLS proxy forwards to this address: "
                                                                      "trust its X-Forwarded-Proto.")] = False,
    secret_file: Annotated[Path | None, typer.Option(help="File with the key that signs cookies (default: "
                                                          "web-secret in the community key folder, made on first "
                                                          "start).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start the web app and the JSON API (/api/v1, OpenAPI at /api/docs) over the workspace's catalog and store."""
    import uvicorn

    from hearthkit.web.app import create_app, load_secret
    from hearthkit.workspace import find_workspace

    check_listen(host, tls_cert, tls_key, behind_proxy)
    ws = find_workspace(workspace)
    secret = load_secret(ws, secret_file)  # made (or its problem reported) before any worker starts
    ssl = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)} if tls_cert else {}
    scheme = "https" if tls_cert else "http"
    console.print(f"hearthkit web app on {scheme}://{host}:{port}  (workspace {ws.root}; catalog "
                  f"{ws.db_url.split('://')[0]})", highlight=False)
    common = {"host": host, "port": port, "proxy_headers": behind_proxy, "log_level": "info", **ssl}
    if workers == 1:
        uvicorn.run(create_app(ws, secret=secret, behind_proxy=behind_proxy), **common)
        return
    # Several processes: each builds its app from the environment (app.factory).
    os.environ["HEARTH_WORKSPACE"] = str(ws.root)
    if secret_file:
        os.environ["HEARTH_WEB_SECRET_FILE"] = str(secret_file.resolve())
    os.environ["HEARTH_BEHIND_PROXY"] = "1" if behind_proxy else "0"
    uvicorn.run("hearthkit.web.app:factory", factory=True, workers=workers, **common)


serve_cmd = user_errors(serve)

"""Shared CLI pieces: the console, workspace lookup, one-line user errors."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from hearthkit.errors import HearthError

console = Console()
err_console = Console(stderr=True)

# Every command that uses a model says for what and for whom: the model's lineage decides (lineage/guard.py).
PurposeOpt = Annotated[str, typer.Option(help="What the output is for (community_use, research, commercial, …); "
                                              "refused where the model's status or inherited labels forbid it.")]
RequesterOpt = Annotated[str | None, typer.Option(help="Who asks (checked against the model's protocols).")]
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace folder (default: $HEARTH_WORKSPACE, else the current folder).",
                 show_default=False),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout and nothing else "
                                                      "(errors still go to stderr).")]


def print_json(data: Any) -> None:
    """DATA as JSON on stdout, for scripts: nothing else of the command goes to stdout."""
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


def table(*headers: str) -> Table:
    """A rich table that never cuts a cell short: on a narrow terminal a long id folds onto the next line.

    Rich's default ends a cell that does not fit with '…', which loses the end of a run, model or job id; keeping
    ids on one line instead (no_wrap) makes rich crop them, or the columns after them, without a mark.
    """
    return Table(*(Column(h, overflow="fold") for h in headers))


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a HearthError into one red line on stderr and exit code 2, no traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HearthError as exc:
            # The message is text, not markup: a value such as [es-zz] or [/] must print as the user wrote it.
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    return wrapper


def open_catalog(workspace: Path | None):
    """The workspace and its catalog, found from --workspace, $HEARTH_WORKSPACE or the current folder."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.workspace import find_workspace

    ws = find_workspace(workspace)
    return ws, open_workspace_catalog(ws)  # bound to the workspace: its key folder anchors the audit log

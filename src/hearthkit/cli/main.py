"""`hearth`: import archives under consent, train under policy, evaluate per group, trace to the data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli import data as data_cmds
from hearthkit.cli import evaluate as eval_cmds
from hearthkit.cli import train as train_cmds
from hearthkit.cli import transcribe as transcribe_cmds
from hearthkit.cli.common import console, user_errors

app = typer.Typer(
    help="hearthkit: train models for a community, with the community in control of its data.\n\n"
         "Example: hearth init ws && cd ws && hearth demo-data speech archive && hearth data import archive",
    no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False, add_completion=False,
)
app.add_typer(data_cmds.data_app, name="data")
app.add_typer(data_cmds.demo_app, name="demo-data")
app.command("plan", help=train_cmds.plan.__doc__ + train_cmds.PLAN_EXAMPLE)(train_cmds.plan)
app.command("train", help=train_cmds.train.__doc__ + train_cmds.TRAIN_EXAMPLE)(train_cmds.train)
app.command("models", help=train_cmds.models.__doc__ + "\n\nExample: hearth models")(train_cmds.models)
app.command("eval", help=eval_cmds.eval_.__doc__ + eval_cmds.EXAMPLE)(eval_cmds.eval_)
app.command("transcribe", help=transcribe_cmds.transcribe.__doc__ + transcribe_cmds.EXAMPLE)(
    transcribe_cmds.transcribe)


@app.command(help="Create a workspace: SQLite catalog, content-addressed store, hearth.yaml.\n\n"
                  "Example: hearth init my-archive-ws")
@user_errors
def init(directory: Annotated[Path, typer.Argument(help="Folder for the workspace.")] = Path(".")) -> None:
    """Create a workspace in DIRECTORY."""
    from hearthkit.workspace import init_workspace

    ws = init_workspace(directory)
    console.print(f"workspace ready: {ws.root}  (catalog {ws.db_url}, store {ws.store_dir})")


if __name__ == "__main__":
    app()

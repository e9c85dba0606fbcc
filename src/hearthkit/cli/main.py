"""`hearth`: import archives under consent, train under policy, evaluate per group, trace to the data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli import base as base_cmds
from hearthkit.cli import data as data_cmds
from hearthkit.cli import evaluate as eval_cmds
from hearthkit.cli import federate as federate_cmds
from hearthkit.cli import governance as gov_cmds
from hearthkit.cli import keys as keys_cmds
from hearthkit.cli import ledger as ledger_cmds
from hearthkit.cli import lineage as lineage_cmds
from hearthkit.cli import monitor as monitor_cmds
from hearthkit.cli import oralhistory as oral_cmds
from hearthkit.cli import search as search_cmds
from hearthkit.cli import serve as serve_cmds
from hearthkit.cli import submit as submit_cmds
from hearthkit.cli import train as train_cmds
from hearthkit.cli import transcribe as transcribe_cmds
from hearthkit.cli import use as use_cmds
from hearthkit.cli import users as users_cmds
from hearthkit.cli.common import console, user_errors

app = typer.Typer(
    help="hearthkit: train models for a community, with the community in control of its data.\n\n"
         "Example: hearth init ws && cd ws && hearth demo-data speech archive && hearth data import archive",
    no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False, add_completion=False,
)
app.add_typer(data_cmds.data_app, name="data")
app.add_typer(data_cmds.demo_app, name="demo-data")
app.add_typer(keys_cmds.keys_app, name="keys")
app.command("plan", help=train_cmds.plan.__doc__ + train_cmds.PLAN_EXAMPLE)(train_cmds.plan)
app.command("train", help=train_cmds.train.__doc__ + train_cmds.TRAIN_EXAMPLE)(train_cmds.train)
app.command("runs", help=train_cmds.runs.__doc__ + train_cmds.RUNS_EXAMPLE)(train_cmds.runs)
app.command("export", help=train_cmds.export.__doc__ + train_cmds.EXPORT_EXAMPLE)(train_cmds.export)
app.command("retrain", help=train_cmds.retrain.__doc__ + train_cmds.RETRAIN_EXAMPLE)(train_cmds.retrain)
app.command("new", help=train_cmds.new.__doc__ + train_cmds.NEW_EXAMPLE)(train_cmds.new)
app.command("schema", help=train_cmds.schema.__doc__ + train_cmds.SCHEMA_EXAMPLE)(train_cmds.schema)
app.add_typer(lineage_cmds.models_app, name="models")
app.add_typer(lineage_cmds.lineage_app, name="lineage")
app.add_typer(base_cmds.base_app, name="base")  # pretrained base models (issue 20)
app.add_typer(submit_cmds.submit_app, name="submit")
app.command("jobs", help=submit_cmds.jobs.__doc__ + "\n\nExample: hearth jobs")(submit_cmds.jobs)
# Stewardship (cli/governance.py): people, protocols, labels, consent, requests, approvals, audit.
data_cmds.data_app.command("show", help=gov_cmds.show.__doc__ + gov_cmds.SHOW_EXAMPLE)(gov_cmds.show)
data_cmds.data_app.command("embargo", help=gov_cmds.embargo.__doc__ + gov_cmds.EMBARGO_EXAMPLE)(gov_cmds.embargo)
app.add_typer(gov_cmds.people_app, name="people")
app.add_typer(gov_cmds.protocol_app, name="protocol")
app.add_typer(gov_cmds.labels_app, name="labels")
app.add_typer(gov_cmds.consent_app, name="consent")
app.add_typer(gov_cmds.audit_app, name="audit")
app.command("request", help=gov_cmds.request.__doc__ + gov_cmds.REQUEST_EXAMPLE)(gov_cmds.request)
app.command("approve", help=gov_cmds.approve.__doc__ + gov_cmds.APPROVE_EXAMPLE)(gov_cmds.approve)
app.command("deny", help=gov_cmds.deny.__doc__ + gov_cmds.DENY_EXAMPLE)(gov_cmds.deny)
app.command("monitor", help=monitor_cmds.monitor.__doc__ + monitor_cmds.MONITOR_EXAMPLE)(monitor_cmds.monitor)
app.command("translate", help=use_cmds.translate.__doc__ + "\n\nExample: hearth translate es-nah --to nah < input.txt"
                                        "\n\nSlower, usually better: hearth translate es-nah --to nah --mbr 32 "
                                        "--mbr-epsilon 0.02 < input.txt"
            )(use_cmds.translate)
app.command("generate", help=use_cmds.generate.__doc__ + "\n\nExample: hearth generate nah-lm --prompt 'In '"
            )(use_cmds.generate)
app.command("eval", help=eval_cmds.eval_.__doc__ + eval_cmds.EXAMPLE)(eval_cmds.eval_)
app.command("transcribe", help=transcribe_cmds.transcribe.__doc__ + transcribe_cmds.EXAMPLE)(
    transcribe_cmds.transcribe)
# Spoken-term search (cli/search.py).
app.command("search-index", help=search_cmds.search_index.__doc__ + search_cmds.INDEX_EXAMPLE)(
    search_cmds.search_index)
app.command("search", help=search_cmds.search.__doc__ + search_cmds.SEARCH_EXAMPLE)(search_cmds.search)
app.command("oral-history", help=oral_cmds.oral_history.__doc__ + oral_cmds.EXAMPLE)(oral_cmds.oral_history)
# The web app (cli/serve.py) and its accounts (cli/users.py).
app.command("serve", help=serve_cmds.serve.__doc__ + serve_cmds.EXAMPLE)(serve_cmds.serve_cmd)
app.add_typer(users_cmds.users_app, name="users")
app.add_typer(federate_cmds.federate_app, name="federate")  # federated training on Flower (issue 23)
app.command("ledger", help=ledger_cmds.ledger.__doc__ + ledger_cmds.EXAMPLE)(ledger_cmds.ledger)


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

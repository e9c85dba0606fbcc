"""After a scheduled run trains: evaluate it per group and publish the model card (`python -m ... RUN_DIR`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def finish(run_dir: Path) -> Path:
    """Evaluate RUN_DIR's final model on its held-out items and publish it; return the card path."""
    from hearthkit.catalog.db import Catalog
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.lineage.publish import publish_model
    from hearthkit.workspace import open_workspace

    # The run folder lives at WORKSPACE/runs/NAME unless the job says otherwise.
    ws = open_workspace(Path(os.environ.get("HEARTH_WORKSPACE") or run_dir.resolve().parents[1]))
    catalog = Catalog.open(ws.db_url)
    try:
        evaluation = evaluate_run(run_dir)
        return publish_model(ws, catalog, run_dir, evaluation)
    finally:
        catalog.close()


def main() -> None:
    """Entry point of the generated batch scripts and container commands."""
    card = finish(Path(sys.argv[1]))
    print(f"model card: {card}", flush=True)


if __name__ == "__main__":
    main()

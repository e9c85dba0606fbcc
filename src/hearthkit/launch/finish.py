"""After a scheduled run trains: evaluate it per group and publish the model card (`python -m ... RUN_DIR`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def finish(run_dir: Path) -> Path:
    """Evaluate RUN_DIR's final model on its held-out items and publish it; return the card path."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.launch.pipeline import finish_run
    from hearthkit.workspace import open_workspace

    # The run folder lives at WORKSPACE/runs/NAME unless the job says otherwise.
    ws = open_workspace(Path(os.environ.get("HEARTH_WORKSPACE") or run_dir.resolve().parents[1]))
    catalog = open_workspace_catalog(ws)
    try:
        return finish_run(ws, catalog, run_dir).card
    finally:
        catalog.close()


def main() -> None:
    """Entry point of the generated batch scripts and container commands."""
    card = finish(Path(sys.argv[1]))
    print(f"model card: {card}", flush=True)


if __name__ == "__main__":
    main()

"""MLflow tracking from rank 0, on a background thread so the training loop never waits for it.

The store is the workspace's (`mlflow.db`, set by the launcher in MLFLOW_TRACKING_URI); a resumed run
continues the same MLflow run (its id is kept in the run folder).
"""

from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path
from typing import Any

RUN_ID_FILE = "mlflow_run_id"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1}} -> {'train.lr': 1}: MLflow params are flat."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class MlflowTracker:
    """Queue of records; a daemon thread imports mlflow and logs them to the run's MLflow run."""

    def __init__(self, run_dir: Path, name: str, params: dict, tags: dict[str, str]):
        self.run_dir, self.name, self.params, self.tags = run_dir, name, params, tags
        self.q: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._work, name="mlflow", daemon=True)
        self.thread.start()

    def log(self, rec: dict) -> None:
        """Queue one metrics record (numbers only are logged)."""
        self.q.put(rec)

    def close(self, status: str = "FINISHED", timeout: float = 60.0) -> None:
        """Flush what is queued and end the MLflow run (waits at most TIMEOUT seconds)."""
        self.q.put(("end", status))
        self.thread.join(timeout)
        if self.thread.is_alive():
            print(f"warning: MLflow did not finish within {timeout:.0f} s; metrics.jsonl in the run folder is complete",
                  file=sys.stderr, flush=True)

    def _work(self) -> None:
        try:
            import mlflow

            id_file = self.run_dir / RUN_ID_FILE
            run_id = id_file.read_text().strip() if id_file.is_file() else None
            mlflow.set_experiment("hearthkit")
            run = mlflow.start_run(run_id=run_id, run_name=None if run_id else self.name, tags=self.tags)
            if run_id is None:
                id_file.write_text(run.info.run_id)
                mlflow.log_params({k: str(v)[:500] for k, v in flatten(self.params).items()})
        except Exception as exc:  # tracking must never stop training; say why once
            print(f"warning: MLflow tracking is off: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            while True:  # drain so close() returns
                if isinstance(self.q.get(), tuple):
                    return
        while True:
            item = self.q.get()
            if isinstance(item, tuple):
                mlflow.end_run(status=item[1])
                return
            try:
                step = int(item["step"])
                mlflow.log_metrics({k: float(v) for k, v in item.items()
                                    if isinstance(v, int | float) and k not in ("step", "steps", "time")}, step=step)
            except Exception as exc:
                print(f"warning: MLflow logging failed: {exc}", file=sys.stderr, flush=True)

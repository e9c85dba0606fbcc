"""Long uses of a model run as jobs in a thread pool; the page or API polls the job id for progress."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from hearthkit.errors import HearthError


@dataclass
class Job:
    """One job: who started it, what it does, its progress and its result or one-line error."""

    id: str
    owner: int | None  # person id: only the person who started a job sees it
    kind: str
    status: str = "running"  # running | done | failed
    stage: str = "queued"
    done: float = 0.0
    total: float = 0.0
    result: dict | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict, repr=False)  # name -> (bytes, media type)
    future: Future | None = field(default=None, repr=False)

    def view(self) -> dict:
        """What the page and the API show."""
        return {"id": self.id, "kind": self.kind, "status": self.status, "stage": self.stage,
                "done": round(self.done, 1), "total": round(self.total, 1), "error": self.error,
                "result": self.result if self.status == "done" else None}


class Jobs:
    """Jobs of this worker, run on WORKERS threads; finished jobs are forgotten after KEEP_S seconds."""

    def __init__(self, workers: int = 2, keep_s: float = 3600.0):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hearth-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.keep_s = keep_s

    def start(self, owner: int | None, kind: str, work: Callable[[Job], dict]) -> Job:
        """Run WORK(job) in the pool; its dict is the result, a HearthError its one-line error."""
        job = Job(secrets.token_urlsafe(16), owner, kind)
        with self._lock:
            self._forget_old()
            self._jobs[job.id] = job

        def run() -> None:
            try:
                job.result = work(job)
                job.status = "done"
            except HearthError as exc:
                job.error, job.status = str(exc), "failed"
            except Exception as exc:  # noqa: BLE001 - a job never dies silently; the page shows one line
                job.error, job.status = f"the job failed: {type(exc).__name__}", "failed"

        job.future = self._pool.submit(run)
        return job

    def get(self, job_id: str, owner: int | None) -> Job | None:
        """The job JOB_ID if OWNER started it (else None: another person's job does not exist for you)."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def _forget_old(self) -> None:
        cutoff = time.time() - self.keep_s
        for k in [k for k, j in self._jobs.items() if j.status != "running" and j.started < cutoff]:
            del self._jobs[k]

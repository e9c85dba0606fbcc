"""Failure handling for workers: a log file per rank, a failure record, and test-only fault injection.

Every rank appends to `RUN/logs/rank{r}.log` (one line per step, checkpoint and error, each restart marked),
and on an exception writes `RUN/logs/failure-rank{r}.json`. The launcher reads both to say which rank failed,
on which host, and what it last did (see `diagnose`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

# Test-only fault injection, "RANK:STEP", honoured only in torchrun's first attempt (restart count 0) so the
# restarted group runs clean. KILL: the rank SIGKILLs itself after STEP. HANG: it stops answering after STEP.
# STOP: the rank asks the group to stop after STEP (what a preemption signal handler does).
KILL_ENV, HANG_ENV, STOP_ENV = "HEARTH_TEST_KILL", "HEARTH_TEST_HANG", "HEARTH_TEST_STOP"
# A collective that outlived launch.timeout_s (gloo: "Timed out waiting …ms"; NCCL watchdog: "Watchdog caught
# collective operation timeout"); not a refused connection at start-up.
TIMEOUT = re.compile(r"timed out waiting|operation timeout|timeout after|wait timeout", re.IGNORECASE)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this worker when its torchrun agent dies (Linux), so that killing a job's process
    group never leaves orphaned workers writing into the run folder."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the agent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def attempt() -> int:
    """torchrun's restart count of this worker group (0 on the first start)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


class RankLog:
    """Append-only, line-buffered log of one rank; survives restarts (each attempt is marked)."""

    def __init__(self, run_dir: Path, rank: int):
        self.folder = run_dir / "logs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.step = 0
        self.f = (self.folder / f"rank{rank}.log").open("a", buffering=1, encoding="utf-8")
        self.write(f"start attempt {attempt()} rank {rank} host {socket.gethostname()} pid {os.getpid()}")

    def write(self, msg: str) -> None:
        if self.f.closed:
            self.f = (self.folder / f"rank{self.rank}.log").open("a", buffering=1, encoding="utf-8")
        self.f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    def close(self) -> None:
        self.f.close()

    def failure(self, exc: BaseException) -> None:
        """Record EXC: traceback into the log, a small JSON record beside it for the launcher."""
        self.write("error: " + "".join(traceback.format_exception(exc)).rstrip())
        rec = {"rank": self.rank, "host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt(),
               "step": self.step, "error": f"{type(exc).__name__}: {exc}".strip(), "time": time.time(),
               "timeout": bool(TIMEOUT.search(str(exc)))}
        write_atomic(self.folder / f"failure-rank{self.rank}.json", json.dumps(rec))


def write_atomic(path: Path, text: str) -> None:
    """Write PATH whole or not at all (a rank killed mid-write leaves no half file for a reader to choke on)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class AtomicErrorHandler(ErrorHandler):
    """torchrun's per-rank error file, written atomically: the agent reads the error file of every failed rank, and
    a rank killed while writing it left half a JSON document that crashed the agent (and with it any restart)."""

    def _write_error_file(self, file_path: str, error_msg: str) -> None:
        try:
            write_atomic(Path(file_path), error_msg)
        except Exception as exc:  # as torch's own handler: a failure to report must not hide the failure itself
            print(f"unable to write error to file {file_path}: {exc}", file=sys.stderr, flush=True)


def _records(logs: Path) -> list[dict]:
    """The failure records under LOGS; one that cannot be read whole (an older half-written file) is skipped."""
    out = []
    for p in sorted(logs.glob("failure-rank*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(rec, dict) and {"rank", "host", "step", "error", "time", "timeout"} <= rec.keys():
                out.append(rec)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
    return out


def _matches(env: str, rank: int, step: int) -> bool:
    spec = os.environ.get(env)
    return bool(spec) and attempt() == 0 and spec == f"{rank}:{step}"


def inject(rank: int, step: int, log: RankLog) -> bool:
    """Apply a test-only fault after STEP on RANK; return True when the rank asks the group to stop."""
    if _matches(KILL_ENV, rank, step):
        log.write(f"test fault: SIGKILL after step {step}")
        os.kill(os.getpid(), signal.SIGKILL)
    if _matches(HANG_ENV, rank, step):
        log.write(f"test fault: hanging after step {step}")
        while True:  # a stuck peer: alive, silent, never joins the next collective
            time.sleep(3600)
    return _matches(STOP_ENV, rank, step)


def last_lines(path: Path, n: int = 8) -> list[str]:
    """The last N lines of PATH (empty when it does not exist)."""
    if not path.is_file():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]


def last_step(path: Path) -> int | None:
    """The last step a rank log reports done in its latest attempt (None: none yet)."""
    if not path.is_file():
        return None
    for line in reversed(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        if m := re.search(r" step (\d+) done$", line):
            return int(m.group(1))
        if " start attempt " in line:
            return None
    return None


def log_host(path: Path) -> str | None:
    """The host a rank log says it started on, from its latest "start attempt" line."""
    for line in reversed(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        if m := re.search(r" start attempt \d+ rank \d+ host (\S+)", line):
            return m.group(1)
    return None


_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_ROOT_HOST = re.compile(r"^\s*host\s*:\s*(\S+)")
_ROOT_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")


def torchrun_failures(output: Iterable[str]) -> list[dict]:
    """Failed ranks from torchrun's closing report (rank, host, exit code), in its order."""
    found: list[dict] = []
    for line in output:
        if m := _ROOT_HOST.match(line):
            found.append({"host": m.group(1)})
        elif (m := _ROOT_RANK.match(line)) and found:
            found[-1]["rank"] = int(m.group(1))
        elif (m := _ROOT_EXIT.match(line)) and found:
            found[-1]["exitcode"] = int(m.group(1))
    return [f for f in found if "rank" in f]


def diagnose(run_dir: Path, since: float, output: Iterable[str], timeout_s: int) -> tuple[str, list[str]]:
    """One-line cause of a failed launch and the log lines that show it (failing rank's, then the rest)."""
    logs = run_dir / "logs"
    records = [rec for rec in _records(logs) if rec["time"] >= since]
    records.sort(key=lambda r: r["time"])
    reported = torchrun_failures(output)
    rank_logs = {int(p.stem[4:]): p for p in logs.glob("rank*.log")}
    tails = {r: last_lines(p) for r, p in rank_logs.items()}
    steps = {r: last_step(p) for r, p in rank_logs.items()}
    # Host: the worker's own word (its log, its record) over torchrun's report, which may say "localhost".
    host_of = {f["rank"]: f["host"] for f in reported} | {r: h for r, p in rank_logs.items() if (h := log_host(p))}
    host_of |= {r["rank"]: r["host"] for r in records}

    culprit, cause = None, ""
    errored = {r["rank"] for r in records}
    if records and records[0]["timeout"]:
        # A collective timed out: the peer to blame is the one that stopped making progress.
        first = records[0]
        behind = [r for r, s in steps.items() if r not in errored and s is not None
                  and s < (first["step"] or 0)] or [r for r in steps if r not in errored]
        culprit = behind[0] if behind else first["rank"]
        cause = (f"stopped responding after step {steps.get(culprit)}; rank {first['rank']} gave up waiting for it "
                 f"after the {timeout_s} s collective timeout (launch.timeout_s)")
    else:
        killed = [f for f in reported if f.get("exitcode", 1) < 0 and f["rank"] not in errored]
        if killed:
            culprit = killed[0]["rank"]
            sig = -killed[0]["exitcode"]
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            cause = f"was killed by signal {name} after step {steps.get(culprit)}"
        elif records:
            culprit, cause = records[0]["rank"], records[0]["error"]
        elif reported:
            culprit = reported[0]["rank"]
            cause = f"exited with code {reported[0].get('exitcode')}"
    if culprit is None:
        return "a worker failed (no rank left a record); see the output above", []
    host = host_of.get(culprit, "?")
    lines = [f"--- last lines of rank {culprit} ({logs / f'rank{culprit}.log'}) ---", *tails.get(culprit, [])]
    for rec in records:
        if rec["rank"] != culprit:
            lines.append(f"--- rank {rec['rank']} on {rec['host']} failed after step {rec['step']}: {rec['error']}")
    return f"rank {culprit} on host {host} {cause}", lines

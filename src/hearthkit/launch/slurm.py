"""SLURM: a readable sbatch script (`srun torchrun`, c10d on the first node, requeue on USR1), submitted with sbatch.

Lifecycle of a job: sbatch runs the script on the first node; srun starts one torchrun per node; torchrun starts the
workers. Before the time limit SLURM sends USR1 to the batch shell (`--signal=B:USR1@LEAD`); the shell's trap
forwards it to the srun step, torchrun passes it to the workers (`--signals-to-handle`), the workers agree on a step,
write a checkpoint and exit (engine/preempt.py); the script then runs `scontrol requeue`, and the requeued job
resumes from that checkpoint. When training completes, the script evaluates the run and writes its model card.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError
from hearthkit.launch.multinode import nproc_per_node

JOBS_FILE = "jobs.jsonl"  # one line per submission, in the run folder (no catalog schema change)
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class SlurmJobSpec:
    """What to ask SLURM for; None leaves the cluster's default."""

    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    time: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    signal_lead_s: int = 300


def time_limit_seconds(text: str) -> int:
    """SLURM's --time forms (MIN, MIN:SEC, H:M:S, D-H, D-H:M, D-H:M:S) -> seconds, or a one-line error."""
    m = _TIME.match(text.strip())
    if not m:
        raise HearthError(f"--time {text!r}: use a SLURM time, e.g. 90 (minutes), 02:00:00 or 1-12:00:00")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-H[:M[:S]]
        return days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if c is not None:  # H:M:S
        return a * 3600 + b * 60 + c
    if b is not None:  # M:S
        return a * 60 + b
    return a * 60  # minutes


def check_time(spec: SlurmJobSpec) -> int:
    """The time limit in seconds, after checking that the checkpoint signal comes before it."""
    limit = time_limit_seconds(spec.time)
    if spec.signal_lead_s >= limit:
        raise HearthError(f"--signal-lead {spec.signal_lead_s}s is not shorter than --time {spec.time}; "
                          "the checkpoint signal must come before the time limit")
    return limit


def render_sbatch(run_dir: Path, workspace: Path, cfg: RunConfig, spec: SlurmJobSpec,
                  python: str = sys.executable) -> str:
    """The batch script for RUN_DIR: plain bash a person can read, edit and resubmit."""
    check_time(spec)
    nproc = nproc_per_node(cfg, spec)
    log_dir = run_dir / "slurm"
    q = shlex.quote
    sb = [f"#SBATCH --job-name=hearth-{cfg.name}",
          f"#SBATCH --nodes={spec.nodes}",
          "#SBATCH --ntasks-per-node=1            # one torchrun per node; it starts the workers",
          f"#SBATCH --time={spec.time}"]
    if spec.gpus_per_node:
        sb.append(f"#SBATCH --gpus-per-node={spec.gpus_per_node}")
    if spec.cpus_per_task:
        sb.append(f"#SBATCH --cpus-per-task={spec.cpus_per_task}")
    for key in ("partition", "account", "qos"):
        if getattr(spec, key):
            sb.append(f"#SBATCH --{key}={getattr(spec, key)}")
    sb += [f"#SBATCH --output={log_dir}/job-%j.out",
           "#SBATCH --open-mode=append             # a requeued job appends to the same log",
           "#SBATCH --requeue",
           f"#SBATCH --signal=B:USR1@{spec.signal_lead_s}       # USR1 to this script {spec.signal_lead_s}s "
           "before the limit",
           f"#SBATCH --chdir={workspace}"]
    # Leave the workers most of the lead time to finish their step and write the checkpoint.
    shutdown_s = max(30, spec.signal_lead_s - 30)
    cpus = '${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK}'
    body = f"""#!/bin/bash
# hearth run {cfg.name!r}: written by `hearth submit slurm` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.
# Readable on purpose: edit it and resubmit with `sbatch {log_dir / (cfg.name + '.sbatch')}`.
{chr(10).join(sb)}
set -uo pipefail

RUN_DIR={q(str(run_dir))}
PYTHON={q(python)}
NPROC_PER_NODE={nproc}
RDZV_PORT=$((29500 + SLURM_JOB_ID % 1000))   # per job, so two jobs sharing a node do not collide
export HEARTH_WORKSPACE={q(str(workspace))}
export HEARTH_PREEMPT_SIGNAL=SIGUSR1          # the workers checkpoint and exit on USR1
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={shutdown_s}    # torchrun waits this long for that before killing them
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS={cfg.launch.threads_per_worker}

# Rendezvous on the first allocated node, resolved to an address here: never localhost by accident.
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
HEAD_ADDR=$(getent ahostsv4 "$HEAD_NODE" | awk 'NR == 1 {{print $1}}')
if [ -z "$HEAD_ADDR" ]; then
  echo "error: the first node $HEAD_NODE does not resolve to an IPv4 address" >&2
  exit 2
fi
echo "job $SLURM_JOB_ID (restart ${{SLURM_RESTART_COUNT:-0}}) on $SLURM_JOB_NODELIST: $SLURM_JOB_NUM_NODES node(s) x \\
$NPROC_PER_NODE worker(s), rendezvous $HEAD_NODE -> $HEAD_ADDR:$RDZV_PORT"

preempted=0
srun_pid=""
on_usr1() {{
  echo "USR1: the time limit is near; the workers checkpoint, then the job requeues itself"
  preempted=1
  kill -USR1 "$srun_pid" 2>/dev/null   # srun passes it to torchrun on every node
}}
trap on_usr1 USR1

# One torchrun per node. Node 0 hosts the rendezvous store, said explicitly (is_host) rather than guessed from
# hostnames; torchrun passes USR1 on to its workers.
export RUN_DIR PYTHON NPROC_PER_NODE RDZV_PORT HEAD_ADDR
srun {cpus} bash -c '
  IS_HOST=0; [ "$SLURM_NODEID" = 0 ] && IS_HOST=1
  exec "$PYTHON" -m torch.distributed.run \\
    --nnodes="$SLURM_JOB_NUM_NODES" --node-rank="$SLURM_NODEID" --nproc-per-node="$NPROC_PER_NODE" \\
    --rdzv-backend=c10d --rdzv-endpoint="$HEAD_ADDR:$RDZV_PORT" --rdzv-id="$SLURM_JOB_ID" \\
    --rdzv-conf=is_host=$IS_HOST --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \\
    -m hearthkit.engine.trainer "$RUN_DIR"' &
srun_pid=$!
# A trapped signal ends `wait` early: wait again until srun has really finished.
wait "$srun_pid"; rc=$?
while kill -0 "$srun_pid" 2>/dev/null; do wait "$srun_pid"; rc=$?; done

if [ "$rc" -ne 0 ] && [ "$preempted" = 1 ]; then
  echo "requeueing job $SLURM_JOB_ID; it resumes from the last checkpoint"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
if [ "$rc" -ne 0 ]; then
  echo "training failed (srun exit $rc); resubmit this script to resume from the last checkpoint" >&2
  exit "$rc"
fi
"$PYTHON" -m hearthkit.launch.finish "$RUN_DIR"
"""
    return body


def write_script(run_dir: Path, cfg: RunConfig, text: str) -> Path:
    """Write the batch script into the run folder; return its path."""
    path = run_dir / "slurm" / f"{cfg.name}.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def sbatch(script: Path) -> str:
    """Submit SCRIPT; return the job id, or a one-line error."""
    if shutil.which("sbatch") is None:
        raise HearthError("sbatch not found: run `hearth submit slurm` on the cluster's login node "
                          "(or pass --no-submit to only write the script)")
    proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise HearthError(f"sbatch refused {script}: {reason}")
    return proc.stdout.strip().split(";")[0]  # --parsable prints "jobid[;cluster]"


def record_job(run_dir: Path, record: dict) -> None:
    """Append a submission record to the run folder's jobs.jsonl."""
    with (run_dir / JOBS_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


def slurm_record(job_id: str, script: Path, spec: SlurmJobSpec) -> dict:
    """The record kept with the run for one sbatch submission."""
    return {"scheduler": "slurm", "job_id": job_id, "script": str(script),
            "submitted_at": datetime.now(UTC).isoformat(timespec="seconds"), **asdict(spec)}


def job_records(runs_dir: Path) -> list[tuple[str, dict]]:
    """(run name, record) for every submission of every run, oldest first per run."""
    out = []
    for jobs in sorted(runs_dir.glob(f"*/{JOBS_FILE}")):
        for line in jobs.read_text().splitlines():
            if line.strip():
                out.append((jobs.parent.name, json.loads(line)))
    return out


def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def job_state(job_id: str) -> dict:
    """State, restarts and reason of JOB_ID from scontrol (live and recent jobs), then squeue, then sacct."""
    info = {"state": "unknown", "restarts": None, "reason": ""}
    shown = _run(["scontrol", "show", "job", "--oneliner", job_id])
    if shown:
        fields = dict(kv.split("=", 1) for kv in shown.split() if "=" in kv)
        info.update(state=fields.get("JobState", "unknown"), restarts=int(fields.get("Restarts", 0)),
                    reason="" if fields.get("Reason") in (None, "None") else fields["Reason"])
        return info
    queued = _run(["squeue", "--noheader", "--jobs", job_id, "--format", "%T|%r"])
    if queued and queued.strip():
        state, reason = queued.strip().split("|", 1)
        info.update(state=state, reason=reason)
        return info
    acct = _run(["sacct", "--noheader", "--allocations", "--parsable2", "--jobs", job_id, "--format", "State"])
    if acct and acct.strip():
        info.update(state=acct.strip().splitlines()[0].split()[0])
    elif shutil.which("scontrol") is None:
        info.update(state="unknown (no SLURM commands here)")
    else:
        info.update(state="unknown (no longer known to SLURM)")
    return info

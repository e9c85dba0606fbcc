"""A real one-node SLURM cluster (munge, slurmctld, slurmd from Debian's slurm-wlm, as root, no cgroups).

`hearth submit slurm` writes and submits the batch script; job A trains to the end; job B gets USR1 (as SLURM sends
before a time limit), checkpoints, requeues itself with `scontrol requeue`, resumes, and ends with A's weights.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import hearth
from tests.launch.launch_helpers import COMMUNITY, assert_same_weights, final_weights, imported_workspace, tiny_config

pytestmark = pytest.mark.slow
TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "scancel")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else "(no log)"


SLURM_CONF = """\
ClusterName=hearthtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
# No cgroups here: track processes by their parent chain, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=localhost CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """Start munged, slurmctld and slurmd on this machine; yield the environment that points at them."""
    missing = [b for b in TOOLS if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM/munge not installed ({', '.join(missing)}); `make test` installs slurm-wlm and munge")
    if os.geteuid() != 0:
        pytest.skip("the one-node SLURM cluster runs its daemons as root; not root here")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool"):
        (d / sub).mkdir()
    os.chmod(d, 0o755)
    os.chmod(d / "munge", 0o755)  # munge refuses a socket folder others can write to
    conf = d / "slurm.conf"
    conf.write_text(SLURM_CONF.format(d=d, ctld_port=_free_port(), d_port=_free_port()))
    env = dict(os.environ, SLURM_CONF=str(conf))
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run(["mungekey", "--create", f"--keyfile={d}/munge/munge.key"], check=True, capture_output=True)
        os.chmod(d / "munge" / "munge.key", 0o600)
        logs = {name: (d / f"{name}.out").open("w") for name in ("munged", "slurmctld", "slurmd")}
        commands = {
            "munged": ["munged", "--foreground", "--force", f"--socket={d}/munge/munge.sock",
                       f"--key-file={d}/munge/munge.key", f"--pid-file={d}/munge/munged.pid",
                       f"--seed-file={d}/munge/munged.seed"],
            "slurmctld": ["slurmctld", "-D", "-i", "-f", str(conf)],
            "slurmd": ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
        }
        for name, cmd in commands.items():
            procs.append(subprocess.Popen(cmd, stdout=logs[name], stderr=subprocess.STDOUT, env=env))
            time.sleep(0.5 if name == "munged" else 0)
        deadline = time.monotonic() + 45
        state = ""
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, env=env)
            state = out.stdout.strip()
            if state == "idle":
                break
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.5)
        if state != "idle":
            why = "; ".join(f"{n}: {_tail(d / f'{n}.out')} {_tail(d / f'{n}.log')}" for n in commands)
            pytest.skip(f"the SLURM daemons did not come up (node state {state!r}): {why}")
        yield env
    finally:
        if procs and procs[-1].poll() is None:
            # Jobs left running by a failed test would outlive slurmd (their slurmstepd stays): cancel them in
            # this test cluster (SLURM_CONF points only at it) and give them a moment to end.
            subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=30)
            for _ in range(30):
                left = subprocess.run(["squeue", "--noheader"], env=env, capture_output=True, text=True, timeout=30)
                if not left.stdout.strip():
                    break
                time.sleep(0.5)
        for p in reversed(procs):  # only the daemons this fixture started
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def slurm_ws(tiny_speech_archive: Path, tmp_path_factory) -> Path:
    """One imported workspace for this module's runs (each test uses its own run names)."""
    return imported_workspace(tmp_path_factory.mktemp("slurm-ws") / "ws", tiny_speech_archive)


def _scontrol(env: dict, *args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, env=env, check=True).stdout


def job_fields(env: dict, job_id: str) -> dict:
    """`scontrol show job` as a dict (JobState, Restarts, Reason, ...)."""
    return dict(kv.split("=", 1) for kv in _scontrol(env, "show", "job", "--oneliner", job_id).split() if "=" in kv)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    """Poll PREDICATE until it returns something truthy, or fail naming WHAT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def submit(cfg: Path, ws: Path, env: dict) -> str:
    """`hearth submit slurm` as a user would run it; return the job id it reports."""
    out = hearth("submit", "slurm", str(cfg), "--time", "10", "--signal-lead", "60", "--cpus-per-task", "2",
                 ws=ws, env={"SLURM_CONF": env["SLURM_CONF"]}).stdout
    return re.search(r"submitted SLURM job (\d+)", out).group(1)


def test_submit_train_preempt_requeue_resume(slurm_cluster: dict, slurm_ws: Path, tmp_path: Path):
    env, ws = slurm_cluster, slurm_ws
    cfg_a = tiny_config(tmp_path, "slurm-a", steps=30, checkpoint_every=5)
    cfg_b = tiny_config(tmp_path, "slurm-b", steps=30, checkpoint_every=5)

    # A: submitted, trained to the end, evaluated, published.
    job_a = submit(cfg_a, ws, env)
    script = (ws / "runs" / "slurm-a" / "slurm" / "slurm-a.sbatch").read_text()
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@60", "srun ", "--rdzv-backend=c10d",
                 "--rdzv-conf=is_host=$IS_HOST", "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
                 'scontrol show hostnames "$SLURM_JOB_NODELIST"', 'scontrol requeue "$SLURM_JOB_ID"'):
        assert line in script
    wait_for(lambda: job_fields(env, job_a)["JobState"] in ("COMPLETED", "FAILED", "CANCELLED"), 120, "job A")
    log_a = (ws / "runs" / "slurm-a" / "slurm" / f"job-{job_a}.out").read_text()
    assert job_fields(env, job_a)["JobState"] == "COMPLETED", log_a
    assert "rendezvous localhost -> 127.0.0.1" in log_a and "model card:" in log_a
    assert (ws / "models" / "slurm-a" / "model_card.md").is_file()
    assert f'"job_id": "{job_a}"' in (ws / "runs" / "slurm-a" / "jobs.jsonl").read_text()

    # B: USR1 to the batch shell after its first checkpoint -> checkpoint, requeue, resume.
    job_b = submit(cfg_b, ws, env)
    ckpts = ws / "runs" / "slurm-b" / "checkpoints"
    wait_for(lambda: (ckpts / "step_00000005").is_dir(), 90, "job B's first checkpoint", poll=0.1)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_b], check=True, env=env)
    wait_for(lambda: int(job_fields(env, job_b)["Restarts"]) >= 1, 60, "job B to requeue itself")
    # slurmctld holds a requeued batch job for 120 s before it is eligible again; release it now so the test
    # stays short. The requeue itself, and the resume from the checkpoint, are SLURM's and the trainer's own.
    # slurmd refuses a job credential created in the same second its old one was revoked ("Job credential
    # revoked", whole-second timestamps), so the release waits past that second.
    time.sleep(2)
    _scontrol(env, "update", f"JobId={job_b}", "StartTime=now")
    wait_for(lambda: job_fields(env, job_b)["JobState"] in ("COMPLETED", "FAILED", "CANCELLED"), 120, "job B")
    log_b = (ws / "runs" / "slurm-b" / "slurm" / f"job-{job_b}.out").read_text()
    assert job_fields(env, job_b)["JobState"] == "COMPLETED", log_b
    assert "USR1: the time limit is near" in log_b and f"requeueing job {job_b}" in log_b
    preempted_at = int(re.search(r"preempted \(SIGUSR1\): checkpoint at step (\d+) written", log_b).group(1))
    assert 5 <= preempted_at < 30
    assert f"resumed from checkpoint step_{preempted_at:08d} at step {preempted_at}" in log_b
    assert "restart 1" in log_b

    # The interrupted-and-requeued run ends with exactly the uninterrupted run's weights.
    assert_same_weights(final_weights(ws, "slurm-b"), final_weights(ws, "slurm-a"))

    table = hearth("jobs", ws=ws, env={"SLURM_CONF": env["SLURM_CONF"]}).stdout
    row_b = next(line for line in table.splitlines() if "slurm-b" in line)
    assert "COMPLETED" in row_b and " 1 " in row_b and "30/30" in row_b


def test_per_community_account_and_qos_from_the_workspace(slurm_ws: Path, tmp_path: Path):
    ws = slurm_ws
    settings = yaml.safe_load((ws / "hearth.yaml").read_text())
    settings["slurm"] = {"accounts": {COMMUNITY: "tauira-acct"}, "qos": {COMMUNITY: "revival"}, "partition": "cpu"}
    original = (ws / "hearth.yaml").read_text()
    (ws / "hearth.yaml").write_text(yaml.safe_dump(settings))
    try:
        cfg = tiny_config(tmp_path, "acct")
        out = hearth("submit", "slurm", str(cfg), "--no-submit", "--nodes", "2", "--time", "1-00:00:00", ws=ws).stdout
        script = (ws / "runs" / "acct" / "slurm" / "acct.sbatch").read_text()
        assert "#SBATCH --account=tauira-acct" in script and "#SBATCH --qos=revival" in script
        assert "#SBATCH --partition=cpu" in script and "#SBATCH --nodes=2" in script
        assert "not submitted" in out
        # An explicit option wins over the workspace default.
        hearth("submit", "slurm", str(cfg), "--no-submit", "--account", "other", ws=ws)
        assert "#SBATCH --account=other" in (ws / "runs" / "acct" / "slurm" / "acct.sbatch").read_text()
        # bash can parse what we wrote.
        assert subprocess.run(["bash", "-n", str(ws / "runs" / "acct" / "slurm" / "acct.sbatch")]).returncode == 0
    finally:
        (ws / "hearth.yaml").write_text(original)


def test_bad_time_and_gpu_backend_are_one_line_errors(workspace: Path, tmp_path: Path):
    ws = workspace
    cfg = tiny_config(tmp_path, "bad")
    for args, needle in ((["--time", "2h"], "--time '2h': use a SLURM time"),
                         (["--time", "5", "--signal-lead", "600"], "is not shorter than --time 5"),
                         (["--gpus-per-node", "4"], "add --set launch.backend=nccl")):
        proc = hearth("submit", "slurm", str(cfg), "--no-submit", *args, ws=ws, check=False)
        assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (ws / "runs" / "bad").exists()  # refused before anything was planned


def test_slurm_time_forms_and_fair_share_choice():
    from hearthkit.errors import HearthError
    from hearthkit.launch.fairshare import pick
    from hearthkit.launch.slurm import time_limit_seconds

    forms = {"90": 5400, "90:30": 5430, "02:00:00": 7200, "1-12": 129600, "1-12:30": 131400, "2-00:00:01": 172801}
    assert {t: time_limit_seconds(t) for t in forms} == forms
    accounts = {"Community A": "acct-a", "Community B": "acct-b", "Community C": "acct-a"}
    assert pick(accounts, ["Community A", "Community C"], None, "--account") == "acct-a"
    assert pick(accounts, ["Unlisted"], None, "--account") is None  # the cluster's default applies
    assert pick(accounts, ["Community A", "Community B"], "chosen", "--account") == "chosen"
    with pytest.raises(HearthError, match="several communities with different --account values"):
        pick(accounts, ["Community A", "Community B"], None, "--account")

"""`hearth submit slurm|k8s` and `hearth jobs`: the same run config on a SLURM or Kubernetes cluster."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, user_errors
from hearthkit.cli.common import table as cli_table

submit_app = typer.Typer(help="Submit a governed training run to a cluster scheduler.\n\n"
                              "Example: hearth submit slurm configs/demo-asr.yaml --nodes 2 --gpus-per-node 4",
                         no_args_is_help=True)
ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key.sub=value.")]


def _plan(config: Path, set_: list[str] | None, workspace: Path | None):
    """Load the config and plan (or re-open) its run folder, as `hearth train` does, on this machine."""
    from hearthkit.engine.config import load_config
    from hearthkit.launch.plan import plan_run

    cfg = load_config(config, set_)
    ws, catalog = open_catalog(workspace)
    run_dir, manifest, resumed = plan_run(ws, catalog, cfg)
    counts = ", ".join(f"{k} {v}" for k, v in manifest.excluded_counts().items()) or "none"
    console.print(f"run {cfg.name}: {len(manifest.included)} items permitted, excluded: {counts}; "
                  f"{'resumes' if resumed else 'planned'} in {run_dir}", highlight=False, soft_wrap=True)
    return cfg, ws, catalog, run_dir


@submit_app.command("slurm", help="Write a readable sbatch script for the run (srun torchrun, c10d rendezvous on "
                                  "the first node, --requeue, checkpoint on USR1 before the time limit, then "
                                  "`scontrol requeue`) and submit it with sbatch. --account/--qos default to the "
                                  "workspace's per-community settings (hearth.yaml: slurm.accounts, slurm.qos). "
                                  "The workspace must be on a filesystem the compute nodes share.\n\n"
                                  "Example: hearth submit slurm configs/demo-asr.yaml --nodes 2 --gpus-per-node 4 "
                                  "--time 12:00:00 --partition gpu --set launch.backend=nccl")
@user_errors
def slurm(
    config: ConfigArg,
    set_: SetOpt = None,
    nodes: Annotated[int, typer.Option(min=1, help="Nodes (one torchrun each).")] = 1,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="GPUs per node; one worker each (0: CPU, "
                                                           "launch.nproc workers).")] = 0,
    cpus_per_task: Annotated[int | None, typer.Option(min=1, help="CPUs for each node's torchrun and its "
                                                                  "workers.")] = None,
    time: Annotated[str, typer.Option(help="Time limit, SLURM form: MINUTES, HH:MM:SS or D-HH:MM:SS.")] = "01:00:00",
    partition: Annotated[str | None, typer.Option(help="Partition (default: hearth.yaml slurm.partition).")] = None,
    account: Annotated[str | None, typer.Option(help="Account (default: the community's, from hearth.yaml).")] = None,
    qos: Annotated[str | None, typer.Option(help="QoS (default: the community's, from hearth.yaml).")] = None,
    signal_lead: Annotated[int, typer.Option(min=10, help="Seconds before the limit at which the job "
                                                          "checkpoints and requeues.")] = 300,
    no_submit: Annotated[bool, typer.Option("--no-submit", help="Only write the script.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Submit the run to SLURM."""
    from hearthkit.engine.config import load_config
    from hearthkit.launch import fairshare
    from hearthkit.launch import slurm as sl

    asked = sl.SlurmJobSpec(nodes=nodes, gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, time=time,
                            partition=partition, account=account, qos=qos, signal_lead_s=signal_lead)
    sl.check_time(asked)  # bad options fail before anything is planned
    sl.nproc_per_node(load_config(config, set_), asked)
    cfg, ws, catalog, run_dir = _plan(config, set_, workspace)
    names = fairshare.communities(catalog, cfg)
    conf = ws.config.slurm
    spec = dataclasses.replace(asked, partition=partition or conf.partition,
                               account=fairshare.pick(conf.accounts, names, account, "--account"),
                               qos=fairshare.pick(conf.qos, names, qos, "--qos"))
    script = sl.write_script(run_dir, cfg, sl.render_sbatch(run_dir, ws.root, cfg, spec))
    console.print(f"batch script: {script}", highlight=False, soft_wrap=True)
    if no_submit:
        console.print(f"not submitted; submit with: sbatch {script}", highlight=False, soft_wrap=True)
        return
    job_id = sl.sbatch(script)
    sl.record_job(run_dir, sl.slurm_record(job_id, script, spec))
    console.print(f"submitted SLURM job {job_id} (account {spec.account or 'default'}, qos {spec.qos or 'default'}); "
                  f"log {run_dir / 'slurm' / f'job-{job_id}.out'}; follow with `hearth jobs`",
                  highlight=False, soft_wrap=True)


def _last_step(run_dir: Path) -> str:
    """'step/steps' from the run's metrics, or '–'."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return "–"
    lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
    if not lines:
        return "–"
    rec = json.loads(lines[-1])
    return f"{rec['step']}/{rec['steps']}"


@user_errors
def jobs(as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List the cluster jobs submitted for this workspace's runs, with their scheduler state and progress."""
    from hearthkit.launch import slurm as sl
    from hearthkit.workspace import find_workspace

    ws = find_workspace(workspace)
    rows = []
    for run, rec in sl.job_records(ws.runs_dir):
        if rec["scheduler"] == "slurm":
            st = sl.job_state(rec["job_id"])
            state = st["state"] + (f" ({st['reason']})" if st["reason"] else "")
            restarts = st["restarts"]
        else:
            state, restarts = rec.get("state", "–"), None
        rows.append({"run": run, "scheduler": rec["scheduler"], "job": rec["job_id"], "state": state,
                     "restarts": restarts, "step": _last_step(ws.run_dir(run)), "submitted": rec["submitted_at"]})
    if as_json:
        print_json({"jobs": rows})
        return
    table = cli_table("run", "scheduler", "job", "state", "restarts", "step", "submitted")
    for r in rows:
        table.add_row(r["run"], r["scheduler"], str(r["job"]), r["state"],
                      "–" if r["restarts"] is None else str(r["restarts"]), r["step"], str(r["submitted"]))
    console.print(table)


@submit_app.command("k8s", help="Write a Kubeflow PyTorchJob (kubeflow.org/v1) for the run, or with --trainer-v2 a "
                                "TrainJob (trainer.kubeflow.org/v1alpha1): torchrun in each pod with c10d rendezvous "
                                "on node 0, resources, node selectors, the workspace as a PersistentVolumeClaim "
                                "mounted in every pod. --apply creates it with the kubernetes client (needs a "
                                "kubeconfig). The queue defaults to the community's (hearth.yaml: kubernetes.queues)."
                                "\n\nExample: hearth submit k8s configs/demo-asr.yaml --image ghcr.io/org/hearth:0.1 "
                                "--pvc hearth-ws --nodes 2 --gpus-per-node 1 --set launch.backend=nccl")
@user_errors
def k8s(
    config: ConfigArg,
    set_: SetOpt = None,
    image: Annotated[str | None, typer.Option(help="Container image with hearthkit installed "
                                                   "(default: hearth.yaml kubernetes.image).")] = None,
    pvc: Annotated[str | None, typer.Option(help="PersistentVolumeClaim holding this workspace "
                                                 "(default: hearth.yaml kubernetes.workspace_pvc).")] = None,
    mount_path: Annotated[str, typer.Option(help="Where the workspace is mounted in the pods.")] = "/workspace",
    nodes: Annotated[int, typer.Option(min=1, help="Pods (nodes), one torchrun each.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="nvidia.com/gpu per pod; one worker each.")] = 0,
    cpu: Annotated[str | None, typer.Option(help="CPU per pod, e.g. 8 or 7500m.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory per pod, e.g. 32Gi.")] = None,
    node_selector: Annotated[list[str] | None, typer.Option(help="Node label key=value (repeatable).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace (default: hearth.yaml "
                                                       "kubernetes.namespace).")] = None,
    queue: Annotated[str | None, typer.Option(help="Kueue LocalQueue (default: the community's).")] = None,
    trainer_v2: Annotated[bool, typer.Option("--trainer-v2", help="Write a Kubeflow Trainer v2 TrainJob.")] = False,
    runtime: Annotated[str, typer.Option(help="TrainJob runtimeRef (a ClusterTrainingRuntime).")] = "torch-distributed",
    apply_: Annotated[bool, typer.Option("--apply", help="Create the job in the cluster.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Submit the run to Kubernetes."""
    from datetime import UTC, datetime

    from hearthkit.engine.config import load_config
    from hearthkit.errors import HearthError
    from hearthkit.launch import fairshare
    from hearthkit.launch import k8s as kube
    from hearthkit.launch import slurm as sl
    from hearthkit.workspace import find_workspace

    conf = find_workspace(workspace).config.kubernetes
    selectors = {}
    for pair in node_selector or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HearthError(f"--node-selector {pair!r}: expected key=value, e.g. nvidia.com/gpu.product=H100")
        selectors[key] = value
    image = image or conf.image
    pvc = pvc or conf.workspace_pvc
    if not image:
        raise HearthError("no container image: pass --image or set kubernetes.image in hearth.yaml")
    if not pvc:
        raise HearthError("no workspace volume: pass --pvc (a PersistentVolumeClaim holding this workspace) "
                          "or set kubernetes.workspace_pvc in hearth.yaml")
    asked = kube.K8sJobSpec(image=image, workspace_pvc=pvc, nodes=nodes, gpus_per_node=gpus_per_node, cpu=cpu,
                            memory=memory, node_selector=selectors, namespace=namespace or conf.namespace,
                            mount_path=mount_path, runtime=runtime)
    kube.nproc_per_node(load_config(config, set_), asked)  # bad options fail before anything is planned
    if apply_ and not kube.kubeconfig_present():
        raise HearthError("no kubeconfig ($KUBECONFIG or ~/.kube/config) and not inside a cluster: cannot --apply; "
                          "run without --apply to write the manifest, then kubectl apply -f it where you can")
    cfg, ws, catalog, run_dir = _plan(config, set_, workspace)
    spec = dataclasses.replace(asked, queue=fairshare.pick(conf.queues, fairshare.communities(catalog, cfg),
                                                             queue, "--queue"))
    manifest = kube.trainjob(cfg, spec) if trainer_v2 else kube.pytorchjob(cfg, spec)
    path = kube.write_manifest(run_dir, manifest)
    console.print(f"{manifest['kind']} manifest: {path}", highlight=False, soft_wrap=True)
    record = {"scheduler": "k8s", "job_id": f"{manifest['kind']}/{manifest['metadata']['name']}",
              "namespace": spec.namespace, "manifest": str(path),
              "submitted_at": datetime.now(UTC).isoformat(timespec="seconds"), "state": "written"}
    if apply_:
        created = kube.apply(manifest)
        record["state"] = "applied"
        console.print(f"created {created} in namespace {spec.namespace}", highlight=False)
    else:
        console.print(f"not applied; apply with: kubectl apply -f {path}", highlight=False, soft_wrap=True)
    sl.record_job(run_dir, record)

"""Kubernetes: a Kubeflow PyTorchJob (kubeflow.org/v1) or TrainJob (trainer.kubeflow.org/v1alpha1) for a planned run.

Each pod runs torchrun with c10d rendezvous on the first pod (node 0, which also evaluates and publishes). The
workspace is a PersistentVolumeClaim mounted at the same path in every pod, so the run folder planned here (in the
same workspace) is the one the pods train in. On eviction a pod gets SIGTERM: torchrun passes it to the workers,
which checkpoint and exit (engine/preempt.py); the operator restarts the pod and training resumes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError
from hearthkit.launch.multinode import nproc_per_node

PYTORCHJOB = ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob")
TRAINJOB = ("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RDZV_PORT = 29400  # only if the operator names no port
RUNTIME_PATCH_MANAGER = "hearthkit.org/submit"  # who owns the TrainJob's runtime patch (Trainer keys them by manager)


@dataclass(frozen=True)
class K8sJobSpec:
    """What the pods need: image, size, placement, the workspace volume."""

    image: str
    workspace_pvc: str
    nodes: int = 1
    gpus_per_node: int = 0
    cpu: str | None = None
    memory: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    namespace: str = "default"
    mount_path: str = "/workspace"
    queue: str | None = None
    runtime: str = "torch-distributed"  # the ClusterTrainingRuntime Kubeflow Trainer ships for torchrun
    grace_period_s: int = 300


def job_name(run: str) -> str:
    """A DNS-1035 label from the run name (lower case, a-z0-9-, starts with a letter, at most 63 characters)."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"hearth-{run.lower()}").strip("-")
    return name[:63].rstrip("-")


def pod_script(cfg: RunConfig, spec: K8sJobSpec) -> str:
    """The container's shell script: resolve node 0, torchrun with c10d, node 0 evaluates and publishes."""
    run_dir = shlex.quote(f"{spec.mount_path}/runs/{cfg.name}")
    nproc = nproc_per_node(cfg, spec)
    return f"""set -u
# The operators name node 0 differently: PyTorchJob sets MASTER_ADDR/MASTER_PORT/RANK, TrainJob PET_MASTER_ADDR/
# PET_MASTER_PORT/PET_NODE_RANK. The rendezvous uses the port the operator opened for node 0.
HEAD="${{PET_MASTER_ADDR:-${{MASTER_ADDR:-}}}}"
NODE_RANK="${{PET_NODE_RANK:-${{RANK:-0}}}}"
PORT="${{PET_MASTER_PORT:-${{MASTER_PORT:-{RDZV_PORT}}}}}"
if [ -z "$HEAD" ]; then echo "error: neither PET_MASTER_ADDR nor MASTER_ADDR is set" >&2; exit 2; fi
# Node 0's service name appears in DNS shortly after the pods start: resolve it explicitly, never guess.
for i in $(seq 60); do HEAD_ADDR=$(getent hosts "$HEAD" | awk 'NR == 1 {{print $1}}'); \
[ -n "$HEAD_ADDR" ] && break; sleep 2; done
if [ -z "$HEAD_ADDR" ]; then echo "error: node 0 ($HEAD) does not resolve" >&2; exit 2; fi
IS_HOST=0; [ "$NODE_RANK" = 0 ] && IS_HOST=1
echo "node $NODE_RANK of {spec.nodes}: rendezvous $HEAD -> $HEAD_ADDR:$PORT"
python -m torch.distributed.run --nnodes={spec.nodes} --nproc-per-node={nproc} --node-rank="$NODE_RANK" \\
  --rdzv-backend=c10d --rdzv-endpoint="$HEAD_ADDR:$PORT" --rdzv-id={shlex.quote(job_name(cfg.name))} \\
  --rdzv-conf=is_host=$IS_HOST --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT \\
  -m hearthkit.engine.trainer {run_dir} &
pid=$!
# This shell is the container's PID 1 and gets the pod's SIGTERM: pass it to torchrun, which passes it to the
# workers; they checkpoint and exit, and the restarted pod resumes. A trapped signal ends `wait` early.
trap 'kill -TERM "$pid" 2>/dev/null' TERM
wait "$pid"; rc=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done
[ "$rc" = 0 ] || exit "$rc"
if [ "$NODE_RANK" = 0 ]; then python -m hearthkit.launch.finish {run_dir}; fi
"""


def _env(cfg: RunConfig, spec: K8sJobSpec) -> list[dict]:
    return [{"name": "HEARTH_WORKSPACE", "value": spec.mount_path},
            {"name": "HEARTH_PREEMPT_SIGNAL", "value": "SIGTERM"},  # eviction: checkpoint, exit, pod restarts
            {"name": "TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "value": str(max(30, spec.grace_period_s - 30))},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "OMP_NUM_THREADS", "value": str(cfg.launch.threads_per_worker)}]


def _resources(spec: K8sJobSpec) -> dict:
    want = {k: v for k, v in (("cpu", spec.cpu), ("memory", spec.memory)) if v}
    if spec.gpus_per_node:
        want["nvidia.com/gpu"] = str(spec.gpus_per_node)
    return {"requests": dict(want), "limits": dict(want)} if want else {}


def _volumes(spec: K8sJobSpec) -> list[dict]:
    # /dev/shm as memory: PyTorch workers and NCCL need more than the container default of 64 MiB.
    return [{"name": "workspace", "persistentVolumeClaim": {"claimName": spec.workspace_pvc}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}}]


def _mounts(spec: K8sJobSpec) -> list[dict]:
    return [{"name": "workspace", "mountPath": spec.mount_path}, {"name": "dshm", "mountPath": "/dev/shm"}]


def _metadata(cfg: RunConfig, spec: K8sJobSpec) -> dict:
    labels = {"app.kubernetes.io/managed-by": "hearthkit", "hearthkit/run": job_name(cfg.name)}
    if spec.queue:
        labels[KUEUE_QUEUE_LABEL] = spec.queue  # Kueue charges the community's queue: the cluster's own fair-share
    return {"name": job_name(cfg.name), "namespace": spec.namespace, "labels": labels}


def pytorchjob(cfg: RunConfig, spec: K8sJobSpec) -> dict:
    """A Kubeflow training-operator PyTorchJob: one Master pod (node 0) and nodes-1 Worker pods."""
    container = {"name": "pytorch",  # the training operator looks for this container name
                 "image": spec.image, "imagePullPolicy": "IfNotPresent",
                 "command": ["/bin/sh", "-c", pod_script(cfg, spec)],
                 "env": _env(cfg, spec), "volumeMounts": _mounts(spec)}
    if _resources(spec):
        container["resources"] = _resources(spec)
    pod_spec = {"containers": [container], "volumes": _volumes(spec),
                "terminationGracePeriodSeconds": spec.grace_period_s}
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": pod_spec}}}
    if spec.nodes > 1:
        replicas["Worker"] = {"replicas": spec.nodes - 1, "restartPolicy": "OnFailure",
                              "template": {"spec": pod_spec}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": _metadata(cfg, spec),
            "spec": {"nprocPerNode": str(nproc_per_node(cfg, spec)), "pytorchReplicaSpecs": replicas,
                     "runPolicy": {"backoffLimit": 10, "cleanPodPolicy": "None"}}}


def trainjob(cfg: RunConfig, spec: K8sJobSpec) -> dict:
    """A Kubeflow Trainer (v2.2 or later) TrainJob on the torch runtime; the workspace volume and node selector via
    spec.runtimePatches, which replaced spec.podTemplateOverrides in v2.2 (an older field would be dropped, or with
    strict field validation refused)."""
    trainer = {"image": spec.image, "command": ["/bin/sh", "-c", pod_script(cfg, spec)],
               "numNodes": spec.nodes, "numProcPerNode": nproc_per_node(cfg, spec), "env": _env(cfg, spec)}
    if _resources(spec):
        trainer["resourcesPerNode"] = _resources(spec)
    override_spec = {"volumes": _volumes(spec), "containers": [{"name": "node", "volumeMounts": _mounts(spec)}]}
    if spec.node_selector:
        override_spec["nodeSelector"] = dict(spec.node_selector)
    node_patch = {"name": "node", "template": {"spec": {"template": {"spec": override_spec}}}}
    patch = {"manager": RUNTIME_PATCH_MANAGER,
             "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_patch]}}}}
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": _metadata(cfg, spec),
            "spec": {"runtimeRef": {"name": spec.runtime}, "trainer": trainer, "runtimePatches": [patch]}}


def write_manifest(run_dir: Path, manifest: dict) -> Path:
    """Write MANIFEST as YAML into the run folder's k8s/ folder; return its path."""
    kind = manifest["kind"].lower()
    path = run_dir / "k8s" / f"{manifest['metadata']['name']}.{kind}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {manifest['kind']} for hearth run {run_dir.name} (`hearth submit k8s`); kubectl apply -f it\n"
    path.write_text(header + yaml.safe_dump(manifest, sort_keys=False, width=120))
    return path


def kubeconfig_present() -> bool:
    """A kubeconfig file ($KUBECONFIG or ~/.kube/config) or an in-cluster service account."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p] or [
        str(Path.home() / ".kube" / "config")]
    return any(Path(p).is_file() for p in paths) or bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _api_message(exc) -> str:
    """': MESSAGE' from the API server's Status body (e.g. the unknown field strict validation refused), else ''."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        return ""
    return f": {str(message).splitlines()[0]}" if message else ""


def apply(manifest: dict) -> str:
    """Create MANIFEST's custom object with the kubernetes client; return 'Kind/name'."""
    if not kubeconfig_present():
        raise HearthError("no kubeconfig ($KUBECONFIG or ~/.kube/config) and not inside a cluster: cannot --apply; "
                          "apply the written manifest with kubectl where you have cluster access")
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException

    group, version, plural, kind = PYTORCHJOB if manifest["kind"] == "PyTorchJob" else TRAINJOB
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
        # Strict: a field this cluster's CRD does not know (e.g. one renamed by a newer operator) is refused by the
        # API server instead of silently dropped.
        client.CustomObjectsApi().create_namespaced_custom_object(
            group, version, manifest["metadata"]["namespace"], plural, manifest, field_validation="Strict")
    except ConfigException as exc:
        raise HearthError(f"kubeconfig unusable: {str(exc).splitlines()[0]}") from None
    except ApiException as exc:
        raise HearthError(f"the cluster refused the {kind}: {exc.status} {exc.reason}{_api_message(exc)}") from None
    except Exception as exc:  # connection refused, DNS, TLS: one line, not a traceback
        raise HearthError(f"could not reach the cluster: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return f"{kind}/{manifest['metadata']['name']}"

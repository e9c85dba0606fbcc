"""Kubernetes manifests from `hearth submit k8s`, validated against the published schemas.

No Kubernetes API server exists here (and none can run offline), so instead of applying the jobs to a cluster these
tests validate what hearth writes: core objects (pod templates, pods) with kubernetes-validate, whose Kubernetes
schemas ship inside the package and work without a network; the PyTorchJob and TrainJob custom resources against the
openAPIV3Schema of their published CRDs (fixtures/, source repository, path and commit noted in each) with
jsonschema, strictly: unknown fields are errors, as with `kubectl apply --validate=strict`.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import hearth
from tests.launch.launch_helpers import COMMUNITY, imported_workspace, tiny_config

FIXTURES = Path(__file__).parent / "fixtures"
K8S_VERSION = "1.37.0"  # newest schema set bundled with kubernetes-validate 1.37.0
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def strict(schema: dict) -> dict:
    """SCHEMA with unknown fields forbidden wherever it lists properties (what strict field validation does)."""
    out = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(out)
    return out


def crd_validator(fixture: str) -> jsonschema.Draft7Validator:
    """A strict validator for one of the CRD schema fixtures."""
    schema = strict(yaml.safe_load((FIXTURES / fixture).read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def core_validate(obj: dict) -> None:
    """Validate a core Kubernetes object strictly with kubernetes-validate (raises on any error)."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def k8s_ws(tiny_speech_archive: Path, tmp_path_factory) -> Path:
    """An imported workspace whose hearth.yaml names the community's Kueue queue, image and workspace volume."""
    ws = imported_workspace(tmp_path_factory.mktemp("k8s-ws") / "ws", tiny_speech_archive)
    settings = yaml.safe_load((ws / "hearth.yaml").read_text())
    settings["kubernetes"] = {"namespace": "tauira", "queues": {COMMUNITY: "tauira-queue"},
                              "workspace_pvc": "hearth-ws", "image": "registry.example/hearth:0.1"}
    (ws / "hearth.yaml").write_text(yaml.safe_dump(settings))
    return ws


def written_manifest(stdout: str) -> dict:
    """Load the manifest whose path `hearth submit k8s` printed."""
    path = re.search(r"manifest: (\S+)", stdout).group(1)
    return yaml.safe_load(Path(path).read_text())


@pytest.fixture(scope="module")
def ddp_job(k8s_ws: Path, tmp_path_factory) -> dict:
    """The PyTorchJob `hearth submit k8s` writes for a 3-node CPU run."""
    cfg = tiny_config(tmp_path_factory.mktemp("kube-ddp"), "kube-ddp", nproc=2)
    out = hearth("submit", "k8s", str(cfg), "--nodes", "3", "--cpu", "4", "--memory", "8Gi",
                 "--node-selector", "pool=cpu", "--node-selector", "topology.kubernetes.io/zone=a", ws=k8s_ws).stdout
    return written_manifest(out)


def test_pytorchjob_matches_the_crd_and_core_schemas(ddp_job: dict, k8s_ws: Path):
    job = ddp_job
    errors = [e.message for e in crd_validator("pytorchjob-v1.schema.yaml").iter_errors(job)]
    assert errors == []
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    assert DNS_1035.match(job["metadata"]["name"]) and job["metadata"]["namespace"] == "tauira"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "tauira-queue"  # the community's queue
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    for role, rs in replicas.items():
        core_validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"x-{role.lower()}"},
                       "template": rs["template"]})
        pod = rs["template"]["spec"]
        (c,) = pod["containers"]
        assert c["name"] == "pytorch" and c["image"] == "registry.example/hearth:0.1"
        assert c["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
        assert pod["nodeSelector"] == {"pool": "cpu", "topology.kubernetes.io/zone": "a"}
        assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "hearth-ws"}} in pod["volumes"]
        assert {"name": "workspace", "mountPath": "/workspace"} in c["volumeMounts"]
        script = c["command"][2]
        assert "torch.distributed.run --nnodes=3 --nproc-per-node=2" in script and "--rdzv-backend=c10d" in script
        assert "-m hearthkit.engine.trainer /workspace/runs/kube-ddp" in script
        assert subprocess.run(["/bin/sh", "-n", "-c", script]).returncode == 0  # the shell can parse it
    assert "k8s" in (k8s_ws / "runs" / "kube-ddp" / "jobs.jsonl").read_text()


def test_trainjob_matches_the_crd_and_core_schemas(k8s_ws: Path, tmp_path: Path):
    cfg = tiny_config(tmp_path, "Kube_V2.gpu")
    out = hearth("submit", "k8s", str(cfg), "--trainer-v2", "--nodes", "2", "--gpus-per-node", "4", "--memory",
                 "64Gi", "--node-selector", "nvidia.com/gpu.product=H100", "--set", "launch.backend=nccl",
                 ws=k8s_ws).stdout
    job = written_manifest(out)
    errors = [e.message for e in crd_validator("trainjob-v1alpha1-v2.2.schema.yaml").iter_errors(job)]
    assert errors == []  # Kubeflow Trainer v2.2: spec.runtimePatches
    older = [e.message for e in crd_validator("trainjob-v1alpha1.schema.yaml").iter_errors(job)]
    assert any("runtimePatches" in m for m in older)  # the pre-2.2 CRD has podTemplateOverrides instead
    name = job["metadata"]["name"]
    assert DNS_1035.match(name) and len(name) <= 63  # the CRD's CEL rule on metadata.name
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    (patch,) = job["spec"]["runtimePatches"]
    assert patch["manager"] == "hearthkit.org/submit"
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    override = node["template"]["spec"]["template"]
    # The pod Kubeflow Trainer builds for each node: trainer fields + the patch, as a core Pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-node-0-0"},
           "spec": {"containers": [{"name": "node", "image": trainer["image"], "command": trainer["command"],
                                    "env": trainer["env"], "resources": trainer["resourcesPerNode"],
                                    "volumeMounts": override["spec"]["containers"][0]["volumeMounts"]}],
                    "volumes": override["spec"]["volumes"], "nodeSelector": override["spec"]["nodeSelector"]}}
    core_validate(pod)
    assert "--nproc-per-node=4" in trainer["command"][2] and "PET_MASTER_ADDR" in trainer["command"][2]


@pytest.mark.slow
def test_the_pod_command_trains_the_run(k8s_ws: Path, tmp_path: Path):
    """Run the PyTorchJob's container command here as the Master pod of a one-node job would, with the environment
    the operator gives it (MASTER_ADDR, MASTER_PORT, RANK). No container runtime or cluster exists here; the
    command, torchrun, the trainer and the final evaluation are the real ones."""
    cfg = tiny_config(tmp_path, "kube-pod")
    job = written_manifest(hearth("submit", "k8s", str(cfg), "--mount-path", str(k8s_ws), ws=k8s_ws).stdout)
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}, "RANK": "0",
           "MASTER_ADDR": socket.gethostname(), "MASTER_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # the image's `python`
    proc = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"node 0 of 1: rendezvous {socket.gethostname()} -> " in proc.stdout
    assert "steps 0->6" in proc.stdout and "model card:" in proc.stdout
    assert (k8s_ws / "models" / "kube-pod" / "model_card.md").is_file()


def test_the_validators_reject_broken_manifests(ddp_job: dict):
    """The schemas have teeth: typos and wrong types are caught (so the passing tests above mean something)."""
    job = ddp_job
    v1 = crd_validator("pytorchjob-v1.schema.yaml")
    typo = copy.deepcopy(job)
    typo["spec"]["nprocsPerNode"] = typo["spec"].pop("nprocPerNode")
    assert any("nprocsPerNode" in e.message for e in v1.iter_errors(typo))
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "one"
    assert list(v1.iter_errors(wrong_type))
    no_replicas = copy.deepcopy(job)
    del no_replicas["spec"]["pytorchReplicaSpecs"]
    assert any("pytorchReplicaSpecs" in e.message for e in v1.iter_errors(no_replicas))
    template = copy.deepcopy(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"])
    template["spec"]["containers"][0]["volumeMount"] = template["spec"]["containers"][0].pop("volumeMounts")
    with pytest.raises(kubernetes_validate.ValidationError):
        core_validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": template})


def test_kubernetes_validate_needs_no_network():
    """kubernetes-validate reads its bundled schemas: run it where there is no network at all."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to run a check in an empty network namespace")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "c",
                                                                                               "image": "i"}]}}
    code = (f"import kubernetes_validate as kv; kv.validate({pod!r}, {K8S_VERSION!r}, strict=True); "
            "print('validated offline')")
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"cannot create a network namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0 and "validated offline" in proc.stdout, proc.stderr


def test_apply_without_a_kubeconfig_is_a_one_line_error(k8s_ws: Path, tmp_path: Path):
    cfg = tiny_config(tmp_path, "kube-apply")
    env = {"KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": ""}
    proc = hearth("submit", "k8s", str(cfg), "--apply", ws=k8s_ws, env=env, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no kubeconfig" in lines[0] and "kubectl apply" in lines[0]
    assert not (k8s_ws / "runs" / "kube-apply").exists()  # refused before anything was planned or written


def test_missing_image_or_volume_is_a_one_line_error(workspace: Path, tmp_path: Path):
    cfg = tiny_config(tmp_path, "kube-none")
    proc = hearth("submit", "k8s", str(cfg), ws=workspace, check=False)
    assert proc.returncode == 2 and "pass --image" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = hearth("submit", "k8s", str(cfg), "--image", "img", ws=workspace, check=False)
    assert proc.returncode == 2 and "pass --pvc" in proc.stderr
    assert not (workspace / "runs" / "kube-none").exists()


def _api_server(answers: list[tuple[int, dict]], seen: list) -> tuple:
    """A local HTTP endpoint answering each POST with the next (status, body) of ANSWERS, recording each request's
    path and body. No Kubernetes API server can run here; the kubernetes client and its HTTP requests are real."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            seen.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
            status, body = answers.pop(0)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_apply_asks_for_strict_field_validation_and_names_a_refused_field(tmp_path: Path, monkeypatch):
    from hearthkit.errors import HearthError
    from hearthkit.launch.k8s import apply

    job = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
           "metadata": {"name": "kube-strict", "namespace": "tauira"},
           "spec": {"runtimeRef": {"name": "torch-distributed"}, "podTemplateOverrides": []}}
    # What a Trainer v2.2 API server answers, with fieldValidation=Strict, to a field its CRD no longer has.
    refusal = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "BadRequest", "code": 400,
               "message": 'TrainJob in version "v1alpha1" cannot be handled as a TrainJob: strict decoding error: '
                          'unknown field "spec.podTemplateOverrides"'}
    seen: list = []
    server, url = _api_server([(400, refusal), (201, job)], seen)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": url}}], "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    try:
        with pytest.raises(HearthError) as err:
            apply(job)
        assert str(err.value) == ('the cluster refused the TrainJob: 400 Bad Request: TrainJob in version "v1alpha1" '
                                  'cannot be handled as a TrainJob: strict decoding error: unknown field '
                                  '"spec.podTemplateOverrides"')
        assert apply(job) == "TrainJob/kube-strict"
    finally:
        server.shutdown()
    assert [path for path, _ in seen] == \
        ["/apis/trainer.kubeflow.org/v1alpha1/namespaces/tauira/trainjobs?fieldValidation=Strict"] * 2
    assert all(sent == job for _, sent in seen)

"""Multi-node launch: explicit resolution of the rendezvous host, and two real nodes in network namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hearthkit.errors import HearthError
from hearthkit.launch import multinode
from tests.conftest import HEARTH, hearth
from tests.launch.launch_helpers import assert_same_weights, final_weights, imported_workspace, tiny_config


def test_rendezvous_host_that_does_not_resolve_is_a_one_line_error(workspace: Path, tmp_path: Path):
    cfg = tiny_config(tmp_path, "unresolvable")
    proc = hearth("train", str(cfg), "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint",
                  "no-such-host.invalid:29400", ws=workspace, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-host.invalid" in lines[0] and "does not resolve" in lines[0]
    assert not (workspace / "runs" / "unresolvable").exists()  # nothing planned on a failed launch


def test_loopback_and_foreign_addresses_are_refused():
    with pytest.raises(HearthError, match="loopback address the other nodes cannot reach"):
        multinode.resolve_node(2, 0, "localhost:29400", "r")
    with pytest.raises(HearthError, match="expected HOST:PORT"):
        multinode.resolve_node(2, 1, "node01", "r")
    with pytest.raises(HearthError, match="--node-rank 2: must be between 0 and 1"):
        multinode.resolve_node(2, 2, "127.0.0.1:29400", "r")
    # 192.0.2.1 is TEST-NET-1 (documentation only): never an address of this machine, and nothing is sent to it.
    with pytest.raises(HearthError, match="is not an address of this machine"):
        multinode.resolve_node(2, 0, "192.0.2.1:29400", "r")
    with pytest.raises(HearthError, match="--iface nosuch0: no such network interface"):
        multinode.resolve_node(1, 0, "127.0.0.1:29400", "r", iface="nosuch0")


def test_single_machine_plan_names_everything():
    node = multinode.resolve_node(1, 0, "127.0.0.1:29400", "run-x", iface="lo")
    assert (node.rdzv_addr, node.local_addr, node.iface, node.is_host) == ("127.0.0.1", "127.0.0.1", "lo", True)
    assert node.env() == {"GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"}


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_namespaces():
    """Two network namespaces joined by a veth pair, 10.77.N.1 and 10.77.N.2 only on the veth ends inside them."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("network namespaces need root and iproute2 (`ip`); cannot create the two nodes here")
    tag = f"hk{os.getpid() % 100000}"
    ns_a, ns_b, veth_a, veth_b = f"{tag}a", f"{tag}b", f"{tag}va", f"{tag}vb"
    subnet = f"10.77.{os.getpid() % 250 + 1}"
    try:
        first = _ip("netns", "add", ns_a)
        if first.returncode != 0:
            pytest.skip(f"cannot create a network namespace here: {first.stderr.strip()}")
        steps = [("netns", "add", ns_b), ("link", "add", veth_a, "type", "veth", "peer", "name", veth_b),
                 ("link", "set", veth_a, "netns", ns_a), ("link", "set", veth_b, "netns", ns_b),
                 ("-n", ns_a, "addr", "add", f"{subnet}.1/24", "dev", veth_a),
                 ("-n", ns_b, "addr", "add", f"{subnet}.2/24", "dev", veth_b),
                 ("-n", ns_a, "link", "set", "lo", "up"), ("-n", ns_b, "link", "set", "lo", "up"),
                 ("-n", ns_a, "link", "set", veth_a, "up"), ("-n", ns_b, "link", "set", veth_b, "up")]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot build the two-node network (`ip {' '.join(step)}`): {done.stderr.strip()}")
        yield (ns_a, f"{subnet}.1", veth_a), (ns_b, f"{subnet}.2", veth_b)
    finally:
        for ns in (ns_a, ns_b):
            _ip("netns", "del", ns)  # deleting a namespace deletes the veth end inside it, and so the pair
        _ip("link", "del", veth_a)  # in case the pair never left the root namespace


@pytest.mark.slow
def test_two_real_nodes_train_the_same_weights_as_one_node(two_namespaces, tiny_speech_archive: Path,
                                                             tmp_path: Path):
    (ns_a, addr_a, veth_a), (ns_b, _addr_b, veth_b) = two_namespaces
    # Both namespaces see this same folder: the workspace is "shared storage" for the two nodes.
    ws = imported_workspace(tmp_path / "ws", tiny_speech_archive)
    one = tiny_config(tmp_path, "one-node", nproc=2)
    two = tiny_config(tmp_path, "two-nodes", nproc=1)
    hearth("train", str(one), ws=ws, timeout=240)

    env = dict(os.environ, HEARTH_WORKSPACE=str(ws), COLUMNS="200")
    endpoint = f"{addr_a}:29555"
    procs = []
    for ns, rank, veth in ((ns_a, 0, veth_a), (ns_b, 1, veth_b)):
        cmd = ["ip", "netns", "exec", ns, *HEARTH, "train", str(two), "--nnodes", "2", "--node-rank", str(rank),
               "--rdzv-endpoint", endpoint, "--iface", veth]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, (p, out) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"node {rank} failed:\n{out}"
    node0, node1 = outs
    # The hosts share one hostname, so everything is explicit: address, interface, who hosts the rendezvous.
    assert f"node 0 of 2 hosts the rendezvous at {addr_a} -> {addr_a}:29555" in node0
    assert f"GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME={veth_a}" in node0
    assert "--rdzv-conf=is_host=1" in node0 and f"--local-addr={addr_a}" in node0
    assert "--rdzv-conf=is_host=0" in node1 and "node 1: training finished" in node1
    assert "2 workers" in node0 and "model card" in node0
    assert_same_weights(final_weights(ws, "two-nodes"), final_weights(ws, "one-node"))


def test_other_nodes_wait_for_node_0s_plan_and_check_it(tmp_path: Path):
    from hearthkit.engine.config import load_config

    cfg = load_config(tiny_config(tmp_path, "shared"))
    run_dir = tmp_path / "runs" / "shared"
    with pytest.raises(HearthError, match="did not appear within 0 s: node 0 plans the run"):
        multinode.wait_for_plan(run_dir, cfg, timeout_s=0.2, poll_s=0.05)
    run_dir.mkdir(parents=True)
    other = cfg.model_copy(update={"model": {**cfg.model, "hidden": 32}})
    (run_dir / "run.json").write_text(json.dumps({"config": json.loads(other.model_dump_json())}))
    with pytest.raises(HearthError, match="node 0 planned this run with a different config"):
        multinode.wait_for_plan(run_dir, cfg, timeout_s=1)
    more_steps = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 99})})
    (run_dir / "run.json").write_text(json.dumps({"config": json.loads(more_steps.model_dump_json())}))
    multinode.wait_for_plan(run_dir, cfg, timeout_s=1)  # loop settings may differ (e.g. more steps on resume)

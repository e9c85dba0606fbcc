"""Several machines: torchrun with c10d rendezvous, the rendezvous host and this node's interface resolved explicitly.

Nothing here falls back to localhost: the rendezvous host must resolve, a loopback address is refused when other
nodes must reach it, node 0 must own the rendezvous address, and the address and interface this node talks on are
named (given, or found from the route to the rendezvous host) and handed to gloo/NCCL via *_SOCKET_IFNAME.
All nodes must see the same workspace folder (a shared filesystem): node 0 plans the run, the others wait for it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hearthkit.engine.config import LaunchConfig, RunConfig
from hearthkit.errors import HearthError

SIOCGIFADDR = 0x8915  # Linux ioctl: the IPv4 address of an interface


@dataclass(frozen=True)
class NodePlan:
    """Where this node meets the others: resolved addresses, not names."""

    nnodes: int
    node_rank: int
    rdzv_host: str  # as the user wrote it
    rdzv_addr: str  # what it resolved to
    rdzv_port: int
    local_addr: str
    iface: str | None
    rdzv_id: str

    @property
    def is_host(self) -> bool:
        """Node 0 runs the c10d rendezvous store (told to torchrun explicitly: hostnames may be shared)."""
        return self.node_rank == 0

    def env(self) -> dict[str, str]:
        """Environment that pins gloo and NCCL to the chosen interface."""
        return {"GLOO_SOCKET_IFNAME": self.iface, "NCCL_SOCKET_IFNAME": self.iface} if self.iface else {}

    def describe(self) -> str:
        """One line for the user: what was resolved to what."""
        role = "hosts the rendezvous" if self.is_host else "joins the rendezvous"
        via = f" on {self.iface} (GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME={self.iface})" if self.iface else ""
        return (f"node {self.node_rank} of {self.nnodes} {role} at {self.rdzv_host} -> "
                f"{self.rdzv_addr}:{self.rdzv_port}; local address {self.local_addr}{via}")


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HearthError(f"--rdzv-endpoint {endpoint!r}: expected HOST:PORT, e.g. node01.cluster:29400")
    return host.strip("[]"), int(port)


def resolve_host(host: str, what: str) -> str:
    """HOST's address (IPv4 preferred), or a one-line error naming WHAT."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HearthError(f"{what} {host!r} does not resolve to an address ({exc.strerror}); "
                          "give a name or IP address that every node can resolve") from None
    addrs = [i[4][0] for i in infos if i[0] == socket.AF_INET] or [i[4][0] for i in infos]
    return addrs[0]


def is_local_address(addr: str) -> bool:
    """Whether ADDR belongs to this machine (in this network namespace): binding to it succeeds only then."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr, 0))
        except OSError:
            return False
    return True


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of interface NAME, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(res[20:24])


def interfaces() -> list[str]:
    """Network interfaces of this machine (this namespace)."""
    return [name for _, name in socket.if_nameindex()]


def interface_of(addr: str) -> str | None:
    """The interface that carries ADDR, or None."""
    return next((n for n in interfaces() if interface_ipv4(n) == addr), None)


def route_source(addr: str, port: int) -> str:
    """The source address the kernel would use to reach ADDR (a UDP connect sends no packet)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((addr, port))
        except OSError as exc:
            raise HearthError(f"no route from this node to the rendezvous address {addr} ({exc.strerror}); "
                              "check the network or pass --iface/--local-addr") from None
        return s.getsockname()[0]


def resolve_node(nnodes: int, node_rank: int, endpoint: str, rdzv_id: str, local_addr: str | None = None,
                 iface: str | None = None) -> NodePlan:
    """Resolve the rendezvous host and this node's address and interface, or fail with a one-line reason."""
    if nnodes < 1:
        raise HearthError("--nnodes must be at least 1")
    if not 0 <= node_rank < nnodes:
        raise HearthError(f"--node-rank {node_rank}: must be between 0 and {nnodes - 1} for --nnodes {nnodes}")
    host, port = split_endpoint(endpoint)
    rdzv_addr = resolve_host(host, "--rdzv-endpoint host")
    if nnodes > 1 and ipaddress.ip_address(rdzv_addr).is_loopback:
        raise HearthError(f"--rdzv-endpoint {host} resolves to {rdzv_addr}, a loopback address the other nodes "
                          "cannot reach; give node 0's network name or address")
    if node_rank == 0 and not is_local_address(rdzv_addr):
        raise HearthError(f"node 0 hosts the rendezvous, but --rdzv-endpoint {host} ({rdzv_addr}) is not an address "
                          "of this machine; start node 0 on that host or point --rdzv-endpoint at this node")
    if iface is not None:
        if iface not in interfaces():
            raise HearthError(f"--iface {iface}: no such network interface here (have: {', '.join(interfaces())})")
        iface_addr = interface_ipv4(iface)
        if iface_addr is None:
            raise HearthError(f"--iface {iface}: the interface has no IPv4 address")
    if local_addr is not None:
        addr = resolve_host(local_addr, "--local-addr")
        if not is_local_address(addr):
            raise HearthError(f"--local-addr {local_addr} ({addr}) is not an address of this machine")
        local_addr = addr
    elif iface is not None:
        local_addr = iface_addr
    else:
        local_addr = route_source(rdzv_addr, port)
    if iface is None:
        iface = interface_of(local_addr)
    if nnodes > 1 and ipaddress.ip_address(local_addr).is_loopback:
        raise HearthError(f"this node would talk on the loopback address {local_addr}, which other nodes cannot "
                          "reach; pass --iface or --local-addr")
    return NodePlan(nnodes, node_rank, host, rdzv_addr, port, local_addr, iface, rdzv_id)


def torchrun_multinode_command(run_dir: Path, launch: LaunchConfig, node: NodePlan, max_restarts: int = 0) -> list[str]:
    """torchrun for one node of a c10d rendezvous (readable; printed before it runs)."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={node.nnodes}", f"--node-rank={node.node_rank}",
            f"--nproc-per-node={launch.nproc}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={node.rdzv_addr}:{node.rdzv_port}", f"--rdzv-id={node.rdzv_id}",
            f"--rdzv-conf=is_host={int(node.is_host)}", f"--local-addr={node.local_addr}",
            f"--max-restarts={max_restarts}", "-m", "hearthkit.engine.trainer", str(run_dir)]


def wait_for_plan(run_dir: Path, cfg: RunConfig, timeout_s: float, poll_s: float = 0.5) -> None:
    """On nodes other than 0: wait until node 0 has planned the run in the shared workspace, and check it matches."""
    spec_path = run_dir / "run.json"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            spec = json.loads(spec_path.read_text())
            break
        except (FileNotFoundError, json.JSONDecodeError):  # not there yet, or being written
            if time.monotonic() > deadline:
                raise HearthError(f"{spec_path} did not appear within {timeout_s:.0f} s: node 0 plans the run, and "
                                  "every node must see the same workspace (a shared filesystem)") from None
            time.sleep(poll_s)
    planned = RunConfig.model_validate(spec["config"]).model_dump(exclude={"train", "launch"})
    if planned != cfg.model_dump(exclude={"train", "launch"}):
        raise HearthError(f"{spec_path}: node 0 planned this run with a different config; start every node with "
                          "the same config file and --set overrides")


def nproc_per_node(cfg, spec) -> int:
    """Workers per node of a cluster job SPEC (SLURM or Kubernetes): one per GPU asked for, else launch.nproc."""
    if spec.gpus_per_node > 0:
        if cfg.launch.backend != "nccl":
            raise HearthError(f"--gpus-per-node {spec.gpus_per_node} but launch.backend is {cfg.launch.backend!r}; "
                              "add --set launch.backend=nccl")
        return spec.gpus_per_node
    return cfg.launch.nproc

"""Clusters the tests start themselves on free local ports, and stop by their own process ids
(never the machine's own servers): a Redis Cluster of three masters."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT = 120.0  # generous: a loaded machine starts processes slowly


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports (Redis Cluster also uses port + 10000: kept free too)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class RedisCluster:
    """Three masters, no replicas, each with an append-only file fsynced on every write (so a
    node killed with SIGKILL and started again has every acknowledged write)."""

    root: Path
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start_node(self, port: int) -> None:
        d = self.root / str(port)
        d.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--dir", str(d),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: _cli(port, "ping") == "PONG", f"redis node {port}")

    def kill(self, port: int) -> None:
        """SIGKILL one node (its process id only)."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def wait_ok(self) -> None:
        for port in self.ports:
            _wait(
                lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info"),
                f"cluster state ok on {port}",
            )

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)


def _cli(port: int, *args: str) -> str:
    try:
        out = subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        return ""
    return out.stdout.decode().strip()


def _wait(ok: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ok():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {START_TIMEOUT:.0f} s")


@contextlib.contextmanager
def redis_cluster(root: Path) -> Iterator[RedisCluster]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli not installed")
    cluster = RedisCluster(root, free_ports(3))
    try:
        for port in cluster.ports:
            cluster.start_node(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in cluster.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=120,
            check=True,
            env={**os.environ},
        )
        cluster.wait_ok()
        yield cluster
    finally:
        cluster.stop()


@dataclass
class NatsCluster:
    """Three NATS servers with JetStream in one cluster, each with its own store directory."""

    root: Path
    ports: list[int]
    routes: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def start_node(self, i: int) -> None:
        port = self.ports[i]
        d = self.root / f"n{i}"
        d.mkdir(parents=True, exist_ok=True)
        routes = ",".join(f"nats://127.0.0.1:{r}" for r in self.routes)
        self.procs[port] = subprocess.Popen(
            [
                "nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                "-sd", str(d), "-n", f"node{i}",
                "--cluster_name", "offerloop-test",
                "--cluster", f"nats://127.0.0.1:{self.routes[i]}",
                "--routes", routes,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: _port_open(port), f"nats node {port}")

    def kill(self, i: int) -> None:
        """SIGKILL one server (its process id only)."""
        proc = self.procs.pop(self.ports[i])
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop(self) -> None:
        for i in range(len(self.ports)):
            if self.ports[i] in self.procs:
                self.kill(i)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def nats_cluster(root: Path) -> Iterator[NatsCluster]:
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server not installed")
    ports = free_ports(6)
    cluster = NatsCluster(root, ports[:3], ports[3:])
    try:
        for i in range(3):
            cluster.start_node(i)
        yield cluster
    finally:
        cluster.stop()

"""Hosts on one machine: Linux network namespaces joined by veth links to one bridge.

Each `Host` is a namespace with its own address on a private /24 (the root namespace, where
the test runs, is `.1` and every host's default route); processes started on a host see only
its address and loopback, so a killed host refuses connections the way a dead machine's
address does, and a qdisc on its link slows only that host. `Network.close` kills every
process it started and deletes every namespace and link, and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def namespaces_unavailable() -> str:
    """Why this machine cannot make network namespaces ("" when it can)."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"tgprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def ip(*args: str, netns: str = "") -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


@dataclass
class Host:
    name: str
    netns: str
    address: str
    link: str  # the veth end in the root namespace (on the bridge)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, log: Path, command: list[str], env: dict[str, str], *, user: str = ""
    ) -> subprocess.Popen[bytes]:
        """Run `command` inside this host (as `user` when given); output to `log`. Both `ip
        netns exec` and setpriv exec, so the Popen's pid is the command's own (SIGKILL hits
        it, not a wrapper)."""
        prefix = ["ip", "netns", "exec", self.netns]
        if user:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*prefix, *command], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *command],
            capture_output=True,
            text=True,
            timeout=30,
        )


class Network:
    """A bridge in the root namespace and one namespace per host on a random private /24."""

    def __init__(self) -> None:
        self.tag = f"{random.getrandbits(24):06x}"
        self.prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        self.bridge = f"tgb{self.tag}"
        self.gateway = f"{self.prefix}.1"
        self.hosts: dict[str, Host] = {}
        self.scratch_dirs: list[Path] = []
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> Host:
        number = len(self.hosts) + 10
        host = Host(
            name, f"tg{self.tag}-{name}", f"{self.prefix}.{number}", f"tgv{self.tag}{number}"
        )
        self.hosts[name] = host
        ip("netns", "add", host.netns)
        ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        ip("link", "set", host.link, "master", self.bridge, "up")
        ip("link", "set", "lo", "up", netns=host.netns)
        ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=host.netns)
        ip("link", "set", "eth0", "up", netns=host.netns)
        ip("route", "add", "default", "via", self.gateway, netns=host.netns)
        return host

    def scratch(self, name: str) -> Path:
        """A directory under /tmp (other users, such as postgres, can reach it; pytest's
        temporary directories are private to root), removed by `close`."""
        path = Path(tempfile.mkdtemp(prefix=f"tg-multihost-{name}-"))
        self.scratch_dirs.append(path)
        return path

    def close(self) -> None:
        for host in self.hosts.values():
            for process in host.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.hosts.clear()
        for path in self.scratch_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.scratch_dirs.clear()


@contextlib.contextmanager
def network() -> Iterator[Network]:
    net = Network()
    try:
        yield net
    finally:
        net.close()


def slow_link(host: Host, delay_ms: int) -> str:
    """Delay what `host` sends: netem when the kernel has it; otherwise (this machine's
    kernel is built without sch_netem) a token-bucket shaper whose queue delays, and beyond
    `delay_ms` of backlog drops, the host's replies. Returns the qdisc used."""
    netem = host.run("tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{delay_ms}ms")
    if netem.returncode == 0:
        return f"netem delay {delay_ms}ms"
    shaper = ["tbf", "rate", "2mbit", "burst", "16kb", "latency", f"{delay_ms}ms"]
    tbf = host.run("tc", "qdisc", "add", "dev", "eth0", "root", *shaper)
    if tbf.returncode != 0:
        raise RuntimeError(f"tc: netem: {netem.stderr.strip()}; tbf: {tbf.stderr.strip()}")
    return f"{' '.join(shaper)} (netem unavailable: {netem.stderr.strip()})"


def restore_link(host: Host) -> None:
    host.run("tc", "qdisc", "del", "dev", "eth0", "root")

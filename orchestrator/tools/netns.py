"""Replicas in network namespaces that the test creates (and removes), cut with iptables.

Layout: one namespace per replica (its own IP on 10.<a>.<b>.0/24), a switch namespace holding a
bridge, and one veth into the test's own namespace so the test's clients reach every replica.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def namespaces_available() -> str:
    """'' when namespaces and iptables can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return ""


@dataclass
class NetNS:
    n: int = 3
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000}{random.randrange(100)}")
    created: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.a, self.b = random.randrange(100, 250), random.randrange(1, 250)
        self.names = [f"orch{self.tag}n{i + 1}" for i in range(self.n)]
        self.switch = f"orch{self.tag}sw"
        self.hosts = [f"10.{self.a}.{self.b}.{i + 1}" for i in range(self.n)]
        self.client_ip = f"10.{self.a}.{self.b}.254"

    def up(self) -> None:
        _run("ip", "netns", "add", self.switch)
        self.created.append(self.switch)
        sw = ["ip", "netns", "exec", self.switch]
        _run(*sw, "ip", "link", "add", "br0", "type", "bridge")
        _run(*sw, "ip", "link", "set", "br0", "up")
        _run(*sw, "ip", "link", "set", "lo", "up")
        for i, (ns, host) in enumerate(zip(self.names, self.hosts, strict=True)):
            _run("ip", "netns", "add", ns)
            self.created.append(ns)
            _run(
                "ip",
                "link",
                "add",
                f"o{self.tag}a{i}",
                "type",
                "veth",
                "peer",
                "name",
                f"o{self.tag}b{i}",
            )
            _run("ip", "link", "set", f"o{self.tag}a{i}", "netns", ns)
            _run("ip", "link", "set", f"o{self.tag}b{i}", "netns", self.switch)
            ex = ["ip", "netns", "exec", ns]
            _run(*ex, "ip", "link", "set", "lo", "up")
            _run(*ex, "ip", "link", "set", f"o{self.tag}a{i}", "name", "eth0")
            _run(*ex, "ip", "addr", "add", f"{host}/24", "dev", "eth0")
            _run(*ex, "ip", "link", "set", "eth0", "up")
            _run(*sw, "ip", "link", "set", f"o{self.tag}b{i}", "master", "br0")
            _run(*sw, "ip", "link", "set", f"o{self.tag}b{i}", "up")
        # The test's own veth into the switch.
        root, peer = f"o{self.tag}c", f"o{self.tag}d"
        _run("ip", "link", "add", root, "type", "veth", "peer", "name", peer)
        self.root_links.append(root)
        _run("ip", "link", "set", peer, "netns", self.switch)
        _run(*sw, "ip", "link", "set", peer, "master", "br0")
        _run(*sw, "ip", "link", "set", peer, "up")
        _run("ip", "addr", "add", f"{self.client_ip}/24", "dev", root)
        _run("ip", "link", "set", root, "up")

    def down(self) -> None:
        for link in self.root_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def wrap(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.names[i]]

    def iptables(self, i: int, *rule: str) -> None:
        _run("ip", "netns", "exec", self.names[i], "iptables", *rule)

    def isolate(self, i: int) -> None:
        """Cut replica i from every other replica (the test's clients still reach it)."""
        for j, host in enumerate(self.hosts):
            if j != i:
                self.iptables(i, "-A", "INPUT", "-s", host, "-j", "DROP")
                self.iptables(i, "-A", "OUTPUT", "-d", host, "-j", "DROP")

    def drop_incoming(self, i: int, from_j: int) -> None:
        """Asymmetric: replica i no longer hears replica from_j (but from_j still hears i)."""
        self.iptables(i, "-A", "INPUT", "-s", self.hosts[from_j], "-j", "DROP")

    def lossy(self, probability: float) -> None:
        """Drop a share of the packets between replicas (not those of the test's clients)."""
        for i in range(self.n):
            self.iptables(
                i,
                "-A",
                "INPUT",
                "!",
                "-s",
                self.client_ip,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                str(probability),
                "-j",
                "DROP",
            )

    def heal(self) -> None:
        for i in range(self.n):
            self.iptables(i, "-F")

"""The nodes of a multi-node deployment: ``--nodes HEAD,WORKER[,…]``, each a Docker engine address, and the network
interface the nodes talk over (``--nic``).

``local`` is the engine this machine's settings name (``DOCKER_HOST``, else the local socket); any other entry is
an engine address docker-py speaks: ``ssh://user@host``, ``tcp://host:port`` or ``unix:///path`` (a second engine
on this machine, as the tests use). The first node is the head: it runs the Ray head and ``vllm serve``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidInput, PreflightRefused
from nemoclaw_runtime.kernel.settings import Settings

__all__ = ["LOCAL", "MAX_NODES", "Interface", "Node", "check_interface_name", "choose_interface", "head_address",
           "is_loopback", "local_interfaces", "node_settings", "parse_nodes", "reach_host"]

LOCAL = "local"
MAX_NODES = 64
#: Interfaces that never carry traffic between machines: container bridges and tunnels' ends.
_VIRTUAL_PREFIXES = ("docker", "br-", "veth", "virbr", "cni", "flannel", "cali", "vxlan", "tun", "tap", "ncfault")


@dataclass(frozen=True)
class Node:
    """One node: its place (0 is the head) and its engine address (``local`` for this machine's engine)."""

    index: int
    address: str

    @property
    def is_local(self) -> bool:
        return self.address == LOCAL

    @property
    def role(self) -> str:
        return "head" if self.index == 0 else "worker"

    @property
    def hostname(self) -> str | None:
        """The host part of a tcp:// or ssh:// address (None for ``local`` and unix://: this machine)."""
        if self.is_local or self.address.startswith("unix://"):
            return None
        return urlsplit(self.address).hostname

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "address": self.address, "role": self.role}


def parse_nodes(text: str | Sequence[str]) -> tuple[Node, ...]:
    """``HEAD,WORKER[,…]`` → the nodes, in order; every entry checked (exit 2 with the remedy, before anything)."""
    raw = text.split(",") if isinstance(text, str) else list(text)
    entries = [checks.check_plain_text(entry.strip(), "--nodes") for entry in raw]
    remedy = "pass --nodes local,ssh://user@host2 (the head first; local is this machine's engine)"
    if any(not entry for entry in entries):
        raise InvalidInput("Invalid --nodes: an entry is empty", remedy=remedy)
    if len(entries) < 2:
        raise InvalidInput(f"Invalid --nodes {','.join(entries)!r}: a multi-node deployment needs two nodes or more",
                           remedy=remedy + "; for one machine, leave --nodes out")
    if len(entries) > MAX_NODES:
        raise InvalidInput(f"Invalid --nodes: {len(entries)} nodes, at most {MAX_NODES}", remedy=remedy)
    addresses = [entry if entry.lower() == LOCAL else checks.check_docker_host(entry, "--nodes") for entry in entries]
    addresses = [LOCAL if a.lower() == LOCAL else a for a in addresses]
    twice = sorted({a for a in addresses if addresses.count(a) > 1})
    if twice:
        raise InvalidInput(f"Invalid --nodes: {', '.join(twice)} given twice (one container of each role per node)",
                           remedy=remedy)
    return tuple(Node(i, address) for i, address in enumerate(addresses))


def node_settings(settings: Settings, node: Node) -> Settings:
    """The settings whose engine is ``node``'s (``local``: the settings as they are)."""
    if node.is_local:
        return settings
    return settings.replace(docker_host=node.address, environ={**settings.environ, "DOCKER_HOST": node.address})


@dataclass(frozen=True)
class Interface:
    """The network interface the nodes talk over and this machine's IPv4 address on it."""

    name: str
    address: str
    detected: bool  # chosen here, not named with --nic


def choose_interface(nic: str | None, addresses: Mapping[str, Sequence[str]], up: Mapping[str, bool]) -> Interface:
    """``--nic IFACE`` (it must exist and hold an IPv4 address), else the one physical-looking interface that is up
    with an IPv4 address (loopback and container bridges left out); ``addresses``/``up`` come from psutil."""
    if nic is not None:
        name = checks.check_plain_text(nic, "--nic")
        if name not in addresses:
            raise InvalidInput(f"Invalid --nic {name!r}: this machine has no such interface (it has "
                               f"{', '.join(sorted(addresses)) or 'none'})",
                               remedy="pass the interface of the link between the nodes, as `ip addr` lists it")
        if not addresses[name]:
            raise InvalidInput(f"Invalid --nic {name!r}: it has no IPv4 address",
                               remedy="give the interface an address (the recipes use static ones), or name another")
        return Interface(name, addresses[name][0], detected=False)
    candidates = sorted(name for name, ips in addresses.items()
                        if ips and up.get(name, False) and name != "lo" and not name.startswith(_VIRTUAL_PREFIXES)
                        and not all(ipaddress.ip_address(ip).is_loopback for ip in ips))
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise PreflightRefused(f"Cannot tell which network interface links the nodes (candidates: {found})",
                               remedy="pass --nic IFACE (the link between the nodes, e.g. the CX-7 port of a DGX "
                                      "Spark pair)")
    name = candidates[0]
    return Interface(name, addresses[name][0], detected=True)


def local_interfaces() -> tuple[dict[str, list[str]], dict[str, bool]]:
    """This machine's interfaces: IPv4 addresses by name, and whether each is up (psutil)."""
    import psutil

    addresses = {name: [a.address for a in entries if a.family == socket.AF_INET]
                 for name, entries in psutil.net_if_addrs().items()}
    up = {name: stats.isup for name, stats in psutil.net_if_stats().items()}
    return addresses, up


#: A network interface's name as Linux allows it (IFNAMSIZ: 15 characters), for a --nic that cannot be checked here.
_INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")


def check_interface_name(nic: str) -> str:
    """``--nic`` naming an interface of other machines (a remote head): only its form can be checked here."""
    name = checks.check_plain_text(nic, "--nic")
    if not _INTERFACE_NAME.fullmatch(name):
        raise InvalidInput(f"Invalid --nic {name!r}: not an interface name (letters, digits, . _ - : @; at most 15)",
                           remedy="pass the interface of the link between the nodes, as `ip addr` lists it")
    return name


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def reach_host(head: Node, host: str) -> str:
    """Where this machine reaches the head's server (ready for a URL): as a single host would (a wildcard bind on
    loopback), or a remote head's own address when the server listens on every interface there."""
    from nemoclaw_runtime.runtimes.docker.spec import WILDCARD_HOSTS, url_host

    if head.hostname is not None and host in WILDCARD_HOSTS:
        return url_host(head.hostname)
    return url_host(host)


def head_address(head: Node, interface: Interface | None) -> str:
    """The address the workers reach the head's Ray on: the interface's address for a head on this machine, the
    resolved host of a remote head's engine address."""
    if head.hostname is None:
        if interface is None:
            raise PreflightRefused("The head is this machine but no network interface was chosen",
                                   remedy="pass --nic IFACE")
        return interface.address
    try:
        return socket.gethostbyname(head.hostname)
    except OSError as exc:
        raise PreflightRefused(f"Cannot resolve the head {head.hostname}: {exc.strerror or exc}",
                               remedy="use an address the nodes resolve, or the head's IP address") from None

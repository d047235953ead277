"""``ContainerSpec``: the frozen value that gets run, printed by ``--dry-run`` and asserted by unit tests.

A runtime driver turns (model, options, settings) into a spec; the Docker layer turns a spec into an engine call.
Secret env values are :class:`Secret` instances: they reach the engine's create call and nothing else — every
display form (``to_dict``, ``repr``) shows ``***``, and the spec hash covers only their names.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from nemoclaw_runtime.kernel.checks import CONTAINER_NAME_PATTERN
from nemoclaw_runtime.kernel.secret import REDACTED, Secret

__all__ = [
    "CONTAINER_NAME_RE", "ContainerSpec", "GpuRequest", "LABEL_GPUS", "LABEL_GROUP", "LABEL_NODE", "LABEL_NODES",
    "LABEL_ROLE", "LABEL_GPU_MEMORY_UTILIZATION", "LABEL_HOST",
    "LABEL_IMAGE", "LABEL_IMAGE_DIGEST", "LABEL_MANAGED", "LABEL_MODEL", "LABEL_PORT", "LABEL_RUNTIME",
    "LABEL_SERVED_MODEL", "LABEL_SPEC_HASH", "LABEL_VERSION", "LABEL_WEIGHTS_REVISION", "Mount", "PortBinding",
    "ROLE_RAY_HEAD", "ROLE_RAY_WORKER", "ROLE_SERVE",
    "WILDCARD_HOSTS", "image_repository", "split_reference", "url_host",
]

#: Every label we set lives under this prefix; ownership is decided by ``LABEL_MANAGED`` alone.
LABEL_PREFIX = "io.nemoclaw.runtime"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_RUNTIME = f"{LABEL_PREFIX}.runtime"
LABEL_MODEL = f"{LABEL_PREFIX}.model"
LABEL_SERVED_MODEL = f"{LABEL_PREFIX}.served-model"
LABEL_IMAGE = f"{LABEL_PREFIX}.image"
LABEL_IMAGE_DIGEST = f"{LABEL_PREFIX}.image-digest"
LABEL_SPEC_HASH = f"{LABEL_PREFIX}.spec-hash"
LABEL_VERSION = f"{LABEL_PREFIX}.version"
LABEL_PORT = f"{LABEL_PREFIX}.port"
LABEL_HOST = f"{LABEL_PREFIX}.host"
#: The GPU indices a managed container computes on (``0,3``; empty for none) and the share of each GPU's memory
#: it may take (vLLM's ``--gpu-memory-utilization``): how ``up`` places a second model beside the first.
LABEL_GPUS = f"{LABEL_PREFIX}.gpus"
LABEL_GPU_MEMORY_UTILIZATION = f"{LABEL_PREFIX}.gpu-memory-utilization"
#: The Hugging Face commit the weights are pinned to (vLLM's ``--revision``); absent when none is pinned.
LABEL_WEIGHTS_REVISION = f"{LABEL_PREFIX}.weights-revision"
#: A deployment over several nodes (``up --nodes``): every container of it carries the group (the deployment's
#: name), its node's index and its role; the serve container also lists the nodes' engine addresses, in order.
LABEL_GROUP = f"{LABEL_PREFIX}.group"
LABEL_NODE = f"{LABEL_PREFIX}.node"
LABEL_ROLE = f"{LABEL_PREFIX}.role"
LABEL_NODES = f"{LABEL_PREFIX}.nodes"
#: The roles (``LABEL_ROLE``): the server answers the API; the Ray containers and a weights copy serve none.
ROLE_SERVE, ROLE_RAY_HEAD, ROLE_RAY_WORKER = "serve", "ray-head", "ray-worker"

EnvValue: TypeAlias = "str | Secret"

#: Docker's own rule for container names (two characters at least); it also keeps lock file names inside their
#: folder. The rule is kernel/checks.py's, anchored whole (\Z: `$` lets a trailing newline through).
CONTAINER_NAME_RE = re.compile(rf"^(?:{CONTAINER_NAME_PATTERN.pattern})\Z")

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def url_host(host: str | None) -> str:
    """How a client on this machine reaches a port published on ``host``, ready for a URL: a wildcard bind is
    reached on loopback, an IPv6 address goes in brackets."""
    if host is None or host in WILDCARD_HOSTS or host == "localhost":
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    host_port: int
    host_ip: str = "127.0.0.1"
    protocol: Literal["tcp", "udp"] = "tcp"

    def to_dict(self) -> dict[str, Any]:
        return {"container_port": self.container_port, "host_port": self.host_port,
                "host_ip": self.host_ip, "protocol": self.protocol}


@dataclass(frozen=True)
class Mount:
    """A bind mount (``kind='bind'``, ``source`` a host path) or a named volume (``kind='volume'``)."""

    source: str
    target: str
    kind: Literal["bind", "volume"] = "bind"
    read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "kind": self.kind, "read_only": self.read_only}


@dataclass(frozen=True)
class GpuRequest:
    """``all`` GPUs, ``none``, or specific ``indices`` (``--gpus 0,1``)."""

    mode: Literal["all", "none", "indices"] = "all"
    indices: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> GpuRequest:
        from nemoclaw_runtime.kernel.errors import InvalidInput

        value = text.strip().lower()
        if value in ("all", ""):
            return cls("all")
        if value == "none":
            return cls("none")
        parts = [p.strip() for p in value.split(",")]
        # ASCII digits only (isdigit alone takes superscripts and other scripts' digits), four at most
        if not parts or not all(p.isascii() and p.isdigit() and len(p) <= 4 for p in parts):
            raise InvalidInput(
                f"Invalid --gpus value {text!r}: expected all, none, or GPU indices such as 0,1",
                remedy="pass --gpus all, --gpus none, or comma-separated indices from `nemoclaw-runtime gpus`",
            )
        return cls("indices", tuple(sorted({int(p) for p in parts})))

    def __str__(self) -> str:
        return ",".join(map(str, self.indices)) if self.mode == "indices" else self.mode


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one managed container. Hashable, comparable, printable without secrets."""

    name: str
    runtime: str
    image: str  # the reference the user asked for (tag form), e.g. nvcr.io/nvidia/vllm:26.05.post1-py3
    command: tuple[str, ...]
    image_digest: str | None = None  # sha256:… of the pinned manifest, once resolved
    entrypoint: tuple[str, ...] | None = None  # None keeps the image's own entrypoint
    env: tuple[tuple[str, EnvValue], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortBinding, ...] = ()
    gpus: GpuRequest = field(default_factory=GpuRequest)
    mounts: tuple[Mount, ...] = ()
    restart_policy: str | None = "unless-stopped"
    shm_size: str | None = None
    ipc_mode: str | None = None
    network_mode: str | None = None  # "host" for the nodes of a multi-node deployment (Ray and NCCL need it)

    @property
    def image_ref(self) -> str:
        """What the engine runs: ``repo@sha256:…`` when pinned, else the requested reference."""
        if not self.image_digest:
            return self.image
        return f"{image_repository(self.image)}@{self.image_digest}"

    def env_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.env)

    def secret_env_names(self) -> tuple[str, ...]:
        return tuple(name for name, value in self.env if isinstance(value, Secret))

    def spec_hash(self) -> str:
        """A stable fingerprint of what would run; secret values are excluded (only their names count)."""
        payload = self.to_dict()
        payload.pop("labels")  # labels carry the hash itself
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The display form (``--dry-run``, ``--json``): secret env values are ``***``."""
        return {
            "name": self.name,
            "runtime": self.runtime,
            "image": self.image,
            "image_digest": self.image_digest,
            "image_ref": self.image_ref,
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "command": list(self.command),
            "env": {k: (REDACTED if isinstance(v, Secret) else v) for k, v in self.env},
            "labels": dict(self.labels),
            "ports": [p.to_dict() for p in self.ports],
            "gpus": str(self.gpus),
            "mounts": [m.to_dict() for m in self.mounts],
            "restart_policy": self.restart_policy,
            "shm_size": self.shm_size,
            "ipc_mode": self.ipc_mode,
            # only when set: the hashes of single-host specs (the reuse fast path) stay what they were
            **({"network_mode": self.network_mode} if self.network_mode else {}),
        }


def image_repository(ref: str) -> str:
    """Strip ``:tag`` / ``@digest`` from the last path segment only, so a registry port survives.

    >>> image_repository("127.0.0.1:5000/team/img:1.0")
    '127.0.0.1:5000/team/img'
    """
    head, sep, last = ref.rpartition("/")
    last = last.split("@", 1)[0].split(":", 1)[0]
    return f"{head}{sep}{last}"


def split_reference(ref: str) -> tuple[str, str]:
    """``(repository, tag or digest)``; a digest wins over a tag, the tag defaults to ``latest``, a registry port
    survives.

    >>> split_reference("127.0.0.1:5000/team/img:1.0@sha256:ab")
    ('127.0.0.1:5000/team/img', 'sha256:ab')
    """
    repository = image_repository(ref)
    rest = ref[len(repository):]
    if rest.startswith("@"):
        return repository, rest[1:]
    if rest.startswith(":"):
        tag, _, digest = rest[1:].partition("@")
        return repository, digest or tag
    return repository, "latest"

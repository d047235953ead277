"""The pieces every exported manifest shares: names, labels, probes, Secret references, volumes, image references.

Plain dicts in the shape the Kubernetes API takes (what ``kubectl apply`` reads from YAML). Nothing here reads the
environment or a file: a Secret is only ever *referenced* (``secretKeyRef`` names a Secret and a key), never valued.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.text import shown
from nemoclaw_runtime.runtimes.docker.spec import image_repository

#: The port every server we export listens on in its container (vLLM and NIM alike), and the Service's port.
SERVER_PORT = 8000
PORT_NAME = "http"
MANAGED_BY = "nemoclaw-runtime"
#: /dev/shm for NCCL and the tokenizer workers (``--ipc host`` / ``--shm-size`` on one host).
SHM_SIZE = "16Gi"
#: The probe period; a startup probe gets ``ceil(budget / period)`` failures before the kubelet restarts the pod.
PROBE_PERIOD_S = 10
#: A Service name is a DNS-1035 label (a letter first); an object name within it keeps to that too.
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
#: A namespace is a DNS-1123 label (a digit first is allowed).
_DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
#: A derived name stays short enough for the suffixes we add (``-hf-cache``, ``-leader``, LWS pod ordinals).
DERIVED_NAME_CHARS = 40


def check_namespace(value: str) -> str:
    """A namespace as Kubernetes accepts it: a DNS-1123 label (``[a-z0-9-]``, at most 63, alphanumeric ends)."""
    if not isinstance(value, str) or not _DNS_1123.fullmatch(value):
        raise InvalidInput(f"Invalid --namespace {shown(value)}: a namespace is at most 63 lower-case letters, "
                           "digits or '-', starting and ending with a letter or digit",
                           remedy="pass a namespace such as default or llm-serving")
    return value


def check_name(value: str, *, limit: int = 63) -> str:
    """An object name usable for the Service too: a DNS-1035 label (a letter first) of at most ``limit``."""
    if not isinstance(value, str) or not _DNS_1035.fullmatch(value) or len(value) > limit:
        raise InvalidInput(f"Invalid --name {shown(value)}: a name is at most {limit} lower-case letters, digits or "
                           "'-', starting with a letter and ending with a letter or digit (a Service name)",
                           remedy="pass a name such as qwen-27b, or leave --name out to derive it from the model")
    return value


def derive_name(runtime: str, model: str) -> str:
    """``vllm-qwen3-6-27b`` from ``qwen3.6-27b``: the runtime first (so it starts with a letter), the model slug
    lower-cased with every other character as ``-``, runs of ``-`` folded, trimmed to :data:`DERIVED_NAME_CHARS`."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower().removeprefix("hf:")).strip("-")
    return f"{runtime}-{slug}"[:DERIVED_NAME_CHARS].rstrip("-")


def labels(runtime: str, name: str, **extra: str) -> dict[str, str]:
    """The recommended labels (``app.kubernetes.io/*``); ``selector_labels`` is the subset a selector matches."""
    return {**selector_labels(runtime, name), "app.kubernetes.io/managed-by": MANAGED_BY, **extra}


def selector_labels(runtime: str, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": runtime, "app.kubernetes.io/instance": name}


def metadata(name: str, namespace: str, object_labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(object_labels)}


def secret_env(variable: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    """An environment variable taken from a Secret at start: a reference only, never a value."""
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": variable, "valueFrom": {"secretKeyRef": ref}}


def plain_env(variable: str, value: str) -> dict[str, Any]:
    return {"name": variable, "value": value}


def http_probe(path: str, *, period_s: int = PROBE_PERIOD_S, failures: int = 3, timeout_s: int = 5) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT_NAME}, "periodSeconds": period_s, "failureThreshold": failures,
            "timeoutSeconds": timeout_s}


def startup_probe(path: str, budget_s: float) -> dict[str, Any]:
    """A startup probe whose ``failureThreshold × periodSeconds`` covers the readiness budget: loading a large
    model takes minutes, and the liveness probe must not kill the pod before it has ever been up."""
    return http_probe(path, failures=max(1, math.ceil(budget_s / PROBE_PERIOD_S)))


def shm_volume(size: str = SHM_SIZE) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount): an in-memory ``emptyDir`` at /dev/shm, what ``--ipc host`` gives a container on one host."""
    return ({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": size}},
            {"name": "dshm", "mountPath": "/dev/shm"})


def gibibytes(size_bytes: int, factor: float) -> str:
    """``size × factor`` rounded up to whole GiB, as a quantity (``"40Gi"``)."""
    return f"{max(1, math.ceil(size_bytes * factor / 1024**3))}Gi"


def pvc(name: str, namespace: str, object_labels: Mapping[str, str], size: str,
        access_mode: str = "ReadWriteOnce") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata(name, namespace, object_labels),
            "spec": {"accessModes": [access_mode], "resources": {"requests": {"storage": size}}}}


def service(name: str, namespace: str, object_labels: Mapping[str, str], selector: Mapping[str, str]) -> dict[str, Any]:
    """A ClusterIP Service on :data:`SERVER_PORT`: the ``-p 127.0.0.1:P:8000`` of one host, inside the cluster."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, namespace, object_labels),
            "spec": {"type": "ClusterIP", "selector": dict(selector),
                     "ports": [{"name": PORT_NAME, "port": SERVER_PORT, "targetPort": PORT_NAME,
                                "protocol": "TCP"}]}}


def container_port() -> dict[str, Any]:
    return {"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"}


def k8s_arg(token: str) -> str:
    """One argv element as Kubernetes must be given it: the kubelet expands ``$(VAR)`` in ``command`` and
    ``args``, so a literal ``$(`` is written ``$$(``."""
    return token.replace("$(", "$$(")


def shell_line(argv: Iterable[str]) -> str:
    """argv as one ``sh -c`` line: every element quoted, and ``$(`` escaped from the kubelet's expansion."""
    return " ".join(k8s_arg(shlex.quote(token)) for token in argv)


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way manifests need it: ``repository`` (registry and path), ``tag``, ``digest``."""

    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Split as the engine layer splits references (a registry port survives; tag and digest both kept)."""
        repository = image_repository(text)
        tag, _, digest = text[len(repository):].partition("@")
        return cls(repository, tag.removeprefix(":") or None, digest or None)

    def pinned(self, digest: str | None) -> ImageRef:
        """This reference with ``digest`` when it carries none of its own."""
        return self if self.digest or not digest else ImageRef(self.repository, self.tag, digest)

    @property
    def reference(self) -> str:
        """``repo@sha256:…`` when pinned (the digest alone decides what is pulled), else ``repo:tag``."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag or 'latest'}"


def one_replica_documents(runtime: str, name: str, namespace: str, pod: dict[str, Any], cache: str,
                         cache_size: str) -> list[dict[str, Any]]:
    """A one-replica Deployment of ``pod`` (``Recreate``: a new pod never runs beside the old one on the same GPUs
    and cache), the claim ``cache`` it mounts, and the Service in front of it."""
    common = labels(runtime, name)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(name, namespace, common),
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": selector_labels(runtime, name)},
                 "template": {"metadata": {"labels": common}, "spec": pod}},
    }
    return [pvc(cache, namespace, common, cache_size), deployment,
            service(name, namespace, common, selector_labels(runtime, name))]


__all__ = [
    "DERIVED_NAME_CHARS", "MANAGED_BY", "PORT_NAME", "PROBE_PERIOD_S", "SERVER_PORT", "SHM_SIZE", "ImageRef",
    "check_name", "check_namespace", "container_port", "derive_name", "gibibytes", "http_probe", "k8s_arg", "labels",
    "metadata", "one_replica_documents", "plain_env", "pvc", "secret_env", "selector_labels", "service", "shell_line",
    "shm_volume", "startup_probe",
]

"""``export kubernetes``: the plan ``up`` would run on one host, written as Kubernetes manifests instead.

:func:`export_kubernetes` resolves the model and image as ``up`` does (registry, settings, lock) and returns a
:class:`KubernetesExport`: the documents, and notes saying which Secrets must exist and what was assumed. Nothing is
applied to a cluster and nothing is fetched: the manifests are values, written as YAML or JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.events import EventSink, Warning, discard
from nemoclaw_runtime.kernel.names import RUNTIME_NIM, RUNTIME_VLLM
from nemoclaw_runtime.kernel.text import shown
from nemoclaw_runtime.runtimes.export import nim_manifests, vllm_manifests
from nemoclaw_runtime.runtimes.export.plan import (
    FORMAT_LEADERWORKERSET,
    FORMAT_NIM_OPERATOR,
    HF_SECRET,
    HF_SECRET_KEY,
    NGC_API_SECRET,
    NGC_API_SECRET_KEY,
    NGC_PULL_SECRET,
    ExportPlan,
)
from nemoclaw_runtime.runtimes.export.resolve import Request, resolve

if TYPE_CHECKING:
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.runtimes.fit import ModelSource


@dataclass(frozen=True)
class KubernetesExport:
    """The manifests of one export. ``to_yaml()`` is what ``kubectl apply -f`` reads; ``to_dict()`` the JSON."""

    documents: tuple[dict[str, Any], ...]
    runtime: str
    format: str
    namespace: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "format": self.format, "namespace": self.namespace,
                "documents": list(self.documents), "notes": list(self.notes)}

    def to_yaml(self) -> str:
        """Multi-document YAML, the notes first as comments (``kubectl`` skips them, a reader sees them)."""
        header = "".join(f"# {note}\n" for note in self.notes)
        return header + yaml.safe_dump_all(self.documents, sort_keys=False, default_flow_style=False, width=120)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, path: str | os.PathLike[str], *, as_json: bool = False) -> Path:
        """Write the YAML (or JSON) to ``path`` atomically, mode 0644; returns the path. Anything but a regular
        file or a new path (a directory, a device, a FIFO) → :class:`InvalidInput`."""
        target = output_path(path)
        return _write_text(target, self.to_json() if as_json else self.to_yaml())


def export_kubernetes(runtime: str, *, model: str | None = None, gpus: int | None = None, nodes: int = 1,
                      namespace: str = "default", name: str | None = None, format: str = "auto",
                      image: str | None = None, lock_path: str | os.PathLike[str] | None = None,
                      settings: Settings | None = None, events: EventSink = discard,
                      model_source: ModelSource | None = None) -> KubernetesExport:
    """Manifests that serve ``model`` with ``runtime`` (``vllm`` or ``nim``) on Kubernetes.

    ``format``: vLLM ``auto`` (a Deployment on one node, a LeaderWorkerSet for ``nodes`` > 1), ``deployment`` or
    ``leaderworkerset``; NIM ``auto`` (= ``nim-operator``: NIMCache + NIMService, ``multiNode`` for ``nodes`` > 1)
    or ``deployment`` (one node). ``gpus`` per pod (default 1). ``lock_path``: a lock from ``nemoclaw-runtime
    lock`` pins the image digest (and the model and weights revision). ``model_source`` (optional, e.g. the fit's
    hub source) sizes the cache volume from the weights; without it the volume asks for 100Gi. No secret value is
    ever written: tokens are Secret references, and the notes say how to create the Secrets.
    Bad input → :class:`InvalidInput` (exit 2); an unknown model → the registry's ``UnknownModel``.
    """
    from nemoclaw_runtime.kernel.settings import Settings

    settings = settings or Settings.from_env()
    lock = checks.check_file_path(lock_path, "--lock") if lock_path is not None else None
    request = Request(runtime=runtime, model=model, gpus=gpus, nodes=nodes, namespace=namespace, name=name,
                      format=format, image=image, lock_path=lock)
    plan = resolve(request, settings, model_source)
    for note in request.notes:
        if "not pinned" in note:
            events(Warning(note))
    notes = (*request.notes, *_secret_notes(plan), *_format_notes(plan))
    return KubernetesExport(documents=tuple(_documents(plan)), runtime=plan.runtime, format=plan.format,
                            namespace=plan.namespace, notes=notes)


def _documents(plan: ExportPlan) -> list[dict[str, Any]]:
    if plan.format == FORMAT_NIM_OPERATOR:
        return nim_manifests.operator_documents(plan)
    if plan.runtime == RUNTIME_NIM:
        return nim_manifests.deployment_documents(plan)
    if plan.format == FORMAT_LEADERWORKERSET:
        return vllm_manifests.leaderworkerset_documents(plan)
    return vllm_manifests.deployment_documents(plan)


def _secret_notes(plan: ExportPlan) -> tuple[str, ...]:
    """How to create every Secret the manifests name — from a file holding the key (never a value on a command
    line, where shell history and `ps` would keep it)."""
    ns = f" -n {plan.namespace}"
    if plan.runtime == RUNTIME_VLLM:
        need = "optional: the model is not gated" if plan.token_optional else "required: the model is gated"
        return (f"Secret {HF_SECRET} ({need}): kubectl create secret generic {HF_SECRET}{ns} "
                f"--from-file=./{HF_SECRET_KEY} (a file named {HF_SECRET_KEY} holding the token alone)",)
    return (f"Secret {NGC_API_SECRET} (required): kubectl create secret generic {NGC_API_SECRET}{ns} "
            f"--from-file=./{NGC_API_SECRET_KEY} (a file named {NGC_API_SECRET_KEY} holding the key alone)",
            f"Secret {NGC_PULL_SECRET} (required, pulls from nvcr.io): kubectl create secret generic "
            f"{NGC_PULL_SECRET}{ns} --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=config.json "
            "(a Docker config.json with a login to nvcr.io as $oauthtoken; `docker login nvcr.io` writes one)")


def _format_notes(plan: ExportPlan) -> tuple[str, ...]:
    if plan.format == FORMAT_LEADERWORKERSET:
        return ("needs LeaderWorkerSet installed (https://lws.sigs.k8s.io/docs/installation/); each pod keeps its own "
                "HF cache on an emptyDir, as vLLM's example does",
                f"the Ray leader/worker commands run {vllm_manifests.RAY_SCRIPT}, as vLLM's images ship it; with "
                "another image, check that path",
                f"clients reach it through the Service {plan.name}-leader on port 8000")
    if plan.format == FORMAT_NIM_OPERATOR:
        multi = ("; several nodes also need LeaderWorkerSet and a ReadWriteMany storage class for the NIMCache"
                 if plan.nodes > 1 else "")
        return (f"needs the NVIDIA NIM Operator installed{multi}",)
    return ()


def output_path(value: str | os.PathLike[str]) -> Path:
    """Where ``-o`` may write (the kernel's one check for it)."""
    return checks.check_output_file(value, "--output")


def _write_text(path: Path, text: str) -> Path:
    """Written atomically (the lock file's writer); a folder that cannot be written is exit 2 with the remedy."""
    from nemoclaw_runtime.runtimes.lockfile import write_text_atomically

    try:
        return write_text_atomically(text, path)
    except OSError as exc:
        raise InvalidInput(f"Cannot write {shown(str(path))}: {exc.strerror or exc}",
                           remedy="pass -o FILE in a folder you can write") from None


__all__ = ["KubernetesExport", "export_kubernetes", "output_path"]

"""``nemoclaw-runtime export kubernetes vllm|nim --model M``: the plan ``up`` would run, as Kubernetes manifests.

One library call (``nemoclaw_runtime.api.export_kubernetes``): multi-document YAML on stdout (the notes as comments
first), JSON with ``--json``, or either written atomically to ``-o FILE`` with a short summary on stdout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option
from nemoclaw_runtime.cli._params import whole_number

FORMAT_HELP = ("vllm: auto (a Deployment on one node, a LeaderWorkerSet on several), deployment, leaderworkerset; "
               "nim: auto (= nim-operator: NIMCache + NIMService), deployment.")


@click.group("export", no_args_is_help=False)  # bare `export`: "Missing command", exit 2, one line
def export() -> None:
    """Write what `up` would run as manifests for another orchestrator."""


@export.command("kubernetes")
@click.argument("runtime", metavar="vllm|nim")
@click.option("--model", metavar="SLUG|HF_ID",
              help="The model (vllm: a registry slug or ORG/NAME; nim: a catalog name). Default: NEMOCLAW_VLLM_MODEL "
                   "(vllm) or NEMOCLAW_MODEL (nim); a cluster has no host default.")
@click.option("--gpus", type=whole_number(1, 64), metavar="N",
              help="GPUs per pod (per node with --nodes); more than one: tensor parallelism. Default 1.")
@click.option("--nodes", type=whole_number(1, 64), default=1, show_default=True, metavar="N",
              help="Nodes to spread one server over (pipeline parallelism across them).")
@click.option("--namespace", default="default", show_default=True, help="The namespace of every object.")
@click.option("--name", help="The name of the objects (default: from the model, e.g. vllm-qwen3-6-27b).")
@click.option("--format", "format_", default="auto", show_default=True, metavar="FORMAT", help=FORMAT_HELP)
@click.option("--image", help="The image (default: the lock's, else NEMOCLAW_<RUNTIME>_IMAGE, else the registry's); "
                              "REPOSITORY@sha256:… pins it.")
@click.option("--lock", "lock_path", metavar="PATH",
              help="A lock from `nemoclaw-runtime lock`: its image digest, model and weights revision are exported.")
@click.option("-o", "--output", "output_path", metavar="FILE",
              help="Write the manifests here (atomically) instead of printing them.")
@json_option
def kubernetes(runtime: str, model: str | None, gpus: int | None, nodes: int, namespace: str, name: str | None,
               format_: str, image: str | None, lock_path: str | None, output_path: str | None,
               json_mode: bool) -> None:
    """Write Kubernetes manifests for RUNTIME (vllm or nim) from the same registry entry `up` serves.

    \b
    vllm, one node: Deployment + Service (ClusterIP, port 8000) + a PVC for the
    HF cache; the serve argv as args, nvidia.com/gpu limits, /dev/shm in memory,
    a startup probe covering NEMOCLAW_VLLM_READY_TIMEOUT, then /health probes.
    vllm, --nodes N: a LeaderWorkerSet (Ray leader + workers, tensor parallel
    within a node, pipeline parallel across nodes) + a Service on the leader.
    nim: the NIM Operator's NIMCache + NIMService, or --format deployment.
    Tokens are Secret references only (hf-token, ngc-api-secret, ngc-secret):
    the notes say how to create them. The image is pinned by digest when
    --image carries one or --lock records one.
    \b
    Examples:
      nemoclaw-runtime export kubernetes vllm --model qwen3.6-27b -o qwen.yaml
      nemoclaw-runtime export kubernetes vllm --model deepseek-v4-flash --gpus 8 --nodes 2
      nemoclaw-runtime export kubernetes nim --model meta/llama-3.1-8b-instruct --namespace llm
      nemoclaw-runtime export kubernetes vllm --lock qwen.lock.json --json
    """
    output = Output(json_mode)
    result = api.export_kubernetes(runtime, model=model, gpus=gpus, nodes=nodes, namespace=namespace, name=name,
                                   format=format_, image=image, lock_path=lock_path, settings=output.settings(),
                                   events=output.events())
    data = result.to_dict()
    if output_path is None:
        output.result(data, lambda: result.to_yaml().splitlines())
        return
    written = result.write(output_path, as_json=json_mode)
    output.result({**_summary(data), "path": str(written)}, lambda: _lines(data, str(written)))


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    kinds = [f"{doc['kind']}/{doc['metadata']['name']}" for doc in data["documents"]]
    return {"runtime": data["runtime"], "format": data["format"], "namespace": data["namespace"], "objects": kinds,
            "notes": data["notes"]}


def _lines(data: dict[str, Any], path: str) -> Iterator[str]:
    summary = _summary(data)
    yield f"✓ wrote {len(summary['objects'])} manifests ({data['format']}) to {path}"
    for kind in summary["objects"]:
        yield f"  {kind}"
    for note in data["notes"]:
        yield f"  · {note}"
    yield f"  apply: kubectl apply -n {data['namespace']} -f {path}"


__all__ = ["export", "kubernetes"]

"""``nemoclaw-runtime up RUNTIME``: one library call (``api.plan`` with ``--dry-run``, else ``api.up``), rendered.

On a terminal the masked prompt is handed to the library as ``prompt_secret``; the library decides when to ask
(a NIM key the environment lacks, one more try after a rejected key)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click

from nemoclaw_runtime import api
from nemoclaw_runtime.cli._output import Output, json_option
from nemoclaw_runtime.cli._params import PORT, SECONDS, runtime_argument
from nemoclaw_runtime.cli._prompt import masked_prompt_if_interactive
from nemoclaw_runtime.kernel.units import format_bytes


@click.command()
@runtime_argument()
@click.option("--model", help="vLLM: registry slug or full Hugging Face id; NIM: catalog model; Ollama: any tag"
              " (default: the host's default).")
@click.option("--port", type=PORT, help="Host port (vLLM/NIM: NEMOCLAW_VLLM_PORT or 8000; Ollama: 11434).")
@click.option("--gpus", default="all", show_default=True, help="all, none, or indices such as 0,1.")
@click.option("--image", help="Run this image instead of the registry's (mirrors, air-gapped hosts).")
@click.option("--name", help="Container name (nemoclaw-vllm, nemoclaw-nim-<name>, nemoclaw-ollama by default).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the port is published on; anything but loopback exposes the server to the network.")
@click.option("--no-prefetch", is_flag=True, help="Let the container download the weights itself.")
@click.option("--timeout", "timeout_s", type=SECONDS,
              help="Seconds to wait for readiness (vLLM 1800, NIM 1200, Ollama 300 by default).")
@click.option("--no-validate", is_flag=True, help="Skip the real request sent once the server is ready.")
@click.option("--allow-no-tools", is_flag=True,
              help="Ollama: accept a model without the tools capability (agents need tool calling).")
@click.option("--max-model-len", "max_model_len", metavar="N|auto",
              help="vLLM: serve at N tokens of context, or auto: the largest that fits this host (default the "
                   "registry's; NEMOCLAW_VLLM_MAX_MODEL_LEN).")
@click.option("--no-fit-check", is_flag=True,
              help="vLLM: start even when the fit says the model cannot fit this host (a warning instead of exit 3).")
@click.option("--lock", "lock_path", metavar="PATH",
              help="The lock file: written after a start (default <state dir>/locks/<container-name>.json), read "
                   "with --locked.")
@click.option("--locked", is_flag=True,
              help="Serve exactly what the lock file records (image digest, weights revision, argv); resolve "
                   "nothing new, refuse (exit 3) what differs.")
@click.option("--nodes", metavar="HEAD,WORKER[,…]",
              help="vLLM over several machines: each node's Docker engine (local, ssh://user@host, tcp://host:port), "
                   "the head first; vLLM's Ray executor splits the model across them.")
@click.option("--nic", metavar="IFACE",
              help="With --nodes: the network interface between the nodes (NCCL, Gloo, Ray); detected when there is "
                   "one candidate.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and the fit (no download, no container; the fit reads config and headers only).")
@json_option
def up(runtime: str, model: str | None, port: int | None, gpus: str, image: str | None, name: str | None,
       host: str, no_prefetch: bool, timeout_s: float | None, no_validate: bool, allow_no_tools: bool,
       max_model_len: str | None, no_fit_check: bool, lock_path: str | None, locked: bool, nodes: str | None,
       nic: str | None, dry_run: bool, json_mode: bool) -> None:
    """Start RUNTIME serving a model and wait until it answers.

    \b
    Examples:
      nemoclaw-runtime up vllm --model qwen3.6-27b
      nemoclaw-runtime up vllm --dry-run --json
      nemoclaw-runtime up vllm --model hf:Qwen/Qwen3-8B --max-model-len auto
      NGC_API_KEY=... nemoclaw-runtime up nim
      nemoclaw-runtime up ollama --model qwen3.5:9b
      nemoclaw-runtime up vllm --lock qwen.lock.json --locked
      nemoclaw-runtime up vllm --model qwen3.6-27b --nodes local,ssh://me@spark2 --nic enp1s0f0np0
    """
    from nemoclaw_runtime.kernel.settings import Settings

    output = Output(json_mode)
    settings = Settings.from_env(os.environ)
    options: dict[str, Any] = dict(model=model, port=port, gpus=gpus, image=image, name=name, host=host,
                                   prefetch=not no_prefetch, timeout_s=timeout_s, validate=not no_validate,
                                   allow_no_tools=allow_no_tools, max_model_len=max_model_len,
                                   fit_check=not no_fit_check)
    if nodes is not None or nic is not None:
        options.update(nodes=nodes, nic=nic)
    if dry_run:
        the_plan = api.plan(runtime, settings=settings, events=output.events(), **options)
        output.result(the_plan.to_dict(), lambda: _plan_lines(the_plan.to_dict()))
        return
    result = api.up(runtime, settings=settings, events=output.events(),
                    prompt_secret=masked_prompt_if_interactive(), lock_path=lock_path, locked=locked, **options)
    output.result(result.to_dict(), lambda: _result_lines(result.to_dict()))


def _plan_lines(plan: dict[str, Any]) -> Iterator[str]:
    if plan.get("nodes"):
        yield from _cluster_lines(plan)
        return
    container = plan["container"]
    yield f"Plan for {plan['runtime']} (dry run: no image or weights were downloaded, nothing was started)"
    yield f"  profile:   {plan['profile']}" + (f" ({plan['profile_name']})" if plan["profile_name"] else "")
    yield f"  model:     {plan['model']} → {plan['model_id']} (served as {plan['served_model_id']})"
    yield f"  image:     {plan['image']} (pinned to this platform's digest at pull time)"
    yield f"  container: {container['name']}, restart {container['restart_policy']}, ipc {container['ipc_mode']}," \
          f" gpus {container['gpus']}"
    for port in container["ports"]:
        yield f"  port:      {port['host_ip']}:{port['host_port']} → {port['container_port']}/{port['protocol']}"
    for mount in container["mounts"]:
        yield f"  mount:     {mount['source']} → {mount['target']}"
    for key, value in container["env"].items():
        yield f"  env:       {key}={value}"
    yield "  argv:      " + " ".join(plan["argv"])
    yield f"  ready:     {_ready_check(plan)} within {plan['ready_timeout_s']:g} s"
    if plan.get("fit"):
        yield f"  fit:       {_fit_line(plan['fit'])}"
    for check in plan["checks"]:
        yield f"  {'✓' if check['ok'] else '✗'} {check['check']}: {check['detail']}"
    for note in plan["notes"]:
        yield f"  note: {note}"


def _cluster_lines(plan: dict[str, Any]) -> Iterator[str]:
    """A plan over several nodes: the split, then every node's containers with their whole spec."""
    yield (f"Plan for vllm over {len(plan['nodes'])} nodes (dry run: no image or weights were downloaded, nothing "
           "was started)")
    yield f"  model:     {plan['model']} → {plan['model_id']} (served as {plan['served_model_id']})"
    yield (f"  split:     tensor parallel {plan['tensor_parallel_size']} × pipeline parallel "
           f"{plan['pipeline_parallel_size']} (Ray head {plan['head_address']}:{plan['ray_port']})")
    if plan.get("interface"):
        interface = plan["interface"]
        how = "detected" if interface["detected"] else "--nic"
        yield f"  interface: {interface['name']} {interface['address']} ({how})".rstrip()
    if plan.get("group_fit"):
        reasons = plan["group_fit"].get("reasons") or []
        yield f"  fit:       {plan['group_fit']['decision']}" + (f": {reasons[0]}" if reasons else "")
    yield f"  ready:     {_ready_check(plan)} within {plan['ready_timeout_s']:g} s"
    for node in plan["nodes"]:
        yield f"  node {node['index']} ({node['role']}): {node['address']}"
        for container in node["containers"]:
            yield f"    container {container['name']}: network {container.get('network_mode')}, ipc " \
                  f"{container['ipc_mode']}, gpus {container['gpus']}, image {container['image']}"
            for mount in container["mounts"]:
                yield f"      mount: {mount['source']} → {mount['target']} ({mount['kind']})"
            for key, value in container["env"].items():
                yield f"      env:   {key}={value}"
            yield "      argv:  " + " ".join(container["command"])
    for note in plan["notes"]:
        yield f"  note: {note}"


def _fit_line(fit: dict[str, Any]) -> str:
    """One line: the decision, the bytes against the budget, where, and the context."""
    if fit["decision"] == "unknown":
        return "unknown (facts not available: see the warning); up goes on"
    where = ",".join(str(i) for i in fit["gpus"]) or "-"
    need = f"{format_bytes(fit['needed_bytes'])} of {format_bytes(fit['budget_bytes'])}" if fit["needed_bytes"] else ""
    context = f"context {fit['max_model_len']} (largest that fits {fit['max_model_len_fit'] or 'none'})"
    parts = [fit["decision"], f"GPU {where}", f"tp {fit['tensor_parallel_size']}", need, context]
    return " · ".join(p for p in parts if p)


def _ready_check(plan: dict[str, Any]) -> str:
    root = plan["base_url"].removesuffix("/v1")
    if plan["runtime"] == "ollama":
        return f"{root}/api/tags answers, then the model is pulled if missing and must list the tools capability"
    if plan["runtime"] == "nim":
        return f"{root}/v1/health/ready is 200 and /v1/models lists a model"
    return f"{root}/v1/models lists {plan['served_model_id']}"


def _result_lines(result: dict[str, Any]) -> Iterator[str]:
    how = "adopted the running server" if result["adopted"] else ("reused" if result["reused"] else "started")
    yield f"✓ {result['runtime']} is serving {result['model']} at {result['base_url']} ({how})"
    yield f"  served model id: {result['served_model_id']}"
    if result["context_window"]:
        yield f"  context window:  {result['context_window']} tokens (max_model_len)"
    if result["name"]:
        yield f"  container:       {result['name']}"
    if result["image"]:
        pinned = f"@{result['digest']}" if result["digest"] else " (not pinned)"
        yield f"  image:           {result['image']}{pinned}"
    if result["validated_api"]:
        yield f"  validated:       {result['validated_api']}"
    for node in result.get("nodes") or ():
        yield f"  node {node['index']} ({node['role']}):  {node['address']}: {', '.join(node['containers'])}"


__all__ = ["masked_prompt_if_interactive", "up"]

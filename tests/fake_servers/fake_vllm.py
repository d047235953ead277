"""The fake vLLM image (fixtures/images/fake-vllm): busybox + a ``vllm`` script that behaves like ``vllm serve``.

    image = fake_vllm_image                       # session fixture: built once, tag nemoclaw-test/fake-vllm:<id>
    container = start_fake_vllm(docker_client, image, model="acme/tiny", port=free_port(),
                                env={"FAKE_VLLM_DELAY_S": "2"})

The container runs ``vllm serve MODEL --port 8000 --max-model-len N`` (the argv the vLLM driver builds), published
on 127.0.0.1:<port>, labelled with the test session so clean-up removes it. Switches (env): FAKE_VLLM_DELAY_S,
FAKE_VLLM_CRASH=oom|gpu-util|401|nogpu, FAKE_VLLM_RESTART_LOOP=1, FAKE_VLLM_EXIT_AFTER_S; for ``status``:
FAKE_VLLM_HEALTH=503, FAKE_VLLM_HANG=1, FAKE_VLLM_METRICS=deprecated|garbage, FAKE_VLLM_PROMPT_TPS /
FAKE_VLLM_GEN_TPS (see the script). ``/metrics`` speaks vLLM's metric names; its token counters grow with time.

The image also has a fake ``ray`` (as the real vLLM image does) for multi-node tests, same image on every node,
``network_mode=host``: ``ray start --head --port=P --node-ip-address=IP [--num-gpus=G] --block`` on the head,
``ray start --address=IP:P [--num-gpus=G] --block`` on each worker, ``ray status`` (docker exec into the head) and
``vllm serve ... --distributed-executor-backend ray`` with ``RAY_ADDRESS=IP:P``. Switches: FAKE_RAY_GPUS,
FAKE_RAY_FAIL=worker-exit|join|head-exit, FAKE_RAY_FAIL_AFTER_S, FAKE_RAY_JOIN_TIMEOUT_S (see the ``ray`` script).
:func:`start_fake_ray` runs one node.

:class:`EngineTarget` is a :class:`~nemoclaw_runtime.runtimes.server.readiness.ReadinessTarget` over the real
``DockerEngine``, for readiness tests against real containers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nemoclaw_runtime.kernel.errors import NoSuchContainer
from nemoclaw_runtime.runtimes.docker.port import ContainerState
from tests.helpers.docker_env import session_labels, unique_name
from tests.helpers.images import build_busybox_image

if TYPE_CHECKING:
    import docker

    from nemoclaw_runtime.runtimes.docker.adapter import DockerEngine
    from tests.helpers.registry import LocalRegistry

FAKE_VLLM_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "images" / "fake-vllm"
VLLM_PATH = "/usr/local/bin/vllm"
HANDLER_PATH = "/usr/local/lib/fake-vllm/handler.sh"
RAY_PATH = "/usr/local/bin/ray"
RAY_HANDLER_PATH = "/usr/local/lib/fake-vllm/ray-handler.sh"
CONTAINER_PORT = 8000


def fake_vllm_files() -> dict[str, str]:
    return {
        VLLM_PATH: (FAKE_VLLM_DIR / "vllm").read_text(encoding="utf-8"),
        HANDLER_PATH: (FAKE_VLLM_DIR / "handler.sh").read_text(encoding="utf-8"),
        RAY_PATH: (FAKE_VLLM_DIR / "ray").read_text(encoding="utf-8"),
        RAY_HANDLER_PATH: (FAKE_VLLM_DIR / "ray-handler.sh").read_text(encoding="utf-8"),
    }


def build_fake_vllm_image(client: docker.DockerClient, tag: str, env: Mapping[str, str] | None = None) -> str:
    """Build the image as fixtures/images/fake-vllm/Dockerfile describes, with ``env`` baked in (a behaviour
    switch: ``FAKE_VLLM_CRASH``, ``FAKE_RAY_FAIL``, …); returns the image id."""
    return build_busybox_image(
        client, tag, fake_vllm_files(),
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **(env or {})},
        cmd=["vllm", "serve", "fake/model", "--port", str(CONTAINER_PORT), "--max-model-len", "4096"],
    )


def push_fake_vllm_variants(client: docker.DockerClient, registry: LocalRegistry,
                            variants: Mapping[str, Mapping[str, str]], *, prefix: str, session: str) -> dict[str, str]:
    """One fake vLLM image per behaviour (its switches baked in), pushed to ``registry`` as
    ``<prefix>-<variant>:1``; the references by variant (what ``--image`` points at)."""
    refs = {}
    for variant, env in variants.items():
        tag = f"nemoclaw-test/{prefix}-{variant}:{session[:12]}"
        build_fake_vllm_image(client, tag, env)
        registry.push(client, tag, f"fake/{prefix}-{variant}", "1")
        refs[variant] = registry.ref(f"fake/{prefix}-{variant}", "1")
    return refs


@pytest.fixture(scope="session")
def fake_vllm_image(docker_client: docker.DockerClient, test_session_id: str) -> str:
    """Tag of the fake vLLM image, built once per test session."""
    tag = f"nemoclaw-test/fake-vllm:{test_session_id[:12]}"
    build_fake_vllm_image(docker_client, tag)
    return tag


def serve_command(model: str, *, max_model_len: int = 4096, extra: Sequence[str] = ()) -> list[str]:
    """``vllm serve`` argv in the driver's shape (the container always listens on 8000)."""
    return ["vllm", "serve", model, "--port", str(CONTAINER_PORT), "--max-model-len", str(max_model_len), *extra]


def start_fake_vllm(
    client: docker.DockerClient,
    image: str,
    *,
    model: str,
    port: int,
    max_model_len: int = 4096,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    restart_policy: str | None = None,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """Run the fake vLLM detached, published on 127.0.0.1:``port``; returns the docker-py Container."""
    kwargs: dict[str, Any] = {}
    if restart_policy:
        kwargs["restart_policy"] = {"Name": restart_policy}
    return client.containers.run(
        image,
        serve_command(model, max_model_len=max_model_len, extra=extra),
        name=name or unique_name("fake-vllm"),
        detach=True,
        environment=dict(env or {}),
        ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
        labels={**(labels or {}), **session_labels()},
        **kwargs,
    )


def ray_head_command(port: int, ip: str = "127.0.0.1", *, gpus: int | None = None) -> list[str]:
    """``ray start --head`` argv as the multi-node orchestration runs it."""
    gpu_flag = [f"--num-gpus={gpus}"] if gpus is not None else []
    return ["ray", "start", "--head", f"--port={port}", f"--node-ip-address={ip}", *gpu_flag, "--block"]


def ray_worker_command(address: str, *, gpus: int | None = None) -> list[str]:
    """``ray start --address=HEAD_IP:PORT`` argv of a worker node."""
    gpu_flag = [f"--num-gpus={gpus}"] if gpus is not None else []
    return ["ray", "start", f"--address={address}", *gpu_flag, "--block"]


def start_fake_ray(
    client: docker.DockerClient,
    image: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """Run one node (``ray start ...`` or ``vllm serve ...``) detached with ``network_mode=host``, labelled with
    the test session; returns the docker-py Container."""
    return client.containers.run(
        image,
        list(command),
        name=name or unique_name("fake-ray"),
        detach=True,
        environment=dict(env or {}),
        network_mode="host",
        labels={**(labels or {}), **session_labels()},
    )


@dataclass(frozen=True)
class EngineTarget:
    """A readiness target over the real DockerEngine: state and log tail by container name."""

    engine: DockerEngine
    name: str
    port: int
    host: str = "127.0.0.1"

    def state(self) -> ContainerState:
        info = self.engine.inspect_container(self.name)
        if info is None:
            raise NoSuchContainer(f"no container {self.name}")
        return info.state

    def log_tail(self, n: int) -> list[str]:
        return self.engine.container_logs(self.name, tail=n)

"""The NIM driver: a catalog entry that fits this host's GPU memory, run as ``nemoclaw-nim-<name>``.

Pure planning, like the vLLM driver. The NGC key is required before anything is pulled or started (NemoClaw users
watched a keyless NIM exit with "Authentication Error" and then waited out the whole timeout); it reaches the
container only through its environment, as ``NGC_API_KEY`` and ``NIM_NGC_API_KEY``, never argv.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import InvalidInput, MissingToken, NoSuitableGpu
from nemoclaw_runtime.kernel.events import EventSink, Info
from nemoclaw_runtime.kernel.names import RUNTIME_NIM
from nemoclaw_runtime.kernel.units import format_mib
from nemoclaw_runtime.registry import NGC_KEY_VARIABLES
from nemoclaw_runtime.runtimes.docker.spec import (
    LABEL_IMAGE,
    LABEL_MODEL,
    LABEL_RUNTIME,
    LABEL_SERVED_MODEL,
    ContainerSpec,
    Mount,
    PortBinding,
    url_host,
)
from nemoclaw_runtime.runtimes.drivers.contract import Check, DriverBase, Plan, Served, UpRequest

if TYPE_CHECKING:
    from nemoclaw_runtime.gpu import GpuInventory
    from nemoclaw_runtime.kernel.secret import Secret
    from nemoclaw_runtime.kernel.settings import Settings
    from nemoclaw_runtime.registry import NimModel
    from nemoclaw_runtime.runtimes.docker.port import PulledImage
    from nemoclaw_runtime.runtimes.drivers.contract import Services
    from nemoclaw_runtime.runtimes.server.probes import HttpProbe
    from nemoclaw_runtime.runtimes.server.readiness import ReadyResult

RUNTIME = RUNTIME_NIM
CONTAINER_PORT = 8000
CONTAINER_CACHE = "/opt/nim/.cache"
DEFAULT_NAME = "nemoclaw"
NAME_PREFIX = "nemoclaw-nim-"
SHM_SIZE = "16g"
KEY_VARIABLES = ("NGC_API_KEY", "NIM_NGC_API_KEY")  # the container's names for the NGC key


def container_name(name: str | None) -> str:
    """``nemoclaw-nim-<name>`` (NemoClaw's naming); a name already carrying the prefix is kept as is."""
    base = (name or DEFAULT_NAME).strip()
    return base if base.startswith(NAME_PREFIX) else f"{NAME_PREFIX}{base}"


class NimDriver(DriverBase):
    name = RUNTIME

    def plan(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> Plan:
        from nemoclaw_runtime.gpu import has_usable_gpu

        wanted, source = _requested_model(request, settings)
        if request.gpus.mode != "none" and not has_usable_gpu(inventory):
            raise NoSuitableGpu(
                f"No usable NVIDIA GPU for NIM: {inventory.reason or 'host profile is ' + inventory.profile}",
                remedy="check the driver with `nemoclaw-runtime gpus`")
        budget = _budget_mib(request, inventory)
        model = self.registry.resolve_nim_model(wanted, budget_mib=budget, source=source)
        key = _ngc_key(settings)
        image = request.image or settings.nim_image or model.image
        port = request.port or settings.vllm_port
        spec = self._spec(container_name(request.name), image, model, port, request, settings, key[1])
        checks = (
            Check("model", True, f"{model.name} (min {format_mib(model.min_vram_mib)}; this host "
                                 f"{format_mib(budget, unknown='unknown')})"),
            Check("ngc-key", True, f"from {key[0]}"),
        )
        return Plan(
            runtime=RUNTIME, profile=inventory.profile, profile_name=None, model=model.name, model_id=model.served_id,
            served_model_id=model.served_id, spec=spec, port=port, host=request.host,
            ready_timeout_s=request.timeout_s or settings.nim_ready_timeout,
            base_url=f"http://{url_host(request.host)}:{port}/v1", token_variable=key[0], prefetch=False,
            validate=request.validate, checks=checks,
            notes=("image overridden",) if (request.image or settings.nim_image) else ())

    def image_for(self, request: UpRequest, settings: Settings, inventory: GpuInventory) -> str:
        """--image, else NEMOCLAW_NIM_IMAGE, else the image of the catalog model that fits (as ``plan`` picks it)."""
        if request.image or settings.nim_image:
            return str(request.image or settings.nim_image)
        wanted, source = _requested_model(request, settings)
        return self.registry.resolve_nim_model(wanted, budget_mib=_budget_mib(request, inventory),
                                               source=source).image

    def bind_image(self, plan: Plan, pulled: PulledImage) -> ContainerSpec:
        """Pinned to the pulled digest; a key the user typed at the registry-login prompt (after the environment's
        was refused) is the key the container gets too, or it would die with "Authentication Error"."""
        spec = super().bind_image(plan, pulled)
        if pulled.prompted_key is None:
            return spec
        env = tuple((name, pulled.prompted_key if name in KEY_VARIABLES else value) for name, value in spec.env)
        return dataclasses.replace(spec, env=env)

    # --- pipeline hooks ----------------------------------------------------------------------------------------

    def adopt(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> Served | None:
        from nemoclaw_runtime.runtimes.drivers.steps import refuse_foreign_listener

        refuse_foreign_listener(plan)
        return None

    def prepare(self, plan: Plan, svc: Services, events: EventSink, cancel: CancelToken) -> str | None:
        from pathlib import Path

        from nemoclaw_runtime.runtimes.drivers.steps import ensure_cache_dir

        for mount in plan.spec.mounts:
            ensure_cache_dir(Path(mount.source), world_writable=True)  # NIM runs as UID 1000
        return None

    def readiness_probe(self, plan: Plan) -> HttpProbe:
        from nemoclaw_runtime.runtimes.server.probes import NimReadyProbe

        return NimReadyProbe(plan.served_model_id)

    def after_ready(self, plan: Plan, ready: ReadyResult, base: str, svc: Services, events: EventSink,
                    cancel: CancelToken) -> Served:
        served = getattr(ready, "served_id", None) or plan.served_model_id
        if served != plan.served_model_id:
            events(Info(f"NIM serves the model as {served} (catalog id {plan.served_model_id}): using {served}"))
        return Served(served, getattr(ready, "max_model_len", None))

    def validate(self, plan: Plan, served: Served, base: str, svc: Services, events: EventSink,
                 cancel: CancelToken) -> str | None:
        from nemoclaw_runtime.runtimes.drivers.steps import validate_openai

        return validate_openai(plan, served, svc, events, cancel)

    @staticmethod
    def _spec(name: str, image: str, model: NimModel, port: int, request: UpRequest, settings: Settings,
              key: Secret) -> ContainerSpec:
        cache = (settings.xdg_cache_home or settings.home / ".cache") / "nim"
        return ContainerSpec(
            name=name,
            runtime=RUNTIME,
            image=image,
            command=(),  # NIM images start their server from their own entrypoint
            env=tuple((name, key) for name in KEY_VARIABLES),
            labels=((LABEL_RUNTIME, RUNTIME), (LABEL_MODEL, model.name), (LABEL_SERVED_MODEL, model.served_id),
                    (LABEL_IMAGE, image)),
            ports=(PortBinding(CONTAINER_PORT, port, request.host),),
            gpus=request.gpus,
            mounts=(Mount(str(cache), CONTAINER_CACHE),),
            restart_policy="unless-stopped",
            shm_size=SHM_SIZE,
        )


def _requested_model(request: UpRequest, settings: Settings) -> tuple[str | None, str]:
    """The model asked for and where it came from (``--model`` wins over ``NEMOCLAW_MODEL``)."""
    if request.model and request.model.strip():
        return request.model, "--model"
    return settings.model, "NEMOCLAW_MODEL"


def _budget_mib(request: UpRequest, inventory: GpuInventory) -> int | None:
    """The memory the model may use: the host's budget, or only the GPUs named by ``--gpus`` indices."""
    if request.gpus.mode != "indices" or inventory.unified_memory:
        return inventory.memory_budget_mib
    by_index = {gpu.index: gpu for gpu in inventory.gpus}
    unknown = [i for i in request.gpus.indices if i not in by_index]
    if unknown:
        raise InvalidInput(
            f"--gpus names GPU {', '.join(map(str, unknown))}, which this host does not have "
            f"(indices: {', '.join(map(str, sorted(by_index))) or 'none'})",
            remedy="see `nemoclaw-runtime gpus` for the indices")
    totals = [by_index[i].memory_total_mib for i in request.gpus.indices]
    return None if any(t is None for t in totals) else sum(t for t in totals if t is not None)


def _ngc_key(settings: Settings) -> tuple[str, Secret]:
    found = settings.ngc_key_value()
    if found is None:
        raise MissingToken(
            f"NIM needs an NGC API key and none is set: one of {', '.join(NGC_KEY_VARIABLES)}",
            remedy="create a key at https://org.ngc.nvidia.com/setup/api-key, then export NGC_API_KEY=<key>",
            details={"variables": list(NGC_KEY_VARIABLES)})
    return found


__all__ = ["NimDriver", "container_name"]

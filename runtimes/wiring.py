"""Wiring: the one place the library opens the Docker engine, and where ``Services`` are assembled.

Every collaborator a library call needs (the Docker port, an ``httpx.Client``, a clock) may be injected by the caller;
what is not injected is made here and closed here, and what was injected is used as given and never closed.
:func:`open_docker` is the only caller of :func:`~nemoclaw_runtime.runtimes.docker.adapter.connect`; HTTP clients come
from :func:`nemoclaw_runtime.runtimes.net.http_client`. The layers below receive the port and the client as
parameters; the pipeline and onboarding above call in here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from nemoclaw_runtime.kernel.clock import Clock, SystemClock
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.drivers.contract import Services
from nemoclaw_runtime.runtimes.net import http_client

if TYPE_CHECKING:
    import httpx

    from nemoclaw_runtime.runtimes.docker.port import DockerPort
    from nemoclaw_runtime.runtimes.docker.registry_login import PromptSecret

#: Budgets of the client that talks to local servers (readiness probes, Ollama's API, the options probes).
LOCAL_TIMEOUT_S = 5.0
LOCAL_CONNECT_TIMEOUT_S = 2.0


def open_docker(settings: Settings) -> DockerPort:
    """Connect to the engine named by ``settings`` (docker-py is imported only now); the caller closes it."""
    from nemoclaw_runtime.runtimes.docker.adapter import connect

    return connect(settings)


def local_http_client() -> httpx.Client:
    """A new client for local servers (5 s per operation, 2 s to connect); the caller closes it."""
    return http_client(timeout=LOCAL_TIMEOUT_S, connect=LOCAL_CONNECT_TIMEOUT_S)


@contextmanager
def docker_session(settings: Settings, docker: DockerPort | None = None) -> Iterator[DockerPort]:
    """``docker`` as given (left open), else an engine connected now and closed on exit."""
    if docker is not None:
        yield docker
        return
    port = open_docker(settings)
    try:
        yield port
    finally:
        port.close()


@contextmanager
def http_session(http: httpx.Client | None = None) -> Iterator[httpx.Client]:
    """``http`` as given (left open), else a :func:`local_http_client` closed on exit."""
    if http is not None:
        yield http
        return
    client = local_http_client()
    try:
        yield client
    finally:
        client.close()


def build_services(settings: Settings, docker: DockerPort, http: httpx.Client, *, clock: Clock | None = None,
                   arch: str | None = None, prompt_secret: PromptSecret | None = None,
                   owned: bool = False) -> Services:
    """The pipeline's collaborators over an engine and a client; ``owned`` makes ``Services.close`` close both."""
    from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
    from nemoclaw_runtime.runtimes.transfer.image_pull import DockerImageStore

    clock = clock or SystemClock()
    images = DockerImageStore(docker, settings, clock=clock, arch=arch, prompt_secret=prompt_secret)
    containers = DockerContainerManager(docker, settings, clock)
    return Services(settings, docker, images, containers, http, clock, owned=owned)


def open_services(settings: Settings, *, clock: Clock | None = None, arch: str | None = None,
                  prompt_secret: PromptSecret | None = None) -> Services:
    """Services over a new engine connection and a new local client, both closed by ``Services.close``."""
    docker = open_docker(settings)
    try:
        http = local_http_client()
    except BaseException:
        docker.close()
        raise
    return build_services(settings, docker, http, clock=clock, arch=arch, prompt_secret=prompt_secret, owned=True)


@contextmanager
def services_session(settings: Settings, *, docker: DockerPort | None = None, http: httpx.Client | None = None,
                     clock: Clock | None = None, arch: str | None = None,
                     prompt_secret: PromptSecret | None = None) -> Iterator[Services]:
    """Services over the injected engine and client (left open), making and closing only what was not given."""
    with docker_session(settings, docker) as port, http_session(http) as client:
        yield build_services(settings, port, client, clock=clock, arch=arch, prompt_secret=prompt_secret)


__all__ = ["docker_session", "http_session", "local_http_client", "open_docker", "open_services", "services_session"]

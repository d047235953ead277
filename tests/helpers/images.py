"""Tiny test images built from nothing: no registry can be reached, so every image is FROM scratch with
Debian's static busybox (package busybox-static) as its whole userland.

    image_id = build_busybox_image(client, "nemoclaw-test/echo:abc", {"/handler.sh": HANDLER},
                                   cmd=["nc", "-ll", "-p", "8080", "-e", "/handler.sh"])

Files whose content starts with ``#!`` or whose name ends in ``.sh`` are executable. Every image carries the
test-session label, so session clean-up removes it. Builds go through docker-py (no ``docker`` CLI) with the
legacy builder, whose layer cache makes the busybox layers free after the first build.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tests.helpers.docker_env import SESSION_ID, session_labels

if TYPE_CHECKING:
    import docker

BUSYBOX_PATH = Path("/bin/busybox")
BASE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "images" / "base"
BASE_DOCKERFILE = BASE_DIR / "Dockerfile"
#: The HTTP request reader every fake server's handler sources; every image carries it.
HTTP_REQUEST_LIB = "/usr/lib/fake-http/request.sh"
_BUILD_TIMEOUT_S = 300


class ImageBuildFailed(RuntimeError):
    """The engine refused the build; the message carries the build log's tail."""


def unique_tag(name: str) -> str:
    """``nemoclaw-test/<name>:<12 hex>``: a tag no concurrent run will pick."""
    return f"nemoclaw-test/{name}:{uuid.uuid4().hex[:12]}"


def build_busybox_image(
    client: docker.DockerClient,
    tag: str,
    files: Mapping[str, str | bytes] | None = None,
    *,
    cmd: Sequence[str] | str | None = None,
    entrypoint: Sequence[str] | str | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Build ``tag`` = busybox + ``files`` (absolute paths in the image → content) and return the image id.

    ``cmd``/``entrypoint`` given as a string run through ``/bin/sh -c``.
    """
    files = {HTTP_REQUEST_LIB: (BASE_DIR / "http-request.sh").read_text(encoding="utf-8"), **(files or {})}
    dockerfile = render_dockerfile(files, cmd=cmd, entrypoint=entrypoint, env=env)
    context = _build_context(dockerfile, files)
    all_labels = {**(labels or {}), **session_labels(SESSION_ID)}
    return _build(client, context, tag, all_labels)


def build_base_image(client: docker.DockerClient, tag: str) -> str:
    """Just the template: sh, sleep, nc, httpd… Also warms the build cache for every later image."""
    return build_busybox_image(client, tag)


def render_dockerfile(
    files: Mapping[str, str | bytes],
    *,
    cmd: Sequence[str] | str | None = None,
    entrypoint: Sequence[str] | str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    lines = [BASE_DOCKERFILE.read_text().rstrip("\n")]
    if files:
        lines.append("COPY files/ /")
    for key, value in (env or {}).items():
        # Dockerfile double-quoted values take backslash escapes, as JSON strings do.
        lines.append(f"ENV {key}={json.dumps(str(value))}")
    if entrypoint is not None:
        lines.append(f"ENTRYPOINT {json.dumps(_exec_form(entrypoint))}")
    if cmd is not None:
        lines.append(f"CMD {json.dumps(_exec_form(cmd))}")
    return "\n".join(lines) + "\n"


def _exec_form(command: Sequence[str] | str) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return list(command)


def _is_executable(path: str, content: bytes) -> bool:
    return path.endswith(".sh") or content.startswith(b"#!")


def _build_context(dockerfile: str, files: Mapping[str, str | bytes]) -> io.BytesIO:
    """An in-memory tar: Dockerfile, busybox, and files/<path> with modes set here (not by the host's umask)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile.encode(), 0o644)
        _add(tar, "busybox", BUSYBOX_PATH.read_bytes(), 0o755)
        for path, content in files.items():
            if not path.startswith("/"):
                raise ValueError(f"image file paths must be absolute, got {path!r}")
            data = content.encode() if isinstance(content, str) else content
            _add(tar, "files" + path, data, 0o755 if _is_executable(path, data) else 0o644)
    buffer.seek(0)
    return buffer


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    # A fixed mtime keeps the build cache valid across runs for identical content.
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _build(client: docker.DockerClient, context: io.BytesIO, tag: str, labels: dict[str, str]) -> str:
    import docker

    started = time.monotonic()
    try:
        image, _log = client.images.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            timeout=_BUILD_TIMEOUT_S,
        )
    except docker.errors.BuildError as exc:
        tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in list(exc.build_log)[-20:])
        raise ImageBuildFailed(f"building {tag} failed after {time.monotonic() - started:.1f}s: {exc}\n{tail}") from exc
    return str(image.id)

"""The lock (issue 11 §3): ``up`` records what it resolved, ``up --locked`` serves exactly that and resolves nothing
new, ``lock`` resolves without serving or pulling.

The real pipeline and the real vLLM driver over fakes: FakeDocker, an image store whose tag can be moved to another
digest, the weights module's hub calls replaced, and an httpx.MockTransport that serves the model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemoclaw_runtime import api
from nemoclaw_runtime.cli.main import run
from nemoclaw_runtime.gpu import GpuInventory
from nemoclaw_runtime.kernel import errors
from nemoclaw_runtime.kernel.clock import CancelToken, SystemClock
from nemoclaw_runtime.kernel.events import Event
from nemoclaw_runtime.kernel.secret import redact
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry import load_registry
from nemoclaw_runtime.registry.entries import VllmModel
from nemoclaw_runtime.runtimes import lockfile, pipeline
from nemoclaw_runtime.runtimes.docker.containers import DockerContainerManager
from nemoclaw_runtime.runtimes.docker.port import PulledImage
from nemoclaw_runtime.runtimes.docker.spec import image_repository
from nemoclaw_runtime.runtimes.transfer import weights
from tests.fakes.fake_docker import FakeDocker
from tests.helpers.docker_env import free_port

SNAPSHOT = Path(__file__).resolve().parents[2] / "fixtures" / "gpu" / "h100_x8.json"
IMAGE = "127.0.0.1:5000/test/vllm:1"
DIGEST = "sha256:" + "ab" * 32
MOVED = "sha256:" + "cd" * 32  # what the tag points at after the lock was written
REVISION = "c0ffee" * 6 + "abcd"
NEWER = "beef" * 10
ADHOC = "hf:acme/tiny-model"  # no registry pin: the revision is what the download resolved
SERVED = "acme/tiny-model"
PINNED = "nemotron-3-nano-4b"  # the registry pins its hf_revision
SECRET = "sk-locksecret0123456789"


class MovableImageStore:
    """``ensure_image``: a tag pull gets whatever the tag points at now; a pull by digest gets that digest.
    ``resolve_digest`` reads the tag without pulling. Every ref asked for is recorded."""

    def __init__(self, docker: FakeDocker) -> None:
        self.docker, self.tag_digest, self.pulled, self.resolved = docker, DIGEST, list[str](), list[str]()

    def image_present(self, ref: str) -> bool:
        return self.docker.image_inspect(ref) is not None

    def ensure_image(self, ref: str, *, events: Callable[[Event], None], cancel: CancelToken) -> PulledImage:
        self.pulled.append(ref)
        digest = ref.partition("@")[2] or self.tag_digest
        self.docker.add_image(f"{image_repository(ref)}:1" if "@" in ref else ref, digest=digest)
        return PulledImage(ref, digest, "linux/amd64", pulled=True)

    def resolve_digest(self, ref: str, *, events: Callable[[Event], None]) -> str | None:
        self.resolved.append(ref)
        return self.tag_digest


@dataclasses.dataclass
class World:
    settings: Settings
    docker: FakeDocker
    images: MovableImageStore
    svc: pipeline.Services
    fetched: list[str | None]  # the revision each prefetch was asked for
    hub: dict[str, str]  # what the hub's main points at


def serving(request: httpx.Request) -> httpx.Response:
    ids = [SERVED, load_registry().vllm_model(PINNED).served_model_id()]
    return httpx.Response(200, json={"object": "list", "data": [{"id": i, "max_model_len": 4096} for i in ids]})


def inventory() -> GpuInventory:
    return GpuInventory.from_snapshot(json.loads(SNAPSHOT.read_text()))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    fetched: list[str | None] = []
    hub = {"main": REVISION}

    def fake_prefetch(model_id: str, *, revision: str | None = None, **_: Any) -> Any:
        fetched.append(revision)
        return weights.PrefetchResult(model_id, revision or hub["main"], tmp_path, 1, 2, 2)

    monkeypatch.setattr(weights, "prefetch", fake_prefetch)
    monkeypatch.setattr(weights, "estimate_repo_bytes", lambda *a, **k: 0)
    monkeypatch.setattr(weights, "check_access", lambda *a, **k: None)
    monkeypatch.setattr(weights, "resolve_revision", lambda *a, **k: hub["main"])
    env = {"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"), "NEMOCLAW_VLLM_IMAGE": IMAGE,
           "HF_HOME": str(tmp_path / "hf")}
    settings = Settings.from_env(env)
    docker, clock = FakeDocker(), SystemClock()
    images = MovableImageStore(docker)
    http = httpx.Client(transport=httpx.MockTransport(serving))
    svc = pipeline.Services(settings, docker, images, DockerContainerManager(docker, settings, clock, lock_wait_s=1.0),
                            http, clock, owned=False)
    yield World(settings, docker, images, svc, fetched, hub)
    http.close()


def up(w: World, *, model: str = ADHOC, **options: Any) -> Any:
    request = pipeline.make_request("vllm", model=model, port=free_port(), gpus="none", prefetch=True,
                                    validate=False, timeout_s=60)
    return pipeline.up(request, settings=w.settings, inventory=inventory(), services=w.svc, **options)


def default_lock(w: World) -> Path:
    return w.settings.state_dir / "locks" / "nemoclaw-vllm.json"


def container_argv(w: World) -> list[str]:
    info = w.svc.containers.get("nemoclaw-vllm")
    assert info is not None
    spec = w.docker.containers[info.id].spec
    assert spec is not None and spec.image_ref.startswith(image_repository(IMAGE))
    return list(spec.command)


def test_up_writes_the_lock_and_locked_serves_exactly_it(world: World) -> None:
    first = up(world)
    path = default_lock(world)  # the documented default, under NEMOCLAW_STATE_DIR
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o644
    data = json.loads(path.read_text())
    assert data["schema"] == 1 and data["runtime"] == "vllm" and data["model"] == ADHOC
    assert data["image"] == IMAGE and data["image_digest"] == DIGEST == first.digest
    assert data["weights_revision"] == REVISION == first.weights_revision
    assert data["argv"][:3] == ["vllm", "serve", SERVED] and "--revision" not in data["argv"]
    assert data["registry_entry_version"].startswith("sha256:") and data["nemoclaw_runtime"]
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no temporary file left

    world.images.tag_digest, world.hub["main"] = MOVED, NEWER  # the tag and the hub moved on since
    world.images.pulled.clear()
    world.fetched.clear()
    second = up(world, locked=True)
    assert world.images.pulled == [f"{image_repository(IMAGE)}@{DIGEST}"]  # by the locked digest, never the tag
    assert second.digest == DIGEST and world.fetched == [REVISION] and second.weights_revision == REVISION
    argv = container_argv(world)
    info = world.svc.containers.get("nemoclaw-vllm")
    spec = world.docker.containers[info.id].spec if info is not None else None
    assert spec is not None and spec.image_ref == f"{image_repository(IMAGE)}@{DIGEST}"  # runs the locked digest
    assert argv[argv.index("--revision") + 1] == REVISION  # vLLM serves the locked revision too
    assert json.loads(path.read_text()) == data  # --locked reads the lock, never rewrites it


def test_without_locked_the_moved_tag_is_what_is_served(world: World) -> None:
    up(world)
    world.images.tag_digest = MOVED
    assert up(world).digest == MOVED
    assert json.loads(default_lock(world).read_text())["image_digest"] == MOVED


def test_a_changed_registry_entry_refuses_with_exit_3(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    lock_path = world.settings.state_dir / "mine.json"
    up(world, model=PINNED, lock_path=lock_path)
    original = VllmModel.serve_argv
    monkeypatch.setattr(VllmModel, "serve_argv", lambda self, extra=(): (*original(self, extra), "--enforce-eager"))
    world.images.pulled.clear()
    with pytest.raises(errors.PreflightRefused) as caught:
        up(world, model=PINNED, lock_path=lock_path, locked=True)
    assert caught.value.exit_code == 3 and "argv" in caught.value.message and "--enforce-eager" in caught.value.message
    assert world.images.pulled == []  # refused before any download


def test_a_changed_registry_entry_version_is_named(world: World) -> None:
    up(world, model=PINNED)
    path = default_lock(world)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "registry_entry_version": "sha256:0000000000000000"}))
    with pytest.raises(errors.PreflightRefused) as caught:
        up(world, model=PINNED, locked=True)
    assert caught.value.exit_code == 3 and "registry entry" in caught.value.message
    assert caught.value.details["registry_entry_version"]["locked"] == "sha256:0000000000000000"


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"schema": 9}), json.dumps([1])])
def test_a_missing_or_invalid_lock_is_exit_2_with_the_remedy(world: World, content: str | None) -> None:
    path = world.settings.state_dir / "locks" / "nemoclaw-vllm.json"
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    with pytest.raises(errors.InvalidInput) as caught:
        up(world, locked=True)
    assert caught.value.exit_code == 2 and str(path) in caught.value.message
    assert caught.value.remedy and "nemoclaw-runtime lock vllm" in caught.value.remedy
    assert "without --locked" in caught.value.remedy
    assert not [c for c in world.docker.calls if c[0] == "ping"]  # before any engine call


def test_lock_resolves_without_pulling(world: World) -> None:
    pinned = pipeline.lock(pipeline.make_request("vllm", model=PINNED, gpus="none"), settings=world.settings,
                           inventory=inventory(), services=world.svc)
    revision = load_registry().vllm_model(PINNED).hf_revision
    assert pinned.image_digest == DIGEST and pinned.weights_revision == revision and world.images.pulled == []
    assert world.images.resolved == [IMAGE]
    adhoc = pipeline.lock(pipeline.make_request("vllm", model=ADHOC, gpus="none"), settings=world.settings,
                          inventory=inventory(), services=world.svc)
    assert adhoc.weights_revision == REVISION  # the hub's commit (model_info(...).sha through the transfer layer)


def test_lock_of_a_pinned_model_needs_no_hub(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_: Any, **__: Any) -> str:
        raise AssertionError("the registry pins this model: the hub must not be asked")

    monkeypatch.setattr(weights, "resolve_revision", no_network)
    pipeline.lock(pipeline.make_request("vllm", model=PINNED, gpus="none"), settings=world.settings,
                  inventory=inventory(), services=world.svc)


def test_the_lock_never_holds_a_secret(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = world.settings.replace(vllm_extra_args_json=json.dumps(["--api-key", SECRET]))
    request = pipeline.make_request("vllm", model=ADHOC, port=free_port(), gpus="none", validate=False, timeout_s=60)
    pipeline.up(request, settings=settings, inventory=inventory(), services=world.svc)
    text = default_lock(world).read_text()
    assert SECRET not in text and redact(text, [SECRET]) == text
    assert SECRET in " ".join(container_argv(world))  # the server itself still gets it


# --- the CLI ----------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    for key, value in {"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state"),
                       "NEMOCLAW_VLLM_IMAGE": IMAGE, "HF_HOME": str(tmp_path / "hf"),
                       "NEMOCLAW_GPU_SNAPSHOT": str(SNAPSHOT)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(pipeline, "lock", functools.partial(pipeline.lock, services=world.svc))
    monkeypatch.setattr(pipeline, "up", functools.partial(pipeline.up, services=world.svc))
    return world


def test_cli_lock_json_names(cli_env: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["lock", "vllm", "--model", PINNED, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"schema", "runtime", "model", "image", "image_digest", "weights_revision", "argv",
                         "registry_entry_version", "created_at", "nemoclaw_runtime"}
    assert data["image_digest"] == DIGEST and cli_env.images.pulled == []


def test_cli_lock_output_then_up_locked(cli_env: World, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "out" / "pinned.lock.json"
    assert run(["lock", "vllm", "--model", PINNED, "-o", str(path)]) == 0
    assert "wrote the lock" in capsys.readouterr().out and stat.S_IMODE(path.stat().st_mode) == 0o644
    cli_env.images.tag_digest = MOVED
    port = str(free_port())
    code = run(["up", "vllm", "--model", PINNED, "--port", port, "--gpus", "none", "--no-validate", "--lock",
                str(path), "--locked", "--json"])
    assert code == 0, capsys.readouterr()
    assert json.loads(capsys.readouterr().out)["digest"] == DIGEST
    assert cli_env.images.pulled == [f"{image_repository(IMAGE)}@{DIGEST}"]


def test_cli_up_lock_path_writes_the_file(cli_env: World, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    code = run(["up", "vllm", "--model", ADHOC, "--port", str(free_port()), "--gpus", "none", "--no-validate",
                "--lock", str(path), "--json"])
    assert code == 0, capsys.readouterr()
    assert json.loads(path.read_text())["image_digest"] == DIGEST
    assert not default_lock(cli_env).exists()


def test_cli_up_locked_without_a_lock_is_exit_2(cli_env: World, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    code = run(["up", "vllm", "--gpus", "none", "--lock", str(tmp_path / "none.json"), "--locked", "--json"])
    assert code == 2
    error = json.loads(capsys.readouterr().out)
    assert error["error"] == "InvalidInput" and "nemoclaw-runtime lock" in error["remedy"]


def test_the_lock_is_exported_and_round_trips() -> None:
    import nemoclaw_runtime

    assert nemoclaw_runtime.Lock is lockfile.Lock and nemoclaw_runtime.lock is api.lock
    value = lockfile.make_lock(runtime="vllm", model="m", image=IMAGE, image_digest=DIGEST, weights_revision=None,
                               argv=["vllm", "serve", "m"], registry_entry_version="sha256:1")
    assert lockfile.Lock.from_dict(json.loads(json.dumps(value.to_dict()))) == value


def test_the_image_store_resolves_the_digest_without_pulling(tmp_path: Path) -> None:
    from nemoclaw_runtime.runtimes.docker.manifests import ManifestResolution
    from nemoclaw_runtime.runtimes.transfer.image_pull import DockerImageStore

    docker = FakeDocker()
    settings = Settings.from_env({"HOME": str(tmp_path), "NEMOCLAW_STATE_DIR": str(tmp_path / "state")})
    asked: list[str] = []

    def resolver(ref: Any, **_: Any) -> ManifestResolution:
        asked.append(ref.original)
        return ManifestResolution(DIGEST, "linux/amd64", from_index=True)

    store = DockerImageStore(docker, settings, clock=SystemClock(), arch="amd64", resolve=resolver)
    assert store.resolve_digest(IMAGE, events=lambda event: None) == DIGEST and asked == [IMAGE]
    assert not [c for c in docker.calls if c[0] in ("pull_stream", "tag_image")]
    assert docker.image_inspect(IMAGE) is None


def test_lock_output_refuses_a_device_or_a_directory_before_writing(tmp_path: Path) -> None:
    """``lock -o`` and ``write_lock`` share the kernel's output check: /dev/null is never replaced by a rename."""
    import os
    import stat

    import nemoclaw_runtime as nr
    from nemoclaw_runtime.kernel.errors import InvalidInput
    from nemoclaw_runtime.runtimes.lockfile import make_lock

    value = make_lock(runtime="vllm", model="m", image="img:1", image_digest=None, weights_revision=None,
                      argv=("vllm", "serve", "m"), registry_entry_version="x")
    for where in ("/dev/null", str(tmp_path)):
        with pytest.raises(InvalidInput) as caught:
            nr.write_lock(value, where)
        assert caught.value.exit_code == 2 and "not a file" in caught.value.message
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and list(tmp_path.iterdir()) == []

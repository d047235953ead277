"""The lock: what ``up`` resolved (image digest, weights revision, argv, registry entry version), so that
``up --locked`` serves exactly that and resolves nothing new.

A lock file is JSON (schema 1), written atomically (a temporary file in the same folder, then a rename) with mode
0644. Its argv is the display form (:func:`~nemoclaw_runtime.kernel.secret.redact_argv`): it never holds a secret.
The default path is ``<state_dir>/locks/<container-name>.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import InvalidInput, PreflightRefused
from nemoclaw_runtime.kernel.secret import redact_argv
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import loads_json
from nemoclaw_runtime.registry import Registry

#: The version of the lock file's layout.
LOCK_SCHEMA = 1
#: A lock file is small; anything larger is refused unread.
MAX_LOCK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Lock:
    """What one ``up`` resolved; ``to_dict()`` is the lock file's content."""

    runtime: str
    model: str
    image: str
    image_digest: str | None
    weights_revision: str | None
    argv: tuple[str, ...]
    registry_entry_version: str
    created_at: str
    nemoclaw_runtime: str = __version__
    schema: int = LOCK_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "runtime": self.runtime,
            "model": self.model,
            "image": self.image,
            "image_digest": self.image_digest,
            "weights_revision": self.weights_revision,
            "argv": list(self.argv),
            "registry_entry_version": self.registry_entry_version,
            "created_at": self.created_at,
            "nemoclaw_runtime": self.nemoclaw_runtime,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Lock:
        """A lock from its JSON form; anything malformed → ``ValueError`` naming the field."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("schema") != LOCK_SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r} is not {LOCK_SCHEMA}")

        def text(key: str, *, optional: bool = False) -> Any:
            value = data.get(key)
            if value is None and optional:
                return None
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key!r} is missing or not a string")
            return value

        argv = data.get("argv")
        if not isinstance(argv, list) or not all(isinstance(token, str) for token in argv):
            raise ValueError("'argv' is not a list of strings")
        return cls(runtime=text("runtime"), model=text("model"), image=text("image"),
                   image_digest=text("image_digest", optional=True),
                   weights_revision=text("weights_revision", optional=True), argv=tuple(argv),
                   registry_entry_version=text("registry_entry_version"), created_at=text("created_at"),
                   nemoclaw_runtime=text("nemoclaw_runtime"))


def make_lock(*, runtime: str, model: str, image: str, image_digest: str | None, weights_revision: str | None,
              argv: tuple[str, ...] | list[str], registry_entry_version: str) -> Lock:
    """A lock stamped now (UTC); ``argv`` is stored in its redacted (display) form."""
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return Lock(runtime=runtime, model=model, image=image, image_digest=image_digest,
                weights_revision=weights_revision, argv=tuple(redact_argv(argv)),
                registry_entry_version=registry_entry_version, created_at=created)


def registry_entry_version(registry: Registry, runtime: str, model: str) -> str:
    """A short hash of the registry entry ``model`` of ``runtime`` (its data, as loaded); a model with no entry (a
    bare Hugging Face id, an Ollama tag the registry does not list) hashes its name alone."""
    entry: Any = None
    if runtime == "vllm":
        entry = registry.find_vllm_model(model)
    elif runtime == "nim":
        entry = next((m for m in registry.nim_models if m.name == model), None)
    elif runtime == "ollama":
        entry = registry.ollama_starter(model) if model else None
    data = {"runtime": runtime, "model": model, "entry": dataclasses.asdict(entry) if entry is not None else None}
    raw = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def default_lock_path(settings: Settings, name: str) -> Path:
    """``<state_dir>/locks/<container-name>.json``."""
    return settings.state_dir / "locks" / f"{name}.json"


def _remedy(runtime: str) -> str:
    return (f"run `nemoclaw-runtime lock {runtime} -o PATH` (or `nemoclaw-runtime up {runtime}` once without "
            "--locked) to write it, then pass --lock PATH")


def read_lock(path: Path, runtime: str) -> Lock:
    """The lock at ``path``; missing, unreadable or invalid → :class:`InvalidInput` (exit 2) with the remedy."""
    try:
        raw = checks.read_regular_file(path, MAX_LOCK_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"No lock file at {path}", remedy=_remedy(runtime), details={"lock": str(path)}) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"The lock file {path} cannot be read: {exc}", remedy=_remedy(runtime),
                           details={"lock": str(path)}) from None
    try:
        lock = Lock.from_dict(loads_json(raw))
    except ValueError as exc:  # JSONDecodeError and JsonTooDeep included
        raise InvalidInput(f"The lock file {path} is not a valid lock: {exc}", remedy=_remedy(runtime),
                           details={"lock": str(path)}) from None
    if lock.runtime != runtime:
        raise InvalidInput(f"The lock file {path} is for {lock.runtime}, not {runtime}", remedy=_remedy(runtime),
                           details={"lock": str(path)})
    return lock


def write_lock(lock: Lock, path: Path) -> Path:
    """Write ``lock`` to ``path`` atomically (temporary file + rename), mode 0644; returns the path."""
    return write_json_atomically(lock.to_dict(), path)


def write_json_atomically(document: Any, path: Path) -> Path:
    """``document`` as indented JSON at ``path`` (:func:`write_text_atomically`); returns the path."""
    return write_text_atomically(json.dumps(document, indent=2) + "\n", path)


def write_text_atomically(text: str, path: Path) -> Path:
    """``text`` at ``path``: a temporary file in the same folder, synced, then renamed over it (a reader never sees
    half a file), mode 0644; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_against(lock: Lock, *, argv: tuple[str, ...] | list[str], image: str, entry_version: str,
                  path: Path) -> None:
    """``up --locked``: refuse (:class:`PreflightRefused`, exit 3) when what would be served differs from the lock,
    naming what differs."""
    differs: list[str] = []
    details: dict[str, Any] = {"lock": str(path)}
    if lock.registry_entry_version != entry_version:
        differs.append(f"the registry entry of {lock.model} changed (version {entry_version}, locked "
                       f"{lock.registry_entry_version})")
        details["registry_entry_version"] = {"locked": lock.registry_entry_version, "now": entry_version}
    now = tuple(redact_argv(argv))
    if now != lock.argv:
        differs.append(f"the argv differs (now: {' '.join(now)}; locked: {' '.join(lock.argv)})")
        details["argv"] = {"locked": list(lock.argv), "now": list(now)}
    if image != lock.image:
        differs.append(f"the image differs (now {image}, locked {lock.image})")
        details["image"] = {"locked": lock.image, "now": image}
    if differs:
        raise PreflightRefused(f"Not serving with --locked: {'; '.join(differs)}",
                               remedy=f"serve what {path} locks (same model and options), or refresh the lock with "
                                      "`nemoclaw-runtime up` without --locked",
                               details=details)
    if not lock.image_digest:
        raise PreflightRefused(f"The lock {path} has no image digest (its image was pulled by tag), so --locked "
                               "cannot pin the image",
                               remedy="write a new lock from a registry that serves a manifest index",
                               details=details)


__all__ = ["LOCK_SCHEMA", "Lock", "check_against", "default_lock_path", "make_lock", "read_lock",
           "registry_entry_version", "write_json_atomically", "write_lock",
           "write_text_atomically"]

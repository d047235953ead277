"""Read and validate the registry's TOML data files.

Every value is checked on load: an unknown key, a missing one, a wrong type, a flag written as shell text, a
default slug the profile cannot serve. The error names the file, the entry and the field, so a damaged or
hand-edited data file is caught at once rather than as a confusing ``vllm serve`` failure an hour into a pull.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nemoclaw_runtime.kernel.checks import CONTAINER_NAME_PATTERN
from nemoclaw_runtime.kernel.errors import NemoclawError
from nemoclaw_runtime.kernel.names import PROFILE_DGX_SPARK, PROFILE_DGX_STATION, PROFILE_JETSON, PROFILE_LINUX_NVIDIA
from nemoclaw_runtime.kernel.text import has_unsafe, loads_json
from nemoclaw_runtime.registry.entries import (
    HF_ID_RE,
    NimModel,
    OllamaStarter,
    VllmModel,
    VllmProfile,
    is_safe_model_id,
    parse_compute_capability,
)
from nemoclaw_runtime.registry.extra_args import RESERVED_FLAGS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DATA_DIR = Path(__file__).resolve().parent / "data"
VLLM_FILE = "vllm.toml"
NIM_FILE = "nim.toml"
OLLAMA_FILE = "ollama.toml"
SCHEMA = 1

#: GPU profiles a vLLM entry can list (the names ``nemoclaw-runtime gpus`` reports).
VLLM_PLATFORMS = (PROFILE_DGX_SPARK, PROFILE_DGX_STATION, PROFILE_LINUX_NVIDIA)
#: GPU profiles a vLLM host profile may additionally serve (``also_for``).
PROFILE_ALIASES = (PROFILE_JETSON,)

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._:/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]*|@sha256:[a-f0-9]{64})$")
_CONTAINER_RE = re.compile(rf"^(?:{CONTAINER_NAME_PATTERN.pattern})\Z")  # kernel/checks.py's rule, whole
_OLLAMA_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+$")
# Flags the serve command sets itself; an entry repeating them would silently fight the runtime.


def registry_data_error(path: Path, entry: str, field: str | None, problem: str) -> NemoclawError:
    """The one error for a bad data file (exit 1: the packaged data is ours, so this is our bug)."""
    where = f"{entry}, field '{field}'" if field else entry
    return NemoclawError(
        f"Invalid registry data in {path}: {where}: {problem}",
        remedy="reinstall nemoclaw-runtime (pip install --force-reinstall nemoclaw-runtime), "
        "or undo the local edit",
        details={"file": str(path), "entry": entry, "field": field},
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise registry_data_error(path, "file", None, "the file is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise registry_data_error(path, "file", None, f"not valid TOML ({exc})") from None
    schema = document.get("schema")
    if schema != SCHEMA:
        raise registry_data_error(path, "file", "schema", f"must be {SCHEMA} (got {schema!r})")
    return document


class EntryReader:
    """Typed access to one table of a data file; every failure names file, entry and field."""

    def __init__(self, path: Path, kind: str, index: int, raw: object, label_field: str) -> None:
        self.path = path
        label = raw.get(label_field) if isinstance(raw, dict) else None
        self.entry = f"{kind} '{label}'" if isinstance(label, str) and label else f"{kind} #{index + 1}"
        if not isinstance(raw, dict):
            raise self.error(None, f"must be a table (got {type(raw).__name__})")
        self.raw: dict[str, Any] = raw
        self.used: set[str] = set()

    def error(self, field: str | None, problem: str) -> NemoclawError:
        return registry_data_error(self.path, self.entry, field, problem)

    def _get(self, field: str) -> Any:
        self.used.add(field)
        if field not in self.raw:
            raise self.error(field, "is missing")
        return self.raw[field]

    def text(self, field: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self._get(field)
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, f"must be a non-empty string (got {value!r})")
        if value != value.strip():
            raise self.error(field, f"must not start or end with whitespace (got {value!r})")
        if pattern is not None and not pattern.match(value):
            raise self.error(field, f"must be {what or 'of the form ' + pattern.pattern} (got {value!r})")
        return value

    def positive_int(self, field: str) -> int:
        value = self._get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(field, f"must be a positive integer (got {value!r})")
        return value

    def boolean(self, field: str) -> bool:
        value = self._get(field)
        if not isinstance(value, bool):
            raise self.error(field, f"must be true or false (got {value!r})")
        return value

    def text_list(
        self,
        field: str,
        *,
        allowed: tuple[str, ...] | None = None,
        non_empty: bool = True,
        unique: bool = True,
    ) -> tuple[str, ...]:
        value = self._get(field)
        if not isinstance(value, list) or (non_empty and not value):
            raise self.error(
                field, f"must be a {'non-empty ' if non_empty else ''}list of strings (got {value!r})"
            )
        for position, item in enumerate(value):
            if not isinstance(item, str) or not item or item != item.strip() or has_unsafe(item):
                raise self.error(
                    f"{field}[{position}]",
                    f"must be a non-empty string without surrounding "
                    f"whitespace or control characters (got {item!r})",
                )
            if allowed is not None and item not in allowed:
                raise self.error(
                    f"{field}[{position}]", f"must be one of {', '.join(allowed)} (got {item!r})"
                )
        if unique and len(set(value)) != len(value):
            raise self.error(field, f"must not repeat a value (got {value!r})")
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise self.error(unknown[0], "is not a known field (a typo?)")


def read_entries(
    path: Path, document: Mapping[str, Any], table: str, label_field: str, build: Callable[[EntryReader], Any]
) -> tuple[Any, ...]:
    """Build one value per ``[[table]]`` entry, rejecting unknown fields."""
    raw_entries = document.get(table)
    if not isinstance(raw_entries, list) or not raw_entries:
        raise registry_data_error(path, "file", table, f"must hold at least one [[{table}]] entry")
    built = []
    for index, raw in enumerate(raw_entries):
        reader = EntryReader(path, table, index, raw, label_field)
        built.append(build(reader))
        reader.finish()
    return tuple(built)


def check_top_level(path: Path, document: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise registry_data_error(path, "file", unknown[0], "is not a known top-level key (a typo?)")


# --- vLLM ---------------------------------------------------------------------------------------------------


def build_vllm_model(reader: EntryReader) -> VllmModel:
    slug = reader.text("slug", _SLUG_RE, "lower-case letters, digits, '.', '_' and '-'")
    hf_id = reader.text("hf_id", HF_ID_RE, "a Hugging Face id 'org/name'")
    return VllmModel(
        slug=slug,
        hf_id=hf_id,
        max_model_len=reader.positive_int("max_model_len"),
        flags=check_flags(reader, reader.text_list("flags", non_empty=False, unique=False)),
        gated=reader.boolean("gated"),
        platforms=reader.text_list("platforms", allowed=VLLM_PLATFORMS),
        min_compute_capability=compute_capability(reader, "min_compute_capability"),
        hf_revision=optional_revision(reader, "hf_revision"),
    )


_REVISION_RE = re.compile(r"^[0-9a-f]{40}$")


def optional_revision(reader: EntryReader, field: str) -> str | None:
    """An optional pinned Hugging Face commit: 40 lower-case hex digits (a branch or tag would move)."""
    if field not in reader.raw:
        reader.used.add(field)
        return None
    return reader.text(field, _REVISION_RE, "a full 40-hex-digit commit sha")


def compute_capability(reader: EntryReader, field: str) -> tuple[int, int] | None:
    """An optional ``"MAJOR.MINOR"`` string (``"8.9"``); absent means any GPU vLLM supports."""
    if field not in reader.raw:
        reader.used.add(field)
        return None
    value = reader.text(field)
    parsed = parse_compute_capability(value)
    if parsed is None:
        raise reader.error(field, f"must be a compute capability 'MAJOR.MINOR' such as \"8.9\" (got {value!r})")
    return parsed


def check_flags(reader: EntryReader, flags: tuple[str, ...]) -> tuple[str, ...]:
    """Flags are argv tokens: the first is a flag, no shell text, JSON values parse, no reserved flags."""
    if flags and not flags[0].startswith("--"):
        raise reader.error("flags[0]", f"must be a flag starting with '--' (got {flags[0]!r})")
    seen: set[str] = set()
    for position, token in enumerate(flags):
        field = f"flags[{position}]"
        name = token.split("=", 1)[0]
        if token.startswith("--") and name in seen:
            raise reader.error(field, f"repeats {name}")
        seen.add(name)
        if token[0] in "'\"" or token[-1] in "'\"" or " " in token:
            raise reader.error(
                field, f"must be one argv token, not shell text: no quotes or spaces (got {token!r})"
            )
        if token.startswith(("{", "[")):
            try:
                loads_json(token)
            except ValueError:
                raise reader.error(field, f"looks like JSON but does not parse (got {token!r})") from None
        if name in RESERVED_FLAGS:
            raise reader.error(field, f"must not set {name}: the serve command sets it")
    return flags


def build_vllm_profile(reader: EntryReader) -> VllmProfile:
    return VllmProfile(
        name=reader.text("name"),
        gpu_profile=reader.text("gpu_profile"),
        image=reader.text("image", _IMAGE_RE, "an image reference 'registry/repo:tag'"),
        default_slug=reader.text("default_slug"),
        pull_timeout_s=reader.positive_int("pull_timeout_s"),
        load_timeout_s=reader.positive_int("load_timeout_s"),
        container_name=reader.text("container_name", _CONTAINER_RE, "a Docker container name"),
        also_for=reader.text_list("also_for", allowed=PROFILE_ALIASES, non_empty=False),
    )


def load_vllm(path: Path) -> tuple[tuple[VllmModel, ...], dict[str, VllmProfile]]:
    document = read_toml(path)
    check_top_level(path, document, {"schema", "model", "profile"})
    models: tuple[VllmModel, ...] = read_entries(path, document, "model", "slug", build_vllm_model)
    check_unique(path, "model", [m.slug.lower() for m in models], "slug")
    check_unique(path, "model", [m.hf_id.lower() for m in models], "hf_id")
    profiles: tuple[VllmProfile, ...] = read_entries(
        path, document, "profile", "gpu_profile", build_vllm_profile
    )
    check_profiles(path, profiles, models)
    return models, {profile.gpu_profile: profile for profile in profiles}


def check_unique(path: Path, kind: str, values: list[str], field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise registry_data_error(path, f"{kind} '{value}'", field, "is used by more than one entry")
        seen.add(value)


def check_profiles(path: Path, profiles: tuple[VllmProfile, ...], models: tuple[VllmModel, ...]) -> None:
    by_slug = {model.slug: model for model in models}
    claimed: set[str] = set()
    for profile in profiles:
        entry = f"profile '{profile.gpu_profile}'"
        if profile.gpu_profile not in VLLM_PLATFORMS:
            raise registry_data_error(
                path, entry, "gpu_profile", f"must be one of {', '.join(VLLM_PLATFORMS)}"
            )
        for name in (profile.gpu_profile, *profile.also_for):
            if name in claimed:
                raise registry_data_error(path, entry, "gpu_profile", f"'{name}' is served by two profiles")
            claimed.add(name)
        default = by_slug.get(profile.default_slug)
        if default is None:
            raise registry_data_error(
                path, entry, "default_slug", f"'{profile.default_slug}' is not a [[model]] slug in this file"
            )
        if not default.serves_on(profile.gpu_profile):
            raise registry_data_error(
                path,
                entry,
                "default_slug",
                f"'{default.slug}' does not list {profile.gpu_profile} in its platforms",
            )


# --- NIM and Ollama -----------------------------------------------------------------------------------------


def build_nim_model(reader: EntryReader) -> NimModel:
    served_id = reader.text("served_id")
    if not is_safe_model_id(served_id):
        raise reader.error("served_id", f"must match ^[A-Za-z0-9._:/-]+$ (got {served_id!r})")
    return NimModel(
        name=reader.text("name"),
        image=reader.text("image", _IMAGE_RE, "an image reference 'registry/repo:tag'"),
        min_vram_mib=reader.positive_int("min_vram_mib"),
        served_id=served_id,
        aliases=reader.text_list("aliases", non_empty=False) if "aliases" in reader.raw else (),
    )


def load_nim(path: Path) -> tuple[NimModel, ...]:
    document = read_toml(path)
    check_top_level(path, document, {"schema", "model"})
    models: tuple[NimModel, ...] = read_entries(path, document, "model", "name", build_nim_model)
    check_unique(path, "model", [m.name.lower() for m in models], "name")
    check_unique(path, "model", [n.lower() for m in models for n in (m.name, *m.aliases)], "aliases")
    return models


def build_ollama_starter(reader: EntryReader) -> OllamaStarter:
    return OllamaStarter(
        tag=reader.text("tag", _OLLAMA_TAG_RE, "an Ollama tag 'name:size'"),
        required_memory_mib=reader.positive_int("required_memory_mib"),
        download_bytes=reader.positive_int("download_bytes"),
        compute_intensive=reader.boolean("compute_intensive"),
    )


def load_ollama(path: Path) -> tuple[tuple[OllamaStarter, ...], str]:
    document = read_toml(path)
    check_top_level(path, document, {"schema", "starter", "fallback_tag"})
    starters: tuple[OllamaStarter, ...] = read_entries(path, document, "starter", "tag", build_ollama_starter)
    check_unique(path, "starter", [s.tag for s in starters], "tag")
    fallback = document.get("fallback_tag")
    if not isinstance(fallback, str) or fallback not in {s.tag for s in starters}:
        raise registry_data_error(
            path, "file", "fallback_tag", f"must be one of the starter tags (got {fallback!r})"
        )
    return starters, fallback


__all__ = [
    "DATA_DIR", "NIM_FILE", "OLLAMA_FILE", "PROFILE_ALIASES", "VLLM_FILE", "VLLM_PLATFORMS", "compute_capability",
    "load_nim", "load_ollama", "load_vllm",
]

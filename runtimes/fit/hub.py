"""Model facts from the Hugging Face hub, without downloading weights.

- ``config.json``: ``hf_hub_download`` of that one file into the HF cache (``$HF_HOME/hub``), so a later
  ``vllm serve`` finds it, and an offline run (``HF_HUB_OFFLINE=1``, or the hub unreachable) uses the cached copy.
- Stored bytes: the safetensors headers of ``model.safetensors`` or of every shard named by
  ``model.safetensors.index.json`` — the same facts huggingface_hub's ``get_safetensors_metadata`` returns, read
  through huggingface_hub's HTTP session, URLs and headers, but with two exact range requests per file (the 8-byte
  length, then the JSON header) so no byte of tensor data is fetched; responses are streamed and cut at the
  header's end even if a server ignores ``Range``. The index goes through ``hf_hub_download`` so it lands in the
  configured cache (``get_safetensors_metadata`` would put it in the process-wide default cache).
- When headers cannot be read the repo's weight-file sizes (``model_info(files_metadata=True)``) stand in, and
  the assumptions say so. Header summaries are kept per commit under ``$XDG_CACHE_HOME/nemoclaw-runtime/fit``
  for offline runs.

Everything comes from :class:`~nemoclaw_runtime.kernel.settings.Settings` (endpoint, token, cache root,
``HF_HUB_OFFLINE`` from its environment mapping); nothing reads ``os.environ``. A gated model without a token, a
refused token or a missing repository raise the transfer layer's typed errors (exit 3 / 2); everything else makes
the fact unknown with a reason.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.errors import AccessDenied, DownloadFailed, InvalidInput, MissingToken, NemoclawError
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import JsonTooDeep, loads_json
from nemoclaw_runtime.runtimes.fit.facts import ModelFacts
from nemoclaw_runtime.runtimes.fit.safetensors import (
    SOURCE_FILE_SIZES,
    SOURCE_HEADERS,
    HeaderError,
    WeightsFacts,
    header_length,
    merge_counts,
    parse_header,
)
from nemoclaw_runtime.runtimes.transfer import weights as transfer

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
HEADER_TIMEOUT_S = 15.0
#: The most one ``facts()`` call spends reading safetensors headers, all shards together: a mirror trickling
#: bytes just faster than the per-read timeout would otherwise hold ``up``/``fit`` for hours (each header is
#: also bounded in size, ``safetensors.MAX_HEADER_BYTES``).
FACTS_DEADLINE_S = 60.0
#: How long the one reachability probe may take before the hub counts as unreachable for this source.
REACH_TIMEOUT_S = 2.0
#: Proxy variables that route hub traffic elsewhere: a direct connection probe would then say nothing.
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
MAX_SHARDS = 4096
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "true", "yes", "on"}
_LIBRARY = "nemoclaw-runtime"


class _Unavailable(Exception):
    """A fact could not be had; ``reason`` is one line for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _OutOfTime(_Unavailable):
    """The headers were not read within the call's deadline (no further request is made)."""


@dataclass
class HubModelSource:
    """:class:`~nemoclaw_runtime.runtimes.fit.facts.ModelSource` over the hub named by ``settings``.

    Args:
        settings: endpoint (``HF_ENDPOINT``), token (``HF_TOKEN``), cache root (``HF_HOME``), environment.
        offline: force offline (cache only); default ``HF_HUB_OFFLINE`` from ``settings.environ``.
        max_workers: shards whose headers are read at once.
        facts_cache: where header summaries are kept per commit (default ``$XDG_CACHE_HOME/nemoclaw-runtime/fit``);
            ``None`` keeps nothing.
    """

    settings: Settings
    offline: bool | None = None
    max_workers: int = 8
    timeout_s: float = HEADER_TIMEOUT_S
    facts_cache: Path | None = None
    use_facts_cache: bool = True
    deadline_s: float = FACTS_DEADLINE_S
    _unreachable: str | None = None  # why the hub could not be reached, once probed (then: the cache only)
    _probed: bool = False
    # held while the probe runs, so parallel facts() calls wait for its answer instead of going to the network
    _probe_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.facts_cache is None and self.use_facts_cache:
            root = self.settings.xdg_cache_home or self.settings.home / ".cache"
            self.facts_cache = root / "nemoclaw-runtime" / "fit"

    # --- the protocol ------------------------------------------------------------------------------------
    def facts(self, model_id: str, *, revision: str | None = None) -> ModelFacts:
        token = self._token()
        deadline = time.monotonic() + self.deadline_s
        offline = self._offline() or self._hub_unreachable() is not None
        reasons: list[str] = []
        assumptions: list[str] = []
        from_cache = False
        config: dict[str, Any] | None = None
        sha = revision if revision and _SHA_RE.match(revision) else None
        try:
            path, cached_only = self._download(model_id, CONFIG_FILE, revision, token, offline)
            config = _load_json(path)
            sha = _snapshot_sha(path) or sha
            if cached_only:
                from_cache = True
                why = self._unreachable or ("offline" if self._offline() else "hub unreachable")
                assumptions.append(f"config.json from the HF cache ({why})")
        except _Unavailable as exc:
            reasons.append(f"config.json unknown: {exc.reason}")
        weights: WeightsFacts | None = None
        try:
            weights, note = self._weights(model_id, sha or revision, token, offline or from_cache, deadline)
            if note:
                assumptions.append(note)
        except _Unavailable as exc:
            reasons.append(f"stored weight bytes unknown: {exc.reason}")
        return ModelFacts(model_id, sha or revision, config, weights, tuple(reasons), tuple(assumptions), from_cache)

    # --- weights -----------------------------------------------------------------------------------------
    def _weights(self, model_id: str, revision: str | None, token: Secret | None,
                 offline: bool, deadline: float) -> tuple[WeightsFacts, str | None]:
        cached = self._cached_summary(model_id, revision)
        if cached is not None:
            return cached, None
        local = self._local_headers(model_id, revision)
        if local is not None:
            self._keep_summary(model_id, revision, local)
            return local, None
        if offline:
            raise _Unavailable(f"{self._cache_only_reason()} and no header summary or weight file is cached")
        try:
            shards = self._shards(model_id, revision, token)
            counts = self._read_headers(model_id, revision, token, shards, deadline)
        except _OutOfTime:
            raise
        except _Unavailable as exc:
            sized = self._file_sizes(model_id, revision, token)
            return sized, (f"weights from the repo's file sizes ({sized.files} files), not the safetensors "
                           f"headers: {exc.reason}")
        facts = WeightsFacts.from_counts(counts, files=len(shards))
        self._keep_summary(model_id, revision, facts)
        return facts, None

    def _shards(self, model_id: str, revision: str | None, token: Secret | None) -> list[str]:
        try:
            path, _ = self._download(model_id, INDEX_FILE, revision, token, offline=False, optional=True)
        except _Missing:
            return [SINGLE_FILE]
        index = _load_json(path)
        weight_map = index.get("weight_map") if isinstance(index, Mapping) else None
        if not isinstance(weight_map, Mapping) or not weight_map:
            raise _Unavailable(f"{INDEX_FILE} has no weight_map")
        shards = sorted({str(v) for v in weight_map.values()})
        if len(shards) > MAX_SHARDS or any(".." in s or s.startswith("/") for s in shards):
            raise _Unavailable(f"{INDEX_FILE} names implausible shards")
        return shards

    def _read_headers(self, model_id: str, revision: str | None, token: Secret | None,
                      shards: list[str], deadline: float) -> dict[str, int]:
        def one(filename: str) -> dict[str, int]:
            return self._read_header(model_id, revision, token, filename, deadline)

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_workers, len(shards)))) as pool:
            parts = list(pool.map(one, shards))
        return merge_counts(parts)

    def _read_header(self, model_id: str, revision: str | None, token: Secret | None, filename: str,
                     deadline: float) -> dict[str, int]:
        prefix = self._range(model_id, revision, token, filename, 0, 8, deadline)
        try:
            length = header_length(prefix)
            raw = self._range(model_id, revision, token, filename, 8, length, deadline)
            if len(raw) != length:
                raise HeaderError(f"the header of {filename} was cut short")
            return parse_header(raw)
        except HeaderError as exc:
            raise _Unavailable(str(exc)) from None

    def _range(self, model_id: str, revision: str | None, token: Secret | None, filename: str,
               start: int, length: int, deadline: float) -> bytes:
        """``length`` bytes at ``start`` through huggingface_hub's session; at most that many are read, and
        :class:`_OutOfTime` once ``deadline`` (``time.monotonic()``) has passed."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, RemoteEntryNotFoundError
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = hf_hub_url(model_id, filename, revision=revision, endpoint=transfer.endpoint_of(self.settings))
        headers = build_hf_headers(token=_token_arg(token), library_name=_LIBRARY, library_version=__version__)
        headers["Range"] = f"bytes={start}-{start + length - 1}"
        _check_deadline(deadline, self.deadline_s)
        with self._hub_errors(model_id, token, f"reading the safetensors header of {filename} of"):
            try:
                with get_session().stream("GET", url, headers=headers, timeout=self.timeout_s) as response:
                    hf_raise_for_status(response)
                    skip = start if response.status_code == 200 else 0  # a server that ignored Range
                    return _read_exactly(response.iter_bytes(), skip, length, deadline, self.deadline_s)
            except (EntryNotFoundError, RemoteEntryNotFoundError):
                raise _Unavailable(f"{filename} is not in the repository") from None

    def _file_sizes(self, model_id: str, revision: str | None, token: Secret | None) -> WeightsFacts:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=transfer.endpoint_of(self.settings), token=_token_arg(token), library_name=_LIBRARY,
                    library_version=__version__)
        with self._hub_errors(model_id, token, "reading the file list of"):
            info = api.model_info(model_id, revision=revision, files_metadata=True, timeout=self.timeout_s)
        sizes = {s.rfilename: s.size for s in info.siblings or () if s.size is not None}
        for suffixes in ((".safetensors",), WEIGHT_SUFFIXES):
            chosen = {name: size for name, size in sizes.items() if name.endswith(suffixes)}
            if chosen:
                return WeightsFacts(sum(chosen.values()), SOURCE_FILE_SIZES, {}, len(chosen),
                                    "sum of the weight files' sizes")
        raise _Unavailable("the repository lists no weight files with sizes")

    # --- the local caches --------------------------------------------------------------------------------
    def _local_headers(self, model_id: str, revision: str | None) -> WeightsFacts | None:
        """Headers read from weight files already complete in the HF cache (no network)."""
        from huggingface_hub import try_to_load_from_cache

        cache = transfer.cache_dir(self.settings)
        index = try_to_load_from_cache(model_id, INDEX_FILE, cache_dir=cache, revision=revision)
        if isinstance(index, str):
            weight_map = _load_json(Path(index)).get("weight_map")
            names = sorted({str(v) for v in weight_map.values()}) if isinstance(weight_map, Mapping) else []
        else:
            names = [SINGLE_FILE]
        parts = []
        for name in names:
            found = try_to_load_from_cache(model_id, name, cache_dir=cache, revision=revision)
            if not isinstance(found, str):
                return None
            try:
                with open(found, "rb") as handle:
                    length = header_length(handle.read(8))
                    parts.append(parse_header(handle.read(length)))
            except (OSError, HeaderError):
                return None
        return WeightsFacts.from_counts(merge_counts(parts), files=len(names)) if parts else None

    def _summary_path(self, model_id: str, revision: str | None) -> Path | None:
        if self.facts_cache is None or not revision or not _SHA_RE.match(revision):
            return None
        return self.facts_cache / model_id.replace("/", "--") / f"{revision}.json"

    def _cached_summary(self, model_id: str, revision: str | None) -> WeightsFacts | None:
        path = self._summary_path(model_id, revision)
        if path is None:
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            counts = {str(k): int(v) for k, v in doc["parameter_count"].items()}
            return WeightsFacts.from_counts(counts, files=int(doc.get("files", 0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _keep_summary(self, model_id: str, revision: str | None, facts: WeightsFacts) -> None:
        path = self._summary_path(model_id, revision)
        if path is None or facts.source != SOURCE_HEADERS:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"model": model_id, "revision": revision, "files": facts.files,
                                       "parameter_count": dict(facts.parameter_count)}), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:  # a read-only cache only costs the next offline run
            logger.debug("could not keep the header summary of %s: %s", model_id, exc)

    # --- the hub -----------------------------------------------------------------------------------------
    def _download(self, model_id: str, filename: str, revision: str | None, token: Secret | None,
                  offline: bool, optional: bool = False) -> tuple[Path, bool]:
        """(path, from_cache_only). Online failures that are not the user's to fix fall back to the cache;
        an ``optional`` file the repository lacks raises :class:`_Missing`."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        kwargs: dict[str, Any] = dict(revision=revision, cache_dir=transfer.cache_dir(self.settings),
                                      library_name=_LIBRARY, library_version=__version__)
        if not offline:
            try:
                with self._hub_errors(model_id, token, f"reading {filename} of"):
                    try:
                        path = hf_hub_download(model_id, filename, endpoint=transfer.endpoint_of(self.settings),
                                               token=_token_arg(token), etag_timeout=self.timeout_s, **kwargs)
                    except EntryNotFoundError:
                        if optional:
                            raise _Missing() from None
                        raise _Unavailable(f"the repository has no {filename}") from None
                return Path(str(path)), False
            except _Unavailable as exc:
                online_reason: str | None = exc.reason
        else:
            online_reason = None
        try:
            path = hf_hub_download(model_id, filename, local_files_only=True, **kwargs)
        except Exception:  # noqa: BLE001 - any cache miss
            if online_reason:
                raise _Unavailable(online_reason) from None
            raise _Unavailable(f"{self._cache_only_reason()} and {filename} is not in the HF cache "
                               f"({transfer.cache_dir(self.settings)})") from None
        return Path(str(path)), True

    @contextmanager
    def _hub_errors(self, model_id: str, token: Secret | None, action: str) -> Iterator[None]:
        """The user's problems (token, access, bad id) raise; the hub's problems become "unknown"."""
        try:
            yield
        except (_Unavailable, _Missing):
            raise
        except NemoclawError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated by the transfer layer's one translation
            error = transfer.translate_hf_error(exc, model_id=model_id, token=token, settings=self.settings,
                                                 action=action)
            if isinstance(error, (MissingToken, AccessDenied, InvalidInput)):
                raise error from exc
            if isinstance(error, DownloadFailed):
                raise _Unavailable(error.message) from exc
            raise _Unavailable(str(error)) from exc

    def _token(self) -> Secret | None:
        found = self.settings.hf_token_value()
        return found[1] if found else None

    def _hub_unreachable(self) -> str | None:
        """Why the endpoint does not answer a TCP connection within :data:`REACH_TIMEOUT_S`, or None.

        Probed once per source: without it an unreachable hub costs huggingface_hub's whole retry ladder (tens of
        seconds) per file, for every model of a listing. Behind a proxy the probe is skipped (it would prove
        nothing) and huggingface_hub's own timeouts apply."""
        with self._probe_lock:
            if not self._probed:
                self._unreachable = self._probe()
                self._probed = True
            return self._unreachable

    def _probe(self) -> str | None:
        if self._offline() or any(self.settings.environ.get(name) for name in _PROXY_VARIABLES):
            return None
        url = urllib.parse.urlsplit(transfer.endpoint_of(self.settings))
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:
            return None  # the settings layer rejects malformed endpoints; nothing to add here
        try:
            with socket.create_connection((url.hostname or "", port), timeout=min(REACH_TIMEOUT_S, self.timeout_s)):
                pass
        except OSError as exc:
            return f"{transfer.shown_endpoint(self.settings)} unreachable ({exc.strerror or type(exc).__name__})"
        return None

    def _cache_only_reason(self) -> str:
        return self._unreachable or "offline (HF_HUB_OFFLINE=1)"

    def _offline(self) -> bool:
        if self.offline is not None:
            return self.offline
        raw = self.settings.environ.get("HF_HUB_OFFLINE", "")
        return raw.strip().lower() in _TRUE


def default_model_source(settings: Settings, *, timeout_s: float = HEADER_TIMEOUT_S) -> HubModelSource:
    """The source ``plan``, ``up``, ``fit``, ``models`` and ``options`` use when the caller gives none: the hub the
    settings name (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME``, ``HF_HUB_OFFLINE``), headers only, cached."""
    return HubModelSource(settings, timeout_s=timeout_s)


class _Missing(Exception):
    """An optional file is absent from the repository."""


def _check_deadline(deadline: float, budget_s: float) -> None:
    if time.monotonic() > deadline:
        raise _OutOfTime(f"the safetensors headers were not read within {budget_s:g} s (a slow hub or mirror)")


def _read_exactly(chunks: Iterator[bytes], skip: int, length: int, deadline: float = math.inf,
                  budget_s: float = FACTS_DEADLINE_S) -> bytes:
    """``length`` bytes after ``skip`` bytes of a streamed body; stops reading as soon as it has them, or raises
    :class:`_OutOfTime` once ``deadline`` has passed."""
    out = bytearray()
    for chunk in chunks:
        _check_deadline(deadline, budget_s)
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        out += chunk[: length - len(out)]
        if len(out) >= length:
            break
    return bytes(out)


def _token_arg(token: Secret | None) -> str | bool:
    return token.reveal() if token else False


def _snapshot_sha(path: Path) -> str | None:
    """The commit of a cached file: ``.../snapshots/<sha>/config.json``."""
    parent = path.parent.name
    return parent if _SHA_RE.match(parent) and path.parent.parent.name == "snapshots" else None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, JsonTooDeep) as exc:
        raise _Unavailable(f"{path.name} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _Unavailable(f"{path.name} is not a JSON object")
    return data


__all__ = ["HubModelSource", "default_model_source"]

"""What a Hugging Face repository holds at a revision, and how much of it the cache still lacks.

One ``model_info(files_metadata=True)`` call gives the commit sha a revision names (:func:`resolve_revision`, for
pinning), each file's size and blob id (the prefetch's progress total and the names of a stalled download's
temporary files), and with the cache, the bytes a download still needs (:func:`estimate_repo_bytes`, for the disk
preflight). :mod:`runtimes.transfer.weights` re-exports the public names here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.errors import NemoclawError
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.transfer.hf_access import (
    LIBRARY,
    METADATA_TIMEOUT_S,
    cache_dir,
    endpoint_of,
    token_arg,
    translated_errors,
)


@dataclass(frozen=True)
class RepoFiles:
    sha: str
    sizes: dict[str, int | None]  # path -> bytes
    etags: dict[str, str] = field(default_factory=dict)  # blob id (LFS sha256 or git oid) -> path

    @property
    def total(self) -> int | None:
        sizes = list(self.sizes.values())
        return sum(s for s in sizes if s is not None) if sizes and None not in sizes else None


def repo_files(model_id: str, token: Secret | None, settings: Settings, revision: str | None) -> RepoFiles:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint_of(settings), token=token_arg(token), library_name=LIBRARY,
                library_version=__version__)
    with translated_errors(model_id, token, settings, "reading the file list of"):
        info = api.model_info(model_id, revision=revision, files_metadata=True, timeout=METADATA_TIMEOUT_S)
    sizes = {s.rfilename: s.size for s in info.siblings or ()}
    etags: dict[str, str] = {}
    for sibling in info.siblings or ():
        lfs_sha = getattr(sibling.lfs, "sha256", None) if sibling.lfs else None
        for etag in (lfs_sha, sibling.blob_id):
            if etag:
                etags[str(etag)] = sibling.rfilename
    return RepoFiles(str(info.sha), sizes, etags)


def resolve_revision(model_id: str, token: Secret | None, settings: Settings, revision: str | None = None) -> str:
    """The commit sha ``revision`` (default the hub's main) of ``model_id`` names now (``model_info(...).sha``),
    without downloading anything."""
    return repo_files(model_id, token, settings, revision).sha


def cached_files(model_id: str, files: RepoFiles, settings: Settings) -> set[str]:
    """The files of that revision already complete in the cache."""
    from huggingface_hub import try_to_load_from_cache

    cached = set()
    for path in files.sizes:
        found = try_to_load_from_cache(model_id, path, cache_dir=cache_dir(settings), revision=files.sha)
        if isinstance(found, str):
            cached.add(path)
    return cached


def estimate_repo_bytes(model_id: str, token: Secret | None, settings: Settings, *,
                        revision: str | None = None) -> int | None:
    """Bytes the download still needs (the repo's size minus what the cache already holds), for the disk
    preflight. None when the hub gives no sizes or cannot be asked — the download itself will then say why."""
    try:
        files = repo_files(model_id, token, settings, revision)
    except NemoclawError:
        return None
    if files.total is None:
        return None
    cached = cached_files(model_id, files, settings)
    return sum(size or 0 for path, size in files.sizes.items() if path not in cached)


__all__ = ["RepoFiles", "cached_files", "estimate_repo_bytes", "repo_files", "resolve_revision"]

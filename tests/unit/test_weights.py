"""Gating, the disk estimate and the prefetch, against the fake Hugging Face Hub (a local HTTP server, no Docker)."""

from __future__ import annotations

import errno
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from nemoclaw_runtime.kernel.clock import CancelToken
from nemoclaw_runtime.kernel.errors import AccessDenied, Cancelled, DownloadFailed, MissingToken
from nemoclaw_runtime.kernel.events import Event, Progress, Warning
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.runtimes.transfer import weights
from nemoclaw_runtime.runtimes.transfer.weights import check_access, estimate_repo_bytes, prefetch
from tests.fake_servers.fake_hf import GATED_REPO, PUBLIC_REPO, FakeHub, fake_hf, fake_hf_server  # noqa: F401
from tests.fakes.clock import FakeClock
from tests.helpers.docker_env import free_port

WRONG = Secret("hf_wrongwrongwrongwrong1234")


@pytest.fixture
def settings(fake_hf: FakeHub, tmp_path: Path) -> Settings:  # noqa: F811 (fixture)
    return Settings(hf_endpoint=fake_hf.url, hf_home_override=tmp_path / "hf")


def _fetch(settings: Settings, model: str = PUBLIC_REPO, token: Secret | None = None,
           cancel: CancelToken | None = None, events: list[Event] | None = None, **kw: Any) -> Any:
    sink = events.append if events is not None else (lambda e: None)
    return prefetch(model, token=token, settings=settings, events=sink, cancel=cancel or CancelToken(), **kw)


def _file_gets(hub: FakeHub) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in hub.requests_to("/resolve/", "GET")]


def _assert_snapshot_complete(hub: FakeHub, repo_id: str, path: Path) -> None:
    repo = hub.repos[repo_id]
    assert path.name == repo.sha
    for name, file in repo.files.items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == file.sha256
    assert not list(path.parents[1].rglob("*.incomplete"))


def _leaks(error: BaseException, secret: Secret) -> bool:
    return secret.reveal() in f"{error} {error.__dict__} {getattr(error, 'to_dict', dict)()}"


# --- access ---------------------------------------------------------------------------------------------------------


def test_gated_without_token_is_refused_before_asking_the_hub(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    with pytest.raises(MissingToken) as info:
        check_access(GATED_REPO, None, settings)

    error = info.value
    assert error.exit_code == 3
    assert "HF_TOKEN" in error.message and "HUGGING_FACE_HUB_TOKEN" in error.message
    assert f"{fake_hf.url}/{GATED_REPO}" in (error.remedy or "")
    assert error.details["licence_url"] == f"{fake_hf.url}/{GATED_REPO}"
    assert fake_hf.requests == []


def test_gated_with_the_right_token_passes(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    result = check_access(GATED_REPO, Secret(fake_hf.token), settings)

    assert result.token_used and result.endpoint == fake_hf.url
    assert result.licence_url == f"{fake_hf.url}/{GATED_REPO}"
    assert fake_hf.requests and all(r.token_valid for r in fake_hf.requests)


def test_gated_with_a_wrong_token_is_access_denied_without_leaking_it(settings: Settings) -> None:
    with pytest.raises(AccessDenied) as info:
        check_access(GATED_REPO, WRONG, settings)

    assert info.value.exit_code == 3
    assert info.value.cause == "hf-gated"
    assert info.value.details["status"] == 403
    assert GATED_REPO in (info.value.remedy or "")
    assert not _leaks(info.value, WRONG)


def test_registry_says_ungated_but_the_hub_gates_it(settings: Settings) -> None:
    with pytest.raises(MissingToken):
        check_access(GATED_REPO, None, settings, gated=False)


def test_unknown_repo_is_not_found_or_no_access(settings: Settings) -> None:
    with pytest.raises(AccessDenied) as info:
        check_access("acme/does-not-exist", WRONG, settings)

    assert "not found" in info.value.message and "no access" in info.value.message
    assert not _leaks(info.value, WRONG)


def test_public_repo_sends_no_token_even_when_the_environment_has_one(
        fake_hf: FakeHub, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("HF_TOKEN", "hf_fromtheenvironment123456")

    result = check_access(PUBLIC_REPO, None, settings, gated=False)

    assert not result.token_used
    assert fake_hf.requests and not any(r.authorized for r in fake_hf.requests)


def test_unreachable_hub_is_a_download_failure(tmp_path: Path) -> None:
    settings = Settings(hf_endpoint=f"http://127.0.0.1:{free_port()}", hf_home_override=tmp_path)

    with pytest.raises(DownloadFailed) as info:
        check_access(PUBLIC_REPO, WRONG, settings)

    assert info.value.exit_code == 4 and info.value.cause == "network"
    assert not _leaks(info.value, WRONG)


# --- estimate ------------------------------------------------------------------------------------------------------


def test_estimate_is_what_is_still_missing(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    size = sum(f.size for f in fake_hf.repos[PUBLIC_REPO].files.values())

    assert estimate_repo_bytes(PUBLIC_REPO, None, settings) == size
    _fetch(settings)
    assert estimate_repo_bytes(PUBLIC_REPO, None, settings) == 0


def test_estimate_is_none_when_the_hub_cannot_be_asked(tmp_path: Path) -> None:
    settings = Settings(hf_endpoint=f"http://127.0.0.1:{free_port()}", hf_home_override=tmp_path)

    assert estimate_repo_bytes(PUBLIC_REPO, None, settings) is None


# --- prefetch ------------------------------------------------------------------------------------------------------


def test_prefetch_downloads_into_hf_home_with_progress(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    events: list[Event] = []

    result = _fetch(settings, events=events)

    repo = fake_hf.repos[PUBLIC_REPO]
    assert result.revision == repo.sha
    assert result.path.is_relative_to(settings.hf_home / "hub")
    _assert_snapshot_complete(fake_hf, PUBLIC_REPO, result.path)
    total = sum(f.size for f in repo.files.values())
    assert result.total_bytes == total and result.downloaded_bytes == total and result.files == 2
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and all(p.task == "weights" and p.subject == PUBLIC_REPO for p in progress)
    assert all(p.total_bytes == total and p.items_total == 2 for p in progress)
    done = [p.done_bytes for p in progress]
    assert done == sorted(done) and done[-1] == total and progress[-1].items_done == 2
    # refs/main is written, so a container with HF_HUB_OFFLINE=1 finds the snapshot by branch name
    assert (settings.hf_home / "hub" / "models--acme--tiny-model" / "refs" / "main").read_text() == repo.sha


def test_second_prefetch_downloads_nothing(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    _fetch(settings)
    fake_hf.reset()
    events: list[Event] = []

    result = _fetch(settings, events=events)

    assert result.downloaded_bytes == 0
    assert _file_gets(fake_hf) == []
    last = [e for e in events if isinstance(e, Progress)][-1]
    assert last.done_bytes == last.total_bytes


def test_gated_prefetch_needs_the_token(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    with pytest.raises(MissingToken):
        _fetch(settings, GATED_REPO)
    with pytest.raises(AccessDenied) as info:
        _fetch(settings, GATED_REPO, WRONG)
    assert not _leaks(info.value, WRONG)

    result = _fetch(settings, GATED_REPO, Secret(fake_hf.token))

    _assert_snapshot_complete(fake_hf, GATED_REPO, result.path)


def test_a_dropped_connection_resumes_with_a_range_request(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    # huggingface_hub writes in 10 MiB chunks: cut the body after the first one has reached the disk.
    chunk = 10 * 1024 * 1024
    fake_hf.add_repo("acme/big-model", {"model.safetensors": bytes(range(256)) * (chunk // 200)})
    fake_hf.drop_downloads_after(chunk + 4096, times=1)

    events: list[Event] = []

    result = _fetch(settings, "acme/big-model", events=events)

    _assert_snapshot_complete(fake_hf, "acme/big-model", result.path)
    ranges = [r.range for r in fake_hf.requests_to("/resolve/", "GET") if r.range]
    assert ranges == [f"bytes={chunk}-"]
    # huggingface_hub's own "resuming" warning arrives as an event, not as a line on stderr
    warnings = [e.message for e in events if isinstance(e, Warning)]
    assert any("resume" in w for w in warnings) and all("\n" not in w for w in warnings)
    assert logging.getLogger("huggingface_hub").handlers  # its handler is back afterwards


def test_an_interrupted_prefetch_resumes_and_completes(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    fake_hf.slow_downloads(0.05, chunk_size=16 * 1024)  # the weights file takes ~0.8 s; config.json one chunk
    cancel = CancelToken()

    def cancel_on_first_progress(event: Event) -> None:
        if isinstance(event, Progress) and event.done_bytes > 0:
            cancel.cancel()

    with pytest.raises(Cancelled):
        prefetch(PUBLIC_REPO, token=None, settings=settings, events=cancel_on_first_progress, cancel=cancel)
    hub_dir = settings.hf_home / "hub"
    assert not list(hub_dir.rglob("*.incomplete"))  # no half file is left to be mistaken for a whole one
    finished_before = {p.name for p in hub_dir.rglob("snapshots/*/*")}
    assert "model.safetensors" not in finished_before
    fake_hf.reset()

    result = _fetch(settings)

    _assert_snapshot_complete(fake_hf, PUBLIC_REPO, result.path)
    assert "model.safetensors" in _file_gets(fake_hf)
    assert not finished_before & set(_file_gets(fake_hf))  # what finished is not fetched again


def test_cancel_before_starting(settings: Settings) -> None:
    cancel = CancelToken()
    cancel.cancel()

    with pytest.raises(Cancelled):
        _fetch(settings, cancel=cancel)


def test_offline_with_a_complete_cache_uses_it_with_a_warning(settings: Settings) -> None:
    first = _fetch(settings)
    offline = settings.replace(hf_endpoint=f"http://127.0.0.1:{free_port()}")
    events: list[Event] = []

    result = _fetch(offline, events=events)

    assert result.from_cache_only and result.revision == first.revision and result.path == first.path
    assert any(isinstance(e, Warning) and "unreachable" in e.message for e in events)


def test_offline_without_a_cache_is_a_download_failure(tmp_path: Path) -> None:
    settings = Settings(hf_endpoint=f"http://127.0.0.1:{free_port()}", hf_home_override=tmp_path)

    with pytest.raises(DownloadFailed) as info:
        _fetch(settings)

    assert info.value.cause == "network" and "127.0.0.1" in info.value.message


# --- the translator ---------------------------------------------------------------------------------------------


def _translate(exc: BaseException, token: Secret | None = WRONG) -> Any:
    return weights.translate_hf_error(exc, model_id="acme/m", token=token, settings=Settings(), action="downloading")


def test_translate_disk_full_and_permission() -> None:
    full = _translate(OSError(errno.ENOSPC, "No space left on device"))
    denied = _translate(PermissionError(errno.EACCES, "Permission denied", "/cache/hub"))

    assert isinstance(full, DownloadFailed) and full.cause == "disk-full"
    assert isinstance(denied, DownloadFailed) and denied.cause == "cache-permission"


def test_translate_hub_errors_by_status() -> None:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    def http_error(status: int) -> HfHubHTTPError:
        request = httpx2.Request("GET", "https://huggingface.co/api/models/acme/m")
        message = f"{status} error for token {WRONG.reveal()}"
        return HfHubHTTPError(message, response=httpx2.Response(status, request=request))

    server = _translate(http_error(500))
    refused = _translate(http_error(401))
    anonymous = _translate(http_error(401), token=None)

    assert isinstance(server, DownloadFailed) and server.cause == "hub-error" and not _leaks(server, WRONG)
    assert "***" in server.message
    assert isinstance(refused, AccessDenied) and refused.details["licence_url"] == "https://huggingface.co/acme/m"
    assert isinstance(anonymous, MissingToken)


def test_translate_by_the_huggingface_hub_table() -> None:
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def hub(cls: type, status: int) -> Any:
        request = httpx2.Request("GET", "https://huggingface.co/api/models/acme/m")
        return cls(f"{status} for {WRONG.reveal()}", response=httpx2.Response(status, request=request))

    gated_anonymous = _translate(hub(GatedRepoError, 403), token=None)
    gated = _translate(hub(GatedRepoError, 403))
    missing = _translate(hub(RepositoryNotFoundError, 404), token=None)
    missing_with_token = _translate(hub(RepositoryNotFoundError, 404))
    revision = _translate(hub(RevisionNotFoundError, 404))
    invalid = _translate(HFValidationError("Repo id must be in the form 'repo_name'"))
    offline = _translate(LocalEntryNotFoundError("cannot find the requested files in the disk cache"))
    refused_connection = _translate(ConnectionRefusedError(111, "Connection refused"))

    assert isinstance(gated_anonymous, MissingToken) and "variables" in gated_anonymous.details
    assert isinstance(gated, AccessDenied) and gated.cause == "hf-gated" and "HTTP 403" in gated.message
    assert gated.details == {"model": "acme/m", "endpoint": "https://huggingface.co",
                             "licence_url": "https://huggingface.co/acme/m", "status": 403}
    assert isinstance(missing, AccessDenied) and missing.cause == "hf-not-found"
    assert "private repository" in (missing.remedy or "") and "its account" in (missing_with_token.remedy or "")
    assert type(revision).__name__ == "InvalidInput" and revision.exit_code == 2 and not _leaks(revision, WRONG)
    assert invalid.exit_code == 2 and "org/name" in (invalid.remedy or "")
    assert isinstance(offline, DownloadFailed) and offline.cause == "network"
    assert isinstance(refused_connection, DownloadFailed) and refused_connection.cause == "network"


def test_translate_unknown_error_keeps_its_type_name() -> None:
    error = _translate(RuntimeError(f"odd {WRONG.reveal()}"))

    assert isinstance(error, DownloadFailed) and "RuntimeError" in error.message and not _leaks(error, WRONG)


def test_a_repo_without_config_json_is_still_accessible(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    fake_hf.add_repo("acme/gguf-only", {"model-q4.gguf": b"GGUF" + bytes(100)})

    result = check_access("acme/gguf-only", None, settings, gated=False)

    assert result.model_id == "acme/gguf-only"


def test_progress_reports_a_rate_once_bytes_moved(settings: Settings) -> None:
    events: list[Event] = []

    _fetch(settings, events=events)

    rates = [e.rate_bytes_per_s for e in events if isinstance(e, Progress)]
    assert rates[-1] is not None and rates[-1] > 0


# --- faults: stall watchdog, rate limit, 5xx retries ----------------------------------------------------------------


def test_a_stalled_download_is_cancelled_naming_the_file_and_its_bytes(fake_hf: FakeHub, tmp_path: Path) -> None:  # noqa: F811
    chunk = 10 * 1024 * 1024  # huggingface_hub writes in 10 MiB chunks: stall once the first reached the disk
    fake_hf.add_repo("acme/big-model", {"model.safetensors": bytes(range(256)) * (chunk // 200)})
    fake_hf.stall_downloads_after(chunk + 4096)
    settings = Settings(hf_endpoint=fake_hf.url, hf_home_override=tmp_path / "hf", hf_download_stall_timeout=0.5)

    with pytest.raises(DownloadFailed) as info:
        _fetch(settings, "acme/big-model")

    error = info.value
    assert error.exit_code == 4 and error.cause == "hf-stall"
    assert "model.safetensors" in error.message and f"had {chunk} of " in error.message
    assert error.details["files"] == {"model.safetensors": chunk}
    assert "NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT" in (error.remedy or "")


def test_the_stall_window_is_a_setting_defaulting_to_ten_minutes() -> None:
    assert Settings().hf_download_stall_timeout == 600.0
    assert Settings.from_env({"NEMOCLAW_HF_DOWNLOAD_STALL_TIMEOUT": "30"}).hf_download_stall_timeout == 30.0


def test_rate_limited_anonymous_download_says_to_set_hf_token(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    fake_hf.rate_limit()

    with pytest.raises(DownloadFailed) as info:
        _fetch(settings)

    error = info.value
    assert error.exit_code == 4 and error.cause == "hf-rate-limited"
    assert "anonymous downloads are rate-limited" in error.message and "HF_TOKEN" in (error.remedy or "")
    assert len(fake_hf.requests) == 1  # a 429 is not retried


def test_503_is_retried_and_the_download_completes(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    fake_hf.fail_requests(2, status=503)
    clock = FakeClock()
    events: list[Event] = []

    result = _fetch(settings, clock=clock, events=events)

    _assert_snapshot_complete(fake_hf, PUBLIC_REPO, result.path)
    assert clock.sleeps == [2.0, 4.0]
    retries = [e.message for e in events if isinstance(e, Warning) and "trying again" in e.message]
    assert len(retries) == 2 and "503" in retries[0]


def test_retries_are_bounded(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    fake_hf.fail_requests(1000, status=503)
    clock = FakeClock()

    with pytest.raises(DownloadFailed) as info:
        _fetch(settings, clock=clock)

    assert info.value.details["status"] == 503 and info.value.exit_code == 4
    assert clock.sleeps == [2.0, 4.0, 8.0] and len(fake_hf.requests) == weights.DOWNLOAD_ATTEMPTS


def test_prefetch_of_a_pinned_revision_asks_for_that_commit(fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    sha = fake_hf.repos[PUBLIC_REPO].sha

    result = _fetch(settings, revision=sha)

    _assert_snapshot_complete(fake_hf, PUBLIC_REPO, result.path)
    assert result.revision == sha
    assert fake_hf.requests_to(f"/api/models/{PUBLIC_REPO}/revision/{sha}")
    assert all(f"/resolve/{sha}/" in r.path for r in fake_hf.requests_to("/resolve/"))
    assert estimate_repo_bytes(PUBLIC_REPO, None, settings, revision=sha) == 0


def test_a_connection_dropped_past_huggingface_hubs_own_resumes_is_retried(
        fake_hf: FakeHub, settings: Settings) -> None:  # noqa: F811
    fake_hf.drop_downloads_after(0, times=6)  # huggingface_hub tries a body 6 times (1 + 5 resumes), then gives up
    clock = FakeClock()
    events: list[Event] = []

    result = _fetch(settings, clock=clock, events=events, max_workers=1)  # one file at a time takes all six

    _assert_snapshot_complete(fake_hf, PUBLIC_REPO, result.path)
    assert clock.sleeps == [2.0]
    assert any(isinstance(e, Warning) and "trying again (attempt 2 of 4)" in e.message for e in events)

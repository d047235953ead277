"""The fake Hub (tests/fake_servers/fake_hf.py) checked with huggingface_hub itself, so tests built on it test
against what the real client does. No Docker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from tests.fake_servers import fake_hf as fake_hub_support
from tests.fake_servers.fake_hf import GATED_REPO, PUBLIC_REPO, FakeHub

# Registers the fixtures in this module (no conftest needed for unit tests).
fake_hf_server = fake_hub_support.fake_hf_server
fake_hf = fake_hub_support.fake_hf


def test_model_info_lists_the_public_repo(fake_hf: FakeHub) -> None:
    info = HfApi(endpoint=fake_hf.url).model_info(PUBLIC_REPO, token=False)

    assert info.id == PUBLIC_REPO
    assert info.sha == fake_hf.repos[PUBLIC_REPO].sha
    assert {s.rfilename for s in info.siblings or []} == {"config.json", "model.safetensors"}
    assert not info.gated


def test_model_info_of_a_gated_repo_is_public_and_says_gated(fake_hf: FakeHub) -> None:
    info = HfApi(endpoint=fake_hf.url).model_info(GATED_REPO, token=False, files_metadata=True)

    assert info.gated == "manual"
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes["model.safetensors"] == len(fake_hf.repos[GATED_REPO].files["model.safetensors"].content)


def test_auth_check_without_token_raises_gated_error_and_sends_no_header(fake_hf: FakeHub) -> None:
    with pytest.raises(GatedRepoError) as caught:
        HfApi(endpoint=fake_hf.url).auth_check(GATED_REPO, token=False)

    assert caught.value.response.status_code == 401
    (request,) = fake_hf.requests_to("/auth-check")
    assert request.authorized is False


def test_auth_check_with_a_wrong_token_is_forbidden(fake_hf: FakeHub) -> None:
    with pytest.raises(GatedRepoError) as caught:
        HfApi(endpoint=fake_hf.url).auth_check(GATED_REPO, token="hf_wrong")

    assert caught.value.response.status_code == 403
    (request,) = fake_hf.requests_to("/auth-check")
    assert (request.authorized, request.token_valid) == (True, False)


def test_auth_check_with_the_token_passes_and_the_token_is_not_recorded(fake_hf: FakeHub) -> None:
    HfApi(endpoint=fake_hf.url).auth_check(GATED_REPO, token=fake_hf.token)

    (request,) = fake_hf.requests_to("/auth-check")
    assert (request.authorized, request.token_valid) == (True, True)
    assert fake_hf.token not in repr(fake_hf.requests)


def test_unknown_repo_is_repository_not_found(fake_hf: FakeHub) -> None:
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=fake_hf.url).model_info("acme/nope", token=False)


def test_snapshot_download_fetches_every_file_without_a_token(fake_hf: FakeHub, tmp_path: Path) -> None:
    folder = snapshot_download(PUBLIC_REPO, endpoint=fake_hf.url, cache_dir=tmp_path / "cache", token=False)

    for name, file in fake_hf.repos[PUBLIC_REPO].files.items():
        assert (Path(folder) / name).read_bytes() == file.content
    assert not any(r.authorized for r in fake_hf.requests)
    assert fake_hf.requests_to("/tree/")


def test_gated_download_needs_the_token(fake_hf: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError):
        hf_hub_download(GATED_REPO, "config.json", endpoint=fake_hf.url, cache_dir=tmp_path, token=False)

    path = hf_hub_download(GATED_REPO, "model.safetensors", endpoint=fake_hf.url, cache_dir=tmp_path,
                           token=fake_hf.token)

    assert Path(path).read_bytes() == fake_hf.repos[GATED_REPO].files["model.safetensors"].content
    assert all(r.token_valid for r in fake_hf.requests_to("/resolve/model.safetensors") if r.method == "GET")


def test_a_dropped_download_is_retried_and_completes(fake_hf: FakeHub, tmp_path: Path) -> None:
    fake_hf.drop_downloads_after(100_000)

    path = hf_hub_download(PUBLIC_REPO, "model.safetensors", endpoint=fake_hf.url, cache_dir=tmp_path, token=False)

    assert Path(path).read_bytes() == fake_hf.repos[PUBLIC_REPO].files["model.safetensors"].content
    # huggingface_hub reads 10 MB chunks, so a cut inside the first chunk restarts from 0 (no Range header);
    # Range resumes themselves are covered by test_range_requests_get_206_or_416.
    assert len(fake_hf.requests_to("/resolve/", method="GET")) == 2


def test_range_requests_get_206_or_416(fake_hf: FakeHub) -> None:
    url = f"{fake_hf.url}/{PUBLIC_REPO}/resolve/main/config.json"
    content = fake_hf.repos[PUBLIC_REPO].files["config.json"].content

    partial = httpx.get(url, headers={"Range": "bytes=10-19"})
    beyond = httpx.get(url, headers={"Range": f"bytes={len(content)}-"})

    assert (partial.status_code, partial.content) == (206, content[10:20])
    assert partial.headers["Content-Range"] == f"bytes 10-19/{len(content)}"
    assert beyond.status_code == 416


def test_head_carries_the_metadata_huggingface_hub_needs(fake_hf: FakeHub) -> None:
    file = fake_hf.repos[PUBLIC_REPO].files["model.safetensors"]

    response = httpx.head(f"{fake_hf.url}/{PUBLIC_REPO}/resolve/main/model.safetensors")

    assert response.status_code == 200
    assert response.headers["X-Repo-Commit"] == fake_hf.repos[PUBLIC_REPO].sha
    assert response.headers["X-Linked-Etag"] == f'"{file.sha256}"'
    assert int(response.headers["Content-Length"]) == file.size


def test_slow_downloads_wait_between_chunks(fake_hf: FakeHub, tmp_path: Path) -> None:
    fake_hf.slow_downloads(0.05, chunk_size=64 * 1024)
    size = fake_hf.repos[PUBLIC_REPO].files["model.safetensors"].size
    started = time.monotonic()

    hf_hub_download(PUBLIC_REPO, "model.safetensors", endpoint=fake_hf.url, cache_dir=tmp_path, token=False)

    # A lower bound only: the server sleeps at least this long between chunks, however fast the machine.
    assert time.monotonic() - started >= 0.05 * (size // (64 * 1024) - 1)


def test_a_stalled_download_sends_nothing_more_until_reset(fake_hf: FakeHub) -> None:
    fake_hf.stall_downloads_after(50_000)
    received = bytearray()
    url = f"{fake_hf.url}/{PUBLIC_REPO}/resolve/main/model.safetensors"

    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("GET", url, timeout=httpx.Timeout(5.0, read=0.5)) as response:
            for chunk in response.iter_bytes():
                received += chunk

    assert len(received) == 50_000
    releaser = threading.Thread(target=fake_hf.reset)
    releaser.start()
    releaser.join(timeout=10)
    assert not releaser.is_alive()


def test_snapshot_of_a_gated_repo_needs_the_token(fake_hf: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError):
        snapshot_download(GATED_REPO, endpoint=fake_hf.url, cache_dir=tmp_path / "a", token=False)

    folder = snapshot_download(GATED_REPO, endpoint=fake_hf.url, cache_dir=tmp_path / "b", token=fake_hf.token)

    assert (Path(folder) / "config.json").read_bytes() == fake_hf.repos[GATED_REPO].files["config.json"].content

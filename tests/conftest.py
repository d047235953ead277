"""Shared test set-up. Every test starts from a clean environment: no NEMOCLAW_* / token / proxy variables leak in
from the developer's shell, and HOME / state / caches point into tmp_path."""

from __future__ import annotations

import os

import pytest

# huggingface_hub gives its logger a StreamHandler bound to sys.stderr *when it is first imported*. Imported here,
# it binds to pytest's session-long capture stream; first imported inside a test using capsys, it would bind to
# that test's stream, which is closed afterwards, and every later hub warning would print a "Logging error".
import huggingface_hub.utils.logging  # noqa: E402,F401  isort: skip

_LEAKY_PREFIXES = ("NEMOCLAW_", "HF_", "HUGGING_FACE_", "NGC_", "NVIDIA_", "XDG_")
_LEAKY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY",
                "no_proxy", "DOCKER_CONFIG")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in list(os.environ):
        if name.startswith(_LEAKY_PREFIXES) or name in _LEAKY_NAMES:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")


@pytest.fixture(autouse=True)
def fit_facts_stay_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit reads model facts from the hub by default (`up`, `up --dry-run`, `fit`, `models`, `options`): in tests
    it may ask only a hub on 127.0.0.1 (HF_ENDPOINT set to a fake); otherwise it reads the HF cache alone, so no
    test ever reaches huggingface.co. Tests that want facts inject a model source (DirectoryModelSource)."""
    from nemoclaw_runtime.runtimes.fit import hub

    real = hub.default_model_source

    def local_only(settings, **kwargs):  # type: ignore[no-untyped-def]
        endpoint = (settings.hf_endpoint or "").lower()
        if endpoint.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
            return real(settings, **kwargs)
        return hub.HubModelSource(settings, offline=True, **kwargs)

    monkeypatch.setattr(hub, "default_model_source", local_only)

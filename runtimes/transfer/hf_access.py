"""Talking to the Hugging Face hub: where (the endpoint), as whom (the token), may we (the access check), and what
its errors mean (the one translation of huggingface_hub errors).

Everything goes through huggingface_hub with the endpoint, cache directory and token passed explicitly — never
read from the environment (``Settings`` is the only source; a token absent there is ``token=False``, so no token
file or variable is picked up behind the user's back). huggingface_hub errors are translated in exactly one place,
:func:`translate_hf_error`, and no message ever carries the token. :mod:`runtimes.transfer.weights` is the module
callers import; it re-exports the public names here.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemoclaw_runtime._version import __version__
from nemoclaw_runtime.kernel.errors import AccessDenied, DownloadFailed, InvalidInput, MissingToken, NemoclawError
from nemoclaw_runtime.kernel.names import HF_TOKEN_VARIABLES
from nemoclaw_runtime.kernel.secret import Secret, redact, redact_url
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import plain_reason
from nemoclaw_runtime.kernel.translation import Context, Rule, Translation, translate

DEFAULT_ENDPOINT = "https://huggingface.co"
METADATA_TIMEOUT_S = 15.0  # model_info and the access probe: the hub answers these in well under a second
LIBRARY = "nemoclaw-runtime"  # the library_name huggingface_hub sends in its user agent
_MESSAGE_CHARS = 300


# --- where, and as whom ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessResult:
    """The hub let us read ``model_id`` (anonymously when ``token_used`` is False)."""

    model_id: str
    endpoint: str
    token_used: bool
    licence_url: str


def endpoint_of(settings: Settings) -> str:
    return (settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")


def shown_endpoint(settings: Settings) -> str:
    """The endpoint as messages show it: ``user:password@`` in HF_ENDPOINT is ``***@``."""
    return redact_url(endpoint_of(settings))


def licence_url(model_id: str, settings: Settings) -> str:
    """Where to read the model card and accept its licence (a display value: URL user information redacted)."""
    return f"{shown_endpoint(settings)}/{model_id}"


def cache_dir(settings: Settings) -> Path:
    """The hub cache the vLLM container mounts (``$HF_HOME/hub``)."""
    return settings.hf_home / "hub"


def token_arg(token: Secret | None) -> str | bool:
    """What huggingface_hub gets: the value, or False so it never looks for a token of its own."""
    return token.reveal() if token else False


# --- access --------------------------------------------------------------------------------------------------------


def check_access(model_id: str, token: Secret | None, settings: Settings, *, gated: bool = True) -> AccessResult:
    """Refuse early (exit 3) when the weights cannot be read with ``token``.

    ``gated`` is what the registry says: a gated entry without a token is refused without asking the hub. With a
    token (or for an ungated entry) the hub is asked for the model's ``config.json`` metadata, the first file a
    runtime reads — the same check a download would fail on, bounded by :data:`METADATA_TIMEOUT_S`.

    Raises:
        MissingToken: gated and no token (names both variables and the licence page).
        AccessDenied: the hub refused (gated without licence acceptance, bad token, repository not found).
        DownloadFailed: the hub could not be reached.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    if gated and not token:
        raise missing_token(model_id, settings)
    endpoint = endpoint_of(settings)
    url = hf_hub_url(model_id, "config.json", endpoint=endpoint)
    with translated_errors(model_id, token, settings, "checking access to"):
        try:
            get_hf_file_metadata(url, token=token_arg(token), timeout=METADATA_TIMEOUT_S, endpoint=endpoint,
                                 library_name=LIBRARY, library_version=__version__)
        except EntryNotFoundError:
            pass  # no config.json (e.g. a GGUF-only repo), but the repository itself answered: access is fine
    return AccessResult(model_id, redact_url(endpoint), bool(token), licence_url(model_id, settings))


def missing_token(model_id: str, settings: Settings) -> MissingToken:
    url = licence_url(model_id, settings)
    return MissingToken(
        f"Model '{model_id}' is gated on Hugging Face and no token is set: one of "
        f"{', '.join(HF_TOKEN_VARIABLES)} is required",
        remedy=f"accept the licence at {url}, then export HF_TOKEN=<your token> (or HUGGING_FACE_HUB_TOKEN)",
        cause="hf-gated",
        details={"model": model_id, "licence_url": url, "variables": list(HF_TOKEN_VARIABLES)},
    )


# --- the one translation of huggingface_hub errors ------------------------------------------------------------------


@contextmanager
def translated_errors(model_id: str, token: Secret | None, settings: Settings, action: str) -> Iterator[None]:
    """Any foreign error raised inside becomes ours by :func:`translate_hf_error`; ours pass through unchanged."""
    try:
        yield
    except NemoclawError:
        raise  # ours already (Cancelled from the progress hook)
    except Exception as exc:  # noqa: BLE001 - every foreign error is translated right here
        raise translate_hf_error(exc, model_id=model_id, token=token, settings=settings, action=action) from exc


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP stack this huggingface_hub uses (httpx2 in 2.x, requests in 0.x)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import httpx2

        found.append(httpx2.TransportError)
    except ImportError:
        pass
    try:
        import requests

        found.extend([requests.ConnectionError, requests.Timeout])
    except ImportError:
        pass
    return tuple(found)


_REFUSED = Translation(
    AccessDenied, "Hugging Face refused the token for '{model}' (HTTP {refused_status}) while {action} it",
    "accept the licence at {url} with the account that owns the token, or check that HF_TOKEN is a valid read token",
    cause="hf-gated")
_NOT_FOUND_ANONYMOUS = Translation(
    AccessDenied, "Model '{model}' was not found on {endpoint}, or you have no access to it",
    "check the id, or set HF_TOKEN if it is a private repository ({url})", cause="hf-not-found")
_NOT_FOUND_WITH_TOKEN = Translation(
    AccessDenied, "Model '{model}' was not found on {endpoint}, or you have no access to it",
    "check the id, that HF_TOKEN is a valid token, and that its account can see the repository ({url})",
    cause="hf-not-found")
_NO_REVISION = Translation(InvalidInput, "Revision not found for '{model}': {text}", "pick a revision listed at {url}")
_INVALID_ID = Translation(InvalidInput, "Invalid Hugging Face model id '{model}': {text}",
                          "use an id of the form org/name")
_DISK_FULL = Translation(DownloadFailed, "The disk filled up while {action} '{model}'",
                         "free disk space under {hf_home} or point HF_HOME at a larger disk", cause="disk-full")
_CACHE_PERMISSION = Translation(DownloadFailed, "Cannot write the Hugging Face cache while {action} '{model}': {text}",
                                "make {cache} writable by this user (or set HF_HOME)", cause="cache-permission")
_HUB_ERROR = Translation(DownloadFailed, "The hub failed while {action} '{model}' (HTTP {status}): {text}",
                         "try again later; the files already downloaded are kept", cause="hub-error")
_RATE_LIMITED_ANONYMOUS = Translation(
    DownloadFailed, "{endpoint} rate-limited the download of '{model}' (HTTP 429): anonymous downloads are "
    "rate-limited", "set HF_TOKEN to a Hugging Face read token (authenticated downloads get a far higher limit), "
    "then run the command again; finished files are kept", cause="hf-rate-limited")
_RATE_LIMITED_WITH_TOKEN = Translation(
    DownloadFailed, "{endpoint} rate-limited the download of '{model}' (HTTP 429) with the token set",
    "wait a few minutes, then run the command again; finished files are kept", cause="hf-rate-limited")
_UNREACHABLE = Translation(DownloadFailed, "Could not reach {endpoint} while {action} '{model}': {text}",
                           "check the network / proxy (or HF_ENDPOINT), then run the command again; finished files "
                           "are kept", cause="network")
_FAILED = Translation(DownloadFailed, "Failed while {action} '{model}': {type}: {text}",
                      "run the command again; finished files are kept")


def _refused(exc: BaseException, context: Context) -> Translation | NemoclawError:
    """The hub said 401/403 (or gated): without a token, that is the missing token."""
    return _REFUSED if context["token"] else missing_token(context["model"], context["settings"])


def _repository_not_found(exc: BaseException, context: Context) -> Translation:
    return _NOT_FOUND_WITH_TOKEN if context["token"] else _NOT_FOUND_ANONYMOUS


def _http_error(exc: BaseException, context: Context) -> Translation | NemoclawError:
    if context["status"] == 429:
        return _RATE_LIMITED_WITH_TOKEN if context["token"] else _RATE_LIMITED_ANONYMOUS
    return _refused(exc, context) if context["status"] in (401, 403) else _HUB_ERROR


def _os_error(exc: BaseException, context: Context) -> Translation:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return _DISK_FULL
    return _CACHE_PERMISSION if isinstance(exc, PermissionError) else _FAILED


@functools.cache
def hf_errors() -> Mapping[type[BaseException], Rule]:
    """huggingface_hub / HTTP / OS exception type → our error; the most specific type of an exception picks its row.
    Built on first use: huggingface_hub is imported only when weights are touched."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    table: dict[type[BaseException], Rule] = {error: _UNREACHABLE for error in _network_errors()}
    table.update({
        GatedRepoError: _refused,
        RepositoryNotFoundError: _repository_not_found,
        RevisionNotFoundError: _NO_REVISION,
        HfHubHTTPError: _http_error,  # 401/403 → refused, else the hub failed
        HFValidationError: _INVALID_ID,
        LocalEntryNotFoundError: _UNREACHABLE,
        OfflineModeIsEnabled: _UNREACHABLE,
        OSError: _os_error,  # ENOSPC → disk full, PermissionError → the cache is not writable
    })
    return table


def translate_hf_error(exc: BaseException, *, model_id: str, token: Secret | None, settings: Settings,
                        action: str) -> NemoclawError:
    """Map a huggingface_hub / HTTP / OS error to our tree by :func:`hf_errors`. The only place that knows their
    types; the message is redacted (``_clean``) before it reaches any template."""
    url = licence_url(model_id, settings)
    endpoint = shown_endpoint(settings)  # never user:password@ in a message or in --json
    status = getattr(getattr(exc, "response", None), "status_code", None)
    details: dict[str, Any] = {"model": model_id, "endpoint": endpoint, "licence_url": url}
    if status is not None:
        details["status"] = status
    text = plain_reason(clean_message(str(exc), token))  # "connection refused", not a connection pool's nested repr
    context = {"model": model_id, "action": action, "endpoint": endpoint, "url": url, "text": text,
               "status": status, "refused_status": status or 403, "token": bool(token), "type": type(exc).__name__,
               "hf_home": settings.hf_home, "cache": cache_dir(settings), "settings": settings}
    error = translate(hf_errors(), exc, context, default=_FAILED, extra_details=details)
    assert error is not None  # a default is given
    return error


def clean_message(text: str, token: Secret | None) -> str:
    """A foreign message made safe to show: the token never, other credentials masked, one bounded line."""
    if token:
        text = text.replace(token.reveal(), "***")
    one_line = " ".join(text.split())
    return redact(one_line)[:_MESSAGE_CHARS]


__all__ = ["DEFAULT_ENDPOINT", "LIBRARY", "METADATA_TIMEOUT_S", "AccessResult", "cache_dir", "check_access",
           "clean_message", "endpoint_of", "hf_errors", "licence_url", "missing_token", "shown_endpoint", "token_arg",
           "translate_hf_error", "translated_errors"]

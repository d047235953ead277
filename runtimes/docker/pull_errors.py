"""What the engine and registries say when a pull fails, read into our errors (auth, not found, transient).

Both the engine adapter (an error event in a pull stream, an API error) and the pull loop above it
(``transfer/image_pull.py``) ask here, so one table decides what a message means.
"""

from __future__ import annotations

from nemoclaw_runtime.kernel.errors import DownloadFailed, ImageNotFound, RegistryAuthFailed

__all__ = ["classify_engine_message", "pull_error"]

#: Substrings of engine / registry messages that mean "the registry refused our credentials".
_AUTH_MARKERS = ("unauthorized", "authentication required", "no basic auth credentials", "login attempt",
                 "access denied", "denied:", "incorrect username or password")
#: ... that mean "no such image / tag / manifest".
_NOT_FOUND_MARKERS = ("manifest unknown", "not found", "repository does not exist", "no such image",
                      "name unknown", "does not exist")
#: ... that mean "the registry or the network hiccupped; try again".
_TRANSIENT_MARKERS = ("500 internal server error", "502 bad gateway", "503 service unavailable",
                      "504 gateway", "connection reset", "connection refused", "i/o timeout", "tls handshake timeout",
                      "eof", "toomanyrequests", "unexpected http status: 5", "temporarily unavailable")


def classify_engine_message(text: str) -> str:
    """``auth`` | ``not-found`` | ``transient`` | ``other`` for an engine or registry error message."""
    lowered = text.lower()
    if any(marker in lowered for marker in _AUTH_MARKERS):
        return "auth"
    if any(marker in lowered for marker in _NOT_FOUND_MARKERS):
        return "not-found"
    if any(marker in lowered for marker in _TRANSIENT_MARKERS):
        return "transient"
    return "other"


def pull_error(subject: str, text: str, *, status: int | None = None) -> DownloadFailed:
    """The error for a failed pull of ``subject`` (engine message ``text``, HTTP ``status`` when known)."""
    kind = classify_engine_message(text)
    if status == 404 and kind == "other":
        kind = "not-found"
    if status in (401, 403):
        kind = "auth"
    if kind == "auth":
        return RegistryAuthFailed(
            f"The registry refused access to {subject}: {text}",
            remedy="log in to the registry (docker login <registry>), or set NGC_API_KEY for nvcr.io",
            details={"image": subject})
    if kind == "not-found":
        return ImageNotFound(
            f"Image {subject} was not found: {text}",
            remedy="check the image name and tag (or the NEMOCLAW_*_IMAGE override)",
            details={"image": subject})
    transient = kind == "transient" or (status is not None and status >= 500 and kind == "other")
    return DownloadFailed(f"Pulling {subject} failed: {text}",
                          remedy="check the network and the registry, then run the command again",
                          details={"image": subject, "transient": transient})

"""Checks at the edge: every value a user hands us (a flag, an environment variable, a library argument) is checked
here, once, before anything touches the engine, the network or the disk.

Each check returns the value to use or raises :class:`InvalidInput` (exit 2) naming what was wrong — the option or
the variable (``what``) and, as :class:`InvalidSetting` with ``details['variable']``, the variable when ``variable``
is given — and how to fix it. A bad value is quoted back through :func:`~nemoclaw_runtime.kernel.text.shown`
(one line, credentials redacted, bounded). Numbers are ASCII only (``int`` and ``float`` also read Arabic-Indic or
full-width digits and ``1_000``), names are matched whole (``re.fullmatch``: ``$`` would let a trailing newline
through), and only regular files are read.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from nemoclaw_runtime.kernel.errors import InvalidInput, InvalidSetting
from nemoclaw_runtime.kernel.secret import redact_url
from nemoclaw_runtime.kernel.text import has_unsafe, shown

__all__ = [
    "CONTAINER_NAME_PATTERN", "MAX_CONTEXT_LENGTH", "MAX_LOG_TAIL", "MAX_SECONDS", "check_container_name",
    "check_context_length", "check_directory", "check_docker_host", "check_file_path", "check_host_address",
    "check_http_url", "check_output_file",
    "check_image_reference", "check_int", "check_number", "check_plain_text",
    "check_port", "check_regular_file", "check_seconds", "invalid", "read_regular_file",
]

#: The longest wait any setting or option may ask for: 30 days (longer ones overflow timers, or are typos).
MAX_SECONDS = 30 * 24 * 3600.0
#: The most log lines ``logs --tail`` (and the library's ``logs``) may ask for: more is a typo, and held in memory.
MAX_LOG_TAIL = 1_000_000
#: Docker's rule for container names (two characters at least); it also keeps lock file names in their folder.
CONTAINER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{1,254}")
_ASCII_INT = re.compile(r"-?[0-9]{1,20}")
_ASCII_NUMBER = re.compile(r"[+]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?")
MAX_TEXT_CHARS = 1024
#: The longest context (tokens) any option, setting or probe accepts; vLLM's own ceilings are far below, this only
#: stops absurd values (and overflow) before they reach the fit engine or a container.
MAX_CONTEXT_LENGTH = 16_777_216
#: vLLM's ``human_readable_int``: lowercase suffixes are decimal (``32k`` = 32000, decimals allowed: ``25.6k``),
#: uppercase binary (``32K`` = 32768, whole numbers only).
_CONTEXT = re.compile(r"([0-9]{1,20})(?:\.([0-9]{1,20}))?([kmgKMG]?)")
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30}


def invalid(what: str, message: str, remedy: str, *, variable: str | None = None,
            details: dict[str, Any] | None = None) -> InvalidInput:
    """The exit-2 error for a bad value: ``InvalidSetting`` naming ``variable`` when one is given, else
    ``InvalidInput`` naming the option ``what``."""
    facts = dict(details or {})
    if variable is not None:
        facts["variable"] = variable
        return InvalidSetting(message, remedy=remedy, details=facts)
    facts.setdefault("option", what)
    return InvalidInput(message, remedy=remedy, details=facts)


def _label(what: str, variable: str | None) -> str:
    return variable or what


# --- numbers ---------------------------------------------------------------------------------------------------


def check_int(value: object, what: str, *, low: int, high: int, remedy: str, variable: str | None = None) -> int:
    """An integer in ``low..high``, from an ``int`` (not a bool) or ASCII digits."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and _ASCII_INT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        number = None
    if number is None or not low <= number <= high:
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(value)}: must be a whole number between "
                      f"{low} and {high}", remedy, variable=variable)
    return number


def _as_number(value: object) -> float | None:
    """An ``int``/``float`` (not a bool) or ASCII number text as a float; anything else None. Finiteness and range
    are the caller's check (``float("1e400")`` is inf, which they refuse)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _ASCII_NUMBER.fullmatch(value.strip()):
        return float(value.strip())
    return None


def check_number(value: object, what: str, *, low: float, high: float, remedy: str,
                 variable: str | None = None) -> float:
    """A finite number in ``low..high``, from an ``int``/``float`` (not a bool) or ASCII text (``1e400``, NaN,
    infinities and non-ASCII digits are refused)."""
    number = _as_number(value)
    if number is None or not math.isfinite(number) or not low <= number <= high:
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(value)}: must be a number between {low:g} "
                      f"and {high:g}", remedy, variable=variable)
    return number


def check_context_length(value: object, what: str = "--max-model-len", *, allow_auto: bool = False,
                         variable: str | None = None) -> int | None:
    """A context length in tokens, 1..:data:`MAX_CONTEXT_LENGTH`, read as vLLM reads ``--max-model-len``: plain
    ASCII digits, ``32k``/``1.5m`` (decimal) or ``32K``/``1M`` (binary). ``auto`` (and vLLM's ``-1``) gives
    ``None`` where ``allow_auto``; anything else is exit 2."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if allow_auto and text.lower() in ("auto", "-1"):
            return None
        match = _CONTEXT.fullmatch(text)
        if match:
            whole, fraction, suffix = match.groups()
            if suffix in _DECIMAL:
                number = int(whole) * _DECIMAL[suffix] + int(fraction or "0") * _DECIMAL[suffix] // 10 ** len(
                    fraction or "0")
            elif fraction is None:
                number = int(whole) * _BINARY.get(suffix, 1)
    if number is None or not 0 < number <= MAX_CONTEXT_LENGTH:
        accepted = "auto or " if allow_auto else ""
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(value)}: must be {accepted}a number of tokens "
                      f"from 1 to {MAX_CONTEXT_LENGTH} (32768, 32k = 32000, 32K = 32768)",
                      f"pass {what} {accepted}a token count such as 32768", variable=variable)
    return number


def check_port(value: object, what: str = "--port", *, low: int = 1, variable: str | None = None) -> int:
    return check_int(value, what, low=low, high=65535, variable=variable,
                     remedy=f"pass a free port such as 8000 ({low}-65535)")


def check_seconds(value: object, what: str = "--timeout", *, variable: str | None = None,
                  maximum: float = MAX_SECONDS) -> float:
    """A positive, finite number of seconds no larger than ``maximum`` (NaN, infinities, ``1e309`` and non-ASCII
    digits are refused)."""
    number = _as_number(value)
    if number is None or not math.isfinite(number) or number <= 0 or number > maximum:
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(value)}: must be a positive number of "
                      f"seconds, at most {maximum:.0f}", f"pass seconds, e.g. 600 (at most {maximum:.0f})",
                      variable=variable)
    return number


# --- names and addresses ---------------------------------------------------------------------------------------


def check_plain_text(value: str, what: str, *, variable: str | None = None, limit: int = MAX_TEXT_CHARS,
                     allow_empty: bool = False) -> str:
    """Trimmed text without control characters or invisible marks, at most ``limit`` characters; empty refused
    unless ``allow_empty``."""
    text = value.strip()
    if not text and not allow_empty:
        raise invalid(what, f"Invalid {_label(what, variable)}: it is empty",
                      f"give {what} a value, or leave it out", variable=variable)
    if has_unsafe(text) or len(text) > limit:
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(value)}: control characters, invisible "
                      f"marks or more than {limit} characters", f"pass {what} as plain text", variable=variable)
    return text


def check_container_name(value: str, what: str = "--name") -> str:
    """A Docker container name matched whole: no trailing newline, no path, no id prefix tricks."""
    if not isinstance(value, str) or not CONTAINER_NAME_PATTERN.fullmatch(value):
        raise invalid(what, f"Invalid {what} {shown(value)}: a container name is two or more letters, digits, "
                      "'.', '_' or '-', a letter or digit first",
                      "pass a name such as my-vllm (see `nemoclaw-runtime ps`)")
    return value


def check_host_address(value: str, what: str = "--host") -> str:
    """An IP address to publish a port on (``localhost`` means ``127.0.0.1``); names are refused — the engine
    would only fail on them after the container was created."""
    text = value.strip() if isinstance(value, str) else ""
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(text.strip("[]") if text.startswith("[") else text))
    except ValueError:
        raise invalid(what, f"Invalid {what} {shown(value)}: must be an IP address such as 127.0.0.1, 0.0.0.0 or ::1",
                      f"pass {what} 127.0.0.1 (this machine only) or the address of one of its interfaces") from None


# Docker's reference grammar (distribution/reference): [domain[:port]/]path-component(/path-component)*[:tag][@digest]
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_RE = re.compile(_DOMAIN)
_IMAGE_PATH = re.compile(
    rf"{_PATH_PART}(?:/{_PATH_PART})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def _is_image_reference(text: str) -> bool:
    # As Docker reads it: the first component is a registry only when it has a '.' or a ':' or is localhost;
    # otherwise it is part of the (lower-case) repository path.
    first, slash, rest = text.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return bool(_DOMAIN_RE.fullmatch(first)) and bool(_IMAGE_PATH.fullmatch(rest))
    return bool(_IMAGE_PATH.fullmatch(text))
MAX_IMAGE_NAME_CHARS = 255


def check_image_reference(value: str, what: str = "--image", *, variable: str | None = None) -> str:
    """A Docker image reference (``registry[:port]/repo[:tag][@sha256:…]``, lower-case repository, at most 255
    characters for the name); refuses flags (``--privileged``), empty values and anything the engine would."""
    text = value.strip() if isinstance(value, str) else ""
    name = text.split("@", 1)[0]
    if not text or not _is_image_reference(text) or len(name) > MAX_IMAGE_NAME_CHARS:
        raise invalid(what, f"Invalid image reference {_label(what, variable)}={shown(value)}: expected "
                      "[registry[:port]/]repository[:tag][@sha256:digest], repository in lower case, at most "
                      f"{MAX_IMAGE_NAME_CHARS} characters",
                      "use a reference such as nvcr.io/nvidia/vllm:26.05.post1-py3" + (
                          f", or unset {variable}" if variable else ""), variable=variable)
    return text


def check_http_url(value: str, what: str, *, variable: str | None = None) -> str:
    """An ``http://`` or ``https://`` URL with a host, no whitespace or control characters."""
    from urllib.parse import urlsplit

    text = value.strip() if isinstance(value, str) else ""
    problem = None
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        parts, port, problem = None, None, "it does not parse as a URL"
    if problem is None and parts is not None:
        if parts.scheme.lower() not in ("http", "https"):
            problem = "the scheme must be http or https"
        elif not parts.hostname:
            problem = "it names no host"
        elif has_unsafe(text) or " " in text or len(text) > 2048:
            problem = "it holds spaces or control characters"
        elif port == 0:
            problem = "port 0 is not a port"
    if problem:
        raise invalid(what, f"Invalid {_label(what, variable)}={shown(redact_url(text) or value)}: {problem}",
                      "use a URL such as https://huggingface.co" + (f", or unset {variable}" if variable else ""),
                      variable=variable)
    return text


_DOCKER_SCHEMES = ("unix", "tcp", "http", "https", "ssh", "npipe", "fd")


def check_docker_host(value: str, variable: str = "DOCKER_HOST") -> str:
    """``DOCKER_HOST`` as docker-py understands it: ``unix:///path``, ``tcp://host:port`` (or http/https), or
    ``ssh://user@host`` when paramiko is installed."""
    from urllib.parse import urlsplit

    text = value.strip()
    remedy = f"set {variable} to unix:///var/run/docker.sock or tcp://HOST:2375, or unset it"
    scheme, sep, rest = text.partition("://")
    problem = None
    if not sep or scheme.lower() not in _DOCKER_SCHEMES:
        problem = f"the scheme must be one of {', '.join(s + '://' for s in _DOCKER_SCHEMES[:5])}"
    elif has_unsafe(text) or " " in text:
        problem = "it holds spaces or control characters"
    elif scheme.lower() == "unix" and not rest.startswith("/"):
        problem = "a unix:// address needs an absolute socket path (unix:///var/run/docker.sock)"
    elif scheme.lower() in ("tcp", "http", "https", "ssh"):
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            problem = "the port must be a number between 1 and 65535"
        else:
            if not parts.hostname:
                problem = "it names no host"
            elif scheme.lower() != "ssh" and parts.username is not None:
                problem = "user information (user:password@) is not part of a Docker address"
            elif parts.path not in ("", "/"):
                problem = "it must not have a path"
    if problem is None and scheme.lower() == "ssh":
        import importlib.util

        if importlib.util.find_spec("paramiko") is None:
            problem = "ssh:// needs docker-py's ssh extra (pip install 'docker[ssh]'), which is not installed"
            remedy = f"pip install 'docker[ssh]', or set {variable} to a unix:// or tcp:// address"
    if problem:
        raise invalid(variable, f"Invalid {variable}={shown(redact_url(text))}: {problem}", remedy, variable=variable)
    return text


# --- files and directories -------------------------------------------------------------------------------------


def _path_text(value: str | os.PathLike[str], what: str, variable: str | None) -> Path:
    text = os.fspath(value)
    if "\x00" in text or has_unsafe(text):
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(text)}: a path must not hold control "
                      "characters", f"set {_label(what, variable)} to a plain path", variable=variable)
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(text)}: its ~ names no known user's home",
                      f"set {_label(what, variable)} to an absolute path", variable=variable) from None


def check_directory(value: str | os.PathLike[str], what: str, *, variable: str | None = None) -> Path:
    """A path that is a directory or does not exist yet (it is created when needed); a file, a device or a FIFO
    in its place is refused."""
    path = _path_text(value, what, variable)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except NotADirectoryError:
        mode = None
    except OSError:
        return path  # unreadable: the step that needs it reports it with its own remedy
    if mode is None or not stat.S_ISDIR(mode):
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(path)}: it is not a directory",
                      f"point {_label(what, variable)} at a directory (or a path that does not exist yet), "
                      "or unset it", variable=variable)
    return path


def check_regular_file(value: str | os.PathLike[str], what: str, *, variable: str | None = None) -> Path:
    """A path to an existing regular file: directories, devices (``/dev/zero``), FIFOs and sockets are refused
    without being opened, so nothing blocks or grows without bound."""
    path = _path_text(value, what, variable)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(path)}: {exc.strerror or 'cannot be read'}",
                      f"point {_label(what, variable)} at a readable file, or unset it", variable=variable) from None
    if not stat.S_ISREG(mode):
        raise invalid(what, f"Invalid {_label(what, variable)} {shown(path)}: not a regular file (a directory, "
                      "device, FIFO or socket)", f"point {_label(what, variable)} at a regular file, or unset it",
                      variable=variable)
    return path


def check_file_path(value: object, what: str) -> Path:
    """A file path given as an option (``--lock``): text that is a plain path; whether the file exists is the
    step's to say."""
    try:
        text = os.fspath(value)  # type: ignore[call-overload]
    except TypeError:
        raise invalid(what, f"Invalid {what} {shown(repr(value))}: expected a file path",
                      f"pass {what} PATH") from None
    if not isinstance(text, str) or not text.strip():
        raise invalid(what, f"Invalid {what} {shown(str(text))}: expected a file path", f"pass {what} PATH")
    return _path_text(text, what, None)


def check_output_file(value: object, what: str) -> Path:
    """Where an option may write a file (``-o``): a new path (its folder is created when missing), or an existing
    regular file (replaced). A directory, a device or a FIFO is refused before anything is written (replacing
    ``/dev/null`` by a rename would be a disaster), and so is a folder that is a file."""
    path = check_file_path(value, what)
    try:
        mode: int | None = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise invalid(what, f"Invalid {what} {shown(str(path))}: {exc.strerror or 'cannot be used'}",
                      f"pass {what} FILE in a folder you can write") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise invalid(what, f"Invalid {what} {shown(str(path))}: it is a directory, device or FIFO, not a file",
                      f"pass {what} FILE, a new or a regular file")
    if path.parent.exists() and not path.parent.is_dir():
        raise invalid(what, f"Invalid {what} {shown(str(path))}: {shown(str(path.parent))} is not a folder",
                      f"pass {what} FILE in a folder")
    return path


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    The file is opened non-blocking and checked with ``fstat`` before any read, so a FIFO, a device (``/dev/zero``
    grows without end) or a directory is refused at once (``ValueError``), as is a file longer than ``limit``;
    ``OSError`` as usual when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file (a directory, device, FIFO or socket)")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise ValueError(f"the file is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)

"""Text that came from outside (GPU names, container labels, engine and hub messages, user input) made safe to print.

One function decides what may reach a terminal: :func:`sanitize` drops terminal escape sequences, control characters
and the invisible marks that reorder or hide text (bidi overrides, zero-width characters); :func:`one_line` also
folds every line break into a space, for table cells and error messages that must stay one line. :func:`shown`
is how a bad value is quoted back in an error message: sanitised, credentials redacted, bounded.

:func:`plain_reason` turns a connection library's nested repr (``HTTPConnectionPool(...)``, ``NewConnectionError``,
``[Errno 111]``) into the few words that matter ("connection refused"); :func:`loads_json` parses JSON from outside
with a bound on its size and nesting.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from nemoclaw_runtime.kernel.secret import redact

__all__ = ["MAX_JSON_DEPTH", "JsonTooDeep", "has_unsafe", "json_depth", "loads_json", "one_line", "plain_reason",
           "sanitize", "shown", "strip_escapes", "tidy"]

# ANSI / VT sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), and two-character escapes.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
# C0 controls but tab and newline, DEL, C1 controls; bidi marks, embeddings, overrides and isolates; zero-width
# characters, the line / paragraph separators, the BOM and the interlinear annotation marks.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\ufff9-\ufffb]"
)
_WHITESPACE = re.compile(r"\s+")
SHOWN_CHARS = 80  # a bad value quoted back in a message: at most this many characters


def has_unsafe(text: str) -> bool:
    """True when ``text`` holds a control character (newlines included), an escape or an invisible mark."""
    return bool(_UNSAFE.search(text)) or "\n" in text or "\t" in text or "\x1b" in text


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (colours, cursor moves, titles); every other character kept."""
    return _ESCAPES.sub("", text)


def sanitize(text: str) -> str:
    """``text`` without terminal escapes, control characters (tab and newline kept) or invisible marks."""
    return _UNSAFE.sub("", strip_escapes(text))


def one_line(text: str) -> str:
    """:func:`sanitize`, with every run of whitespace (line breaks included) folded into one space."""
    return _WHITESPACE.sub(" ", sanitize(text)).strip()


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A value quoted back in an error message: repr-quoted, one line, credentials redacted, at most ``limit``
    characters (what was cut is marked with ``…``)."""
    text = redact(str(value))
    cut = len(text) > limit
    quoted = repr(text[:limit])  # repr escapes control characters and invisible marks are removed below
    return sanitize(quoted) + ("…" if cut else "")


# --- foreign error text ------------------------------------------------------------------------------------------

_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)connection refused|errno 111\b|ECONNREFUSED"), "connection refused"),
    (re.compile(r"(?i)name or service not known|nodename nor servname|temporary failure in name resolution|"
                r"getaddrinfo failed|errno -[23]\b|no address associated"), "the host name does not resolve"),
    (re.compile(r"(?i)network is unreachable|errno 101\b"), "the network is unreachable"),
    (re.compile(r"(?i)no route to host|errno 113\b"), "no route to host"),
    (re.compile(r"(?i)connection reset|errno 104\b"), "the connection was reset"),
    (re.compile(r"(?i)permission denied|errno 13\b"), "permission denied"),
    (re.compile(r"(?i)no such file or directory|errno 2\b|FileNotFoundError"), "no such file or socket"),
    (re.compile(r"(?i)timed out|timeout"), "timed out"),
    (re.compile(r"(?i)certificate verify failed|SSLError|ssl:"), "a TLS error (certificate or protocol)"),
    (re.compile(r"(?i)connection aborted|remote ?disconnected|remote end closed"), "the connection was closed"),
)
_WRAPPER = re.compile(r"(?i)HTTP(S)?ConnectionPool\(|NewConnectionError|MaxRetryError|Max retries exceeded|"
                      r"\[Errno -?\d+\]|urllib3\.|<[a-z_.]+ object at 0x[0-9a-f]+>")


def plain_reason(text: str) -> str:
    """The few words a user needs from a connection library's message: a known cause ("connection refused"), or
    the message itself, one line, when it is not one of those nested reprs."""
    line = one_line(text)
    if not _WRAPPER.search(line):
        return line
    for pattern, reason in _REASONS:
        if pattern.search(line):
            return reason
    return "the connection failed"


def tidy(text: str) -> str:
    """One line, with the first nested connection-library repr in it (and everything after it) replaced by
    :func:`plain_reason`'s few words: ``… failed: ConnectError: [Errno 111] Connection refused`` →
    ``… failed: ConnectError: connection refused``."""
    line = one_line(text)
    found = _WRAPPER.search(line)
    if found is None:
        return line
    head = line[:found.start()].rstrip()
    return f"{head} {plain_reason(line[found.start():])}".strip()


# --- JSON from outside -------------------------------------------------------------------------------------------

MAX_JSON_DEPTH = 32
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


class JsonTooDeep(ValueError):
    """A JSON document nested deeper than allowed (parsing it would exhaust the stack)."""


def json_depth(raw: str) -> int:
    """How deeply the arrays and objects of ``raw`` nest (strings skipped); no parse, linear time."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", raw))
    if not brackets:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in brackets))


def loads_json(raw: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses (:class:`JsonTooDeep`) a document nested deeper than ``max_depth``; other
    problems are ``json.JSONDecodeError`` as usual."""
    if raw.count("[") + raw.count("{") > max_depth and json_depth(raw) > max_depth:
        raise JsonTooDeep(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(raw)
    except RecursionError:  # a depth the scan could not see (it never should): the same refusal
        raise JsonTooDeep(f"nested more than {max_depth} levels deep") from None

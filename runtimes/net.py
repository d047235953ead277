"""The one place HTTP clients are made: every ``httpx.Client`` of the library comes from :func:`http_client`.

``trust_env=False`` always: the library never reads the process environment (a proxy, when one is wanted, is passed
in from the :class:`~nemoclaw_runtime.kernel.settings.Settings`), and no proxy may sit between us and a local server.
httpx is imported only when a client is made, so importing this module stays light (``--help`` never loads httpx).
This module is the bottom of ``runtimes/``: every layer above may use it, and it imports nothing of theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

#: Read/write/pool budget of a client made without one (httpx's own default).
DEFAULT_TIMEOUT_S = 5.0


def http_client(*, timeout: float | None = DEFAULT_TIMEOUT_S, connect: float | None = None,
                follow_redirects: bool = False, proxy: str | None = None) -> httpx.Client:
    """A new client (the caller closes it): ``timeout`` seconds per operation, ``connect`` for the connection
    (default: ``timeout``), redirects followed only when asked, never the environment's proxy settings."""
    import httpx

    budget = httpx.Timeout(timeout) if connect is None else httpx.Timeout(timeout, connect=connect)
    return httpx.Client(timeout=budget, follow_redirects=follow_redirects, trust_env=False, proxy=proxy)


__all__ = ["http_client"]

"""Who holds a host port: psutil for listeners and their process, a plain connect where psutil may not look."""

from __future__ import annotations

import socket

__all__ = ["port_listening", "port_owner"]


def port_listening(port: int) -> bool:
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):  # some platforms need privileges: fall back to a connect
        return _connectable(port)
    if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections):
        return True
    return _connectable(port)  # a listener in another network namespace (docker-proxy) may not be listed


def port_owner(port: int) -> str:
    """A short description of what listens on ``port``, for error messages."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f"process {psutil.Process(conn.pid).name()} (pid {conn.pid})"
    except (psutil.Error, PermissionError):
        pass
    return "another program"


def _connectable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0

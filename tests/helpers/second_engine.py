"""A second Docker engine beside the main one (own socket, data root, exec root, pid file), to stop and restart
under a pull without touching the main engine other tests use (docker-engine-notes.md, "A second engine").

It gets a bridge of its own (``BRIDGE``, created here with a private address): with ``--bridge none`` dockerd
deletes the host's ``docker0`` at start (its clean-up of the default bridge), which breaks the main engine's
containers. Every wait is bounded in time; ``close`` stops it, unmounts its network namespace and removes the
bridge it created.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

BRIDGE = "ncfault0"
BRIDGE_ADDRESS = "10.213.7.1/24"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


class SecondEngineUnavailable(RuntimeError):
    pass


def dockerd_path() -> str | None:
    return shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)


class SecondEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self._made_bridge = False
        self.starts = 0

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    def start(self) -> SecondEngine:
        binary = dockerd_path()
        if binary is None or os.geteuid() != 0:
            raise SecondEngineUnavailable("a second dockerd needs root and the dockerd binary")
        self._ensure_bridge()
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [binary, "-H", self.host, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "docker.pid"), "--bridge", BRIDGE, "--iptables=false",
             "--ip6tables=false", "--ip-masq=false"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self.answers():
                self.starts += 1
                return self
            time.sleep(0.1)
        self.stop()
        raise SecondEngineUnavailable(f"the second dockerd did not answer within {START_TIMEOUT_S:.0f} s: "
                                      + self.log_tail())

    def answers(self) -> bool:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=2.0) as client:
                return client.get("http://docker/_ping").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM (what `systemctl restart docker` sends), then SIGKILL after STOP_TIMEOUT_S."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            netns = self.root / "exec" / "netns" / "default"
            if netns.exists():
                subprocess.run(["umount", str(netns)], capture_output=True, timeout=10, check=False)
        if self._made_bridge:
            subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, timeout=10, check=False)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _ensure_bridge(self) -> None:
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, timeout=10).returncode == 0:
            return
        for command in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                        ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE], ["ip", "link", "set", BRIDGE, "up"]):
            done = subprocess.run(command, capture_output=True, timeout=10)
            if done.returncode != 0:
                raise SecondEngineUnavailable(f"{' '.join(command)}: {done.stderr.decode(errors='replace')}")
        self._made_bridge = True


def docker0_present() -> bool:
    return subprocess.run(["ip", "link", "show", "docker0"], capture_output=True, timeout=10).returncode == 0


__all__ = ["BRIDGE", "SecondEngine", "SecondEngineUnavailable", "docker0_present", "dockerd_path"]

"""What ``up --nodes`` started, remembered on this machine: ``<state_dir>/groups/<name>.json`` names the nodes'
engines in order (the head first), so ``ps``, ``stop`` and ``logs`` reach every node's containers without being
told the nodes again. The containers carry the same facts in their labels; the record is how a remote node is
found at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemoclaw_runtime.kernel import checks
from nemoclaw_runtime.kernel.errors import NemoclawError
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.kernel.text import loads_json
from nemoclaw_runtime.runtimes.cluster.nodes import Node, parse_nodes
from nemoclaw_runtime.runtimes.lockfile import write_json_atomically

__all__ = ["GroupRecord", "delete_record", "read_record", "read_records", "write_record"]

RECORD_SCHEMA = 1
MAX_RECORD_BYTES = 64 * 1024


@dataclass(frozen=True)
class GroupRecord:
    name: str
    runtime: str
    model: str
    nodes: tuple[Node, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": RECORD_SCHEMA, "name": self.name, "runtime": self.runtime, "model": self.model,
                "nodes": [node.address for node in self.nodes]}


def _folder(settings: Settings) -> Path:
    return settings.state_dir / "groups"


def write_record(settings: Settings, record: GroupRecord) -> Path:
    return write_json_atomically(record.to_dict(), _folder(settings) / f"{record.name}.json")


def delete_record(settings: Settings, name: str) -> None:
    (_folder(settings) / f"{name}.json").unlink(missing_ok=True)


def read_record(settings: Settings, name: str) -> GroupRecord | None:
    """The record of the deployment ``name``; None when there is none (or it is unreadable: the containers'
    labels still say what they are, and ``stop`` on this engine still finds them)."""
    path = _folder(settings) / f"{checks.check_container_name(name, 'NAME')}.json"
    try:
        if not path.is_file() or path.stat().st_size > MAX_RECORD_BYTES:
            return None
        data = loads_json(path.read_text(encoding="utf-8"))
        nodes = parse_nodes([str(address) for address in data["nodes"]])  # the same checks as --nodes
        if data["name"] != name or data.get("schema") != RECORD_SCHEMA:
            return None
        return GroupRecord(str(data["name"]), str(data["runtime"]), str(data["model"]), nodes)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, NemoclawError):
        return None


def read_records(settings: Settings) -> list[GroupRecord]:
    folder = _folder(settings)
    if not folder.is_dir():
        return []
    names = sorted(p.stem for p in folder.glob("*.json") if checks.CONTAINER_NAME_PATTERN.fullmatch(p.stem))
    return [record for record in map(lambda n: read_record(settings, n), names) if record is not None]

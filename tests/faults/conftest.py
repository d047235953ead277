"""Fixtures of the fault suite (marker ``faults``): the real engine and registry of tests/integration, the fault
proxy, a second engine to restart; and the fault table, printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.registry import local_registry  # noqa: F401  (fixture)
from tests.helpers.second_engine import SecondEngine, SecondEngineUnavailable, docker0_present, dockerd_path
from tests.integration.conftest import (  # noqa: F401  (fixtures: the main engine, its clean-up, busybox)
    _docker_marked_tests_need_the_engine,
    busybox_base,
    docker_client,
    test_labels,
    test_session_id,
)

#: (fault, outcome, seconds to outcome), one row per fault test that ran.
FAULT_TABLE: list[tuple[str, str, float]] = []


def record(fault: str, outcome: str, seconds: float) -> None:
    FAULT_TABLE.append((fault, outcome, seconds))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULT_TABLE:
        return
    terminalreporter.section("fault table")
    terminalreporter.write_line(f"{'fault':<52} {'time':>7}  outcome")
    for fault, outcome, seconds in FAULT_TABLE:
        terminalreporter.write_line(f"{fault:<52} {seconds:6.1f}s  {outcome}")


@pytest.fixture
def second_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondEngine]:
    if dockerd_path() is None:
        pytest.fail("no dockerd: install docker.io (bash scripts/test.sh does)", pytrace=False)
    had_docker0 = docker0_present()
    root = Path(tmp_path_factory.mktemp("engine2", numbered=True))
    engine2 = SecondEngine(root)
    try:
        engine2.start()
    except SecondEngineUnavailable as exc:
        engine2.close()
        pytest.skip(f"no second engine here: {exc}")
    try:
        yield engine2
    finally:
        engine2.close()
        assert docker0_present() or not had_docker0, "the second engine took the main engine's docker0 bridge"

"""Translation tables: the most specific row wins whatever the order, templates fill from the context, and the
docker-py table covers each docker-py / requests type the adapter meets."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest
import requests

from nemoclaw_runtime.kernel.errors import (
    DockerUnavailable,
    DownloadFailed,
    ImageNotFound,
    InvalidInput,
    NemoclawError,
    NoSuchContainer,
)
from nemoclaw_runtime.kernel.translation import Context, Rule, Translation, rule_for, translate
from nemoclaw_runtime.runtimes.docker.adapter import DOCKER_ERRORS


class Base(Exception):
    pass


class Middle(Base):
    pass


class Leaf(Middle):
    pass


def test_the_most_specific_type_wins_whatever_the_order() -> None:
    table = {Base: "base", Leaf: "leaf", Middle: "middle"}
    assert rule_for(table, Leaf()) == "leaf"
    assert rule_for(table, Middle()) == "middle"
    assert rule_for(table, Base()) == "base"
    assert rule_for(table, ValueError()) is None


def test_a_translation_fills_message_remedy_and_details_from_the_context() -> None:
    row = Translation(DownloadFailed, "Pulling {image} failed: {text}", "try {image} again", cause="network",
                      details={"image": "raw"})
    context = {"image": "img:1", "text": "a {brace} in the text", "raw": None}

    error = translate({Base: row}, Leaf(), context, extra_details={"transient": True})

    assert isinstance(error, DownloadFailed) and error.exit_code == 4 and error.cause == "network"
    assert error.message == "Pulling img:1 failed: a {brace} in the text"  # values are never parsed as templates
    assert error.remedy == "try img:1 again" and error.details == {"image": None, "transient": True}


def test_a_rule_function_picks_a_row_or_returns_an_error_and_a_default_catches_the_rest() -> None:
    small = Translation(InvalidInput, "small {n}")

    def pick(exc: BaseException, context: Context) -> Translation | NemoclawError:
        return small if context["n"] < 10 else NemoclawError(f"big {context['n']}")

    table: dict[type[BaseException], Rule] = {Middle: pick}
    fallback = Translation(NemoclawError, "other: {n}")

    assert translate(table, Leaf(), {"n": 3}).message == "small 3"  # type: ignore[union-attr]
    assert translate(table, Leaf(), {"n": 30}).message == "big 30"  # type: ignore[union-attr]
    assert translate(table, Base(), {"n": 3}) is None
    assert translate(table, Base(), {"n": 3}, default=fallback).message == "other: 3"  # type: ignore[union-attr]


def _docker_context(**changes: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"action": "starting a container", "missing": "container", "subject": "x",
                               "raw_subject": "x", "image": "img:1", "host": None, "where": "the local socket",
                               "text": "boom", "status": None}
    context.update(changes)
    return context


@pytest.mark.parametrize(("exc", "expected"), [
    (docker.errors.ImageNotFound("no such image"), ImageNotFound),
    (docker.errors.NotFound("no such container"), NoSuchContainer),
    (requests.exceptions.ReadTimeout("read timed out"), DockerUnavailable),
    (requests.exceptions.ConnectionError("refused"), DockerUnavailable),
    (ConnectionRefusedError("refused"), DockerUnavailable),
    (docker.errors.InvalidRepository("bad"), InvalidInput),
    (docker.errors.TLSParameterError("bad tls"), NemoclawError),
])
def test_the_docker_table_row_of_each_type(exc: Exception, expected: type[NemoclawError]) -> None:
    error = translate(DOCKER_ERRORS, exc, _docker_context())
    assert type(error) is expected


def test_a_404_of_an_image_lookup_is_image_not_found() -> None:
    error = translate(DOCKER_ERRORS, docker.errors.NotFound("404"), _docker_context(missing="image", image="x"))
    assert isinstance(error, ImageNotFound) and error.details == {"image": "x"}


def test_errors_the_docker_table_does_not_know_pass_through() -> None:
    assert translate(DOCKER_ERRORS, KeyError("k"), _docker_context()) is None

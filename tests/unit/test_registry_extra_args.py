"""NEMOCLAW_VLLM_EXTRA_ARGS_JSON: NemoClaw's rules and messages, with the offending index."""

from __future__ import annotations

import pytest

from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.registry import load_registry, parse_extra_args

VAR = "NEMOCLAW_VLLM_EXTRA_ARGS_JSON"


@pytest.mark.parametrize("raw", [None, "", "   ", "\n\t"])
def test_blank_is_empty(raw: str | None) -> None:
    assert parse_extra_args(raw) == ()


def test_tokens_are_trimmed_and_kept_in_order() -> None:
    raw = '[" --max-num-seqs ", "8", "--speculative-config", "{\\"method\\": \\"mtp\\"}", "[]"]'
    assert parse_extra_args(raw) == ("--max-num-seqs", "8", "--speculative-config", '{"method": "mtp"}', "[]")


def test_empty_array_is_empty() -> None:
    assert parse_extra_args("[]") == ()


def test_appended_after_entry_flags() -> None:
    model = load_registry().vllm_model("nemotron-3-nano-4b")
    argv = model.serve_argv(parse_extra_args('["--max-num-seqs", "2"]'))
    assert argv[-2:] == ("--max-num-seqs", "2")
    assert argv[-4:-2] == model.flags[-2:]


@pytest.mark.parametrize("raw", ['"--foo"', "{}", '{"a": 1}', "3", "null", "true", "not json", "[1,", "'[]'"])
def test_not_an_array(raw: str) -> None:
    with pytest.raises(InvalidSetting, match=rf"^{VAR} must be a JSON array") as caught:
        parse_extra_args(raw)
    assert caught.value.exit_code == 2
    assert caught.value.details["variable"] == VAR
    assert "index" not in caught.value.details


@pytest.mark.parametrize(
    ("raw", "index", "problem"),
    [
        ("[1]", 0, "must be a string."),
        ('["--a", null]', 1, "must be a string."),
        ('["--a", "b", ["c"]]', 2, "must be a string."),
        ('["--a", ""]', 1, "must not be empty."),
        ('["   "]', 0, "must not be empty."),
        ('["--a", "b\\u0000c"]', 1, "must not contain control characters."),
        ('["a\\nb"]', 0, "must not contain control characters."),
        ('["--x", "y", "a\\u007fb"]', 2, "must not contain control characters."),
        ('["a\\u001fb"]', 0, "must not contain control characters."),
    ],
)
def test_bad_element_names_index(raw: str, index: int, problem: str) -> None:
    with pytest.raises(InvalidSetting) as caught:
        parse_extra_args(raw)
    assert caught.value.message == f"{VAR}[{index}] {problem}"
    assert caught.value.details == {"variable": VAR, "index": index}
    assert caught.value.remedy


def test_trailing_newline_is_trimmed_not_rejected() -> None:
    assert parse_extra_args('["--a\\n"]') == ("--a",)


@pytest.mark.parametrize("raw", ['["--port", "9000"]', '["--port=9000"]'])
def test_port_cannot_be_moved(raw: str) -> None:
    with pytest.raises(InvalidSetting, match=rf"^{VAR}\[0\] must not set --port"):
        parse_extra_args(raw)


def test_values_are_never_echoed() -> None:
    with pytest.raises(InvalidSetting) as caught:
        parse_extra_args('["--api-key", "sk-secret\\u0001"]')
    assert "sk-secret" not in caught.value.message
    assert "sk-secret" not in str(caught.value.to_dict())


def test_other_variable_name() -> None:
    with pytest.raises(InvalidSetting, match=r"^--extra-args\[0\] must be a string\.$"):
        parse_extra_args("[0]", variable="--extra-args")


def test_network_flags_are_refused_but_a_smaller_context_is_allowed() -> None:
    from nemoclaw_runtime.kernel.errors import InvalidSetting
    from nemoclaw_runtime.registry import parse_extra_args

    for raw in ('["--host", "127.0.0.1"]', '["--host=0.0.0.0"]', '["--port", "9000"]'):
        with pytest.raises(InvalidSetting, match=r"\[0\] must not set --(host|port)"):
            parse_extra_args(raw)
    assert parse_extra_args('["--max-model-len", "32768"]') == ("--max-model-len", "32768")

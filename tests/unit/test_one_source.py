"""Rules that were written twice, now written once: each copy is the other's object, or behaves as the one rule."""

from __future__ import annotations

import pytest

from nemoclaw_runtime.cli import ops as cli_ops
from nemoclaw_runtime.cli import status as cli_status
from nemoclaw_runtime.kernel import checks, secret, units
from nemoclaw_runtime.kernel import settings as settings_module
from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.registry import catalog, entries, extra_args, loader
from nemoclaw_runtime.runtimes.docker import containers, spec
from nemoclaw_runtime.runtimes.server.diagnose import display_line
from nemoclaw_runtime.runtimes.status import collect, gpu_usage

NAMES = ["ab", "a", "a" * 255, "a" * 256, "a" * 300, "ab\n", "-ab", "a b", "nemoclaw-vllm", "x.y_z-1"]


@pytest.mark.parametrize("name", NAMES)
def test_one_container_name_rule(name: str) -> None:
    rule = bool(checks.CONTAINER_NAME_PATTERN.fullmatch(name))
    assert bool(spec.CONTAINER_NAME_RE.match(name)) is rule
    assert bool(loader._CONTAINER_RE.match(name)) is rule


def test_one_hf_id_rule_and_one_platform_list() -> None:
    assert not hasattr(loader, "_HF_ID_RE") and loader.HF_ID_RE is entries.HF_ID_RE
    assert catalog.VLLM_HF_PLATFORMS is loader.VLLM_PLATFORMS


@pytest.mark.parametrize("raw", ["8000", "1024", "65535", "1023", "65536", "٨٠٠٠", " 8080 ", "-1", "80.0", ""])
def test_settings_ports_follow_check_port(raw: str) -> None:
    assert not hasattr(settings_module, "_PORT_RE")
    try:
        expected: int | None = checks.check_port(raw, "x", low=1024)
    except Exception:  # noqa: BLE001 - refused
        expected = None
    try:
        got: int | None = settings_module._port("NEMOCLAW_VLLM_PORT", raw)
    except InvalidSetting:
        got = None
    assert got == expected


@pytest.mark.parametrize("raw", ["600", "0.5", ".5", "1e3", "inf", "nan", "0", "-1", "٦٠٠", "1e400", "2592001"])
def test_settings_seconds_follow_check_seconds(raw: str) -> None:
    assert not hasattr(settings_module, "_SECONDS_RE")
    try:
        expected: float | None = checks.check_seconds(raw, "x")
    except Exception:  # noqa: BLE001 - refused
        expected = None
    try:
        got: float | None = settings_module._seconds("NEMOCLAW_VLLM_READY_TIMEOUT", raw)
    except InvalidSetting:
        got = None
    assert got == expected


def test_one_control_character_rule() -> None:
    """kernel/text.py's rule: the interlinear annotation marks (U+FFF9..FFFB) the registry's own copy missed."""
    assert not hasattr(extra_args, "CONTROL_RE")
    with pytest.raises(InvalidSetting):
        extra_args.parse_extra_args('["--served-model-name", "a\ufff9b"]')


def test_one_escape_rule() -> None:
    """An OSC title sequence and a two-character escape go too, not only colour codes."""
    assert display_line("\x1b]0;owned\x07\x1bMready \x1b[31mnow\x1b[0m") == "ready now"


@pytest.mark.parametrize("flag", ["--api-key", "--hf-token", "--ssl-keyfile-password", "-token", "--model",
                                  "--max-model-len", "--passes"])
def test_one_secret_flag_rule(flag: str) -> None:
    assert secret._SECRET_FLAG_WORDS in secret._SECRET_FLAG.pattern
    redacted = secret.redact(f"{flag} value123") != f"{flag} value123"
    assert secret.is_secret_flag(flag) is redacted


def test_one_no_such_container_and_one_log_tail_limit() -> None:
    assert not hasattr(collect, "_no_such") and not hasattr(containers, "_no_such")
    assert collect.no_such_container is containers.no_such_container
    assert cli_ops.MAX_LOG_TAIL is checks.MAX_LOG_TAIL and containers.MAX_LOG_TAIL is checks.MAX_LOG_TAIL


def test_status_sizes_are_kernel_units() -> None:
    assert gpu_usage.MIB is units.MIB and not hasattr(cli_status, "_bytes")
    assert cli_status._mib(102400, [0, 1]) == f"{units.format_mib(102400)} (GPU 0,1)" == "100 GiB (GPU 0,1)"

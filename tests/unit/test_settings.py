from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nemoclaw_runtime.kernel.errors import InvalidSetting
from nemoclaw_runtime.kernel.names import APIS, HF_TOKEN_VARIABLES, NGC_KEY_VARIABLES, PROVIDERS
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.kernel.settings import BY_VARIABLE, CATALOGUE, Setting, Settings

README = Path(__file__).resolve().parents[2] / "README.md"
NOT_SETTINGS = {"environ", "warnings"}  # what a Settings was read from, and the lenient variables' complaints


def test_defaults_from_an_empty_mapping() -> None:
    settings = Settings.from_env({})
    assert settings.vllm_port == 8000
    assert settings.ollama_port == 11434
    assert settings.vllm_ready_timeout == 1800.0
    assert settings.nim_ready_timeout == 1200.0
    assert settings.pull_max_timeout == 43200.0
    assert settings.local_inference_timeout == 180.0
    assert settings.warnings == ()


def test_every_setting_is_declared_once_and_catalogued_once() -> None:
    fields = [f for f in dataclasses.fields(Settings) if f.name not in NOT_SETTINGS]

    assert [s.field for s in CATALOGUE] == [f.name for f in fields]  # one entry per field, in declaration order
    assert len({s.variable for s in CATALOGUE}) == len(CATALOGUE)  # and one field per variable
    for f in fields:
        entry = next(s for s in CATALOGUE if s.field == f.name)
        assert entry.default == f.default, f.name  # the default lives in one place: the field
        assert entry.default == getattr(Settings(), f.name)
    assert BY_VARIABLE["NEMOCLAW_VLLM_PORT"].field == "vllm_port"


def test_secret_variables_are_the_token_lists() -> None:
    assert {s.variable for s in CATALOGUE if s.secret} == {*HF_TOKEN_VARIABLES, *NGC_KEY_VARIABLES}
    assert {s.variable for s in CATALOGUE if s.lenient} == {"NEMOCLAW_OLLAMA_PULL_TIMEOUT",
                                                             "NEMOCLAW_LOCAL_INFERENCE_TIMEOUT"}


def _readme_environment_rows() -> list[tuple[str, str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Environment\n", 1)[1].split("\n## ", 1)[0]
    return [(m[1], m[2].strip(), m[3].strip())
            for m in re.finditer(r"^\| `([A-Z_]+)` \|([^|]*)\|([^|]*)\|$", section, re.MULTILINE)]


def _readme_default(setting: Setting) -> str:
    default = setting.default
    shown = "—" if default is None or default is False else f"{default:g}"
    return f"{shown} (secret: never printed)" if setting.secret else shown


def test_the_readme_environment_table_is_the_catalogue() -> None:
    expected = [(s.variable, _readme_default(s), s.doc) for s in CATALOGUE]
    assert _readme_environment_rows() == expected


def test_replace_and_the_enumerated_choices() -> None:
    settings = Settings().replace(vllm_port=9000)
    assert settings.vllm_port == 9000 and dataclasses.replace(settings, vllm_port=9001).vllm_port == 9001
    for provider in PROVIDERS:
        assert Settings.from_env({"NEMOCLAW_PROVIDER": provider}).provider == provider
    for api in APIS:
        assert Settings.from_env({"NEMOCLAW_PREFERRED_API": api.upper()}).preferred_api == api
    with pytest.raises(InvalidSetting, match="must be openai-completions or openai-responses"):
        Settings.from_env({"NEMOCLAW_PREFERRED_API": "anthropic-messages"})


@pytest.mark.parametrize("raw", ["80", "70000", "abc", "8000.5", "-1"])
def test_bad_port_names_the_variable(raw: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        Settings.from_env({"NEMOCLAW_VLLM_PORT": raw})
    assert info.value.message == f'Invalid port: NEMOCLAW_VLLM_PORT="{raw}" — must be an integer between 1024 and 65535'
    assert info.value.exit_code == 2


def test_bad_strict_timeout_is_exit_2() -> None:
    with pytest.raises(InvalidSetting, match="NEMOCLAW_VLLM_READY_TIMEOUT"):
        Settings.from_env({"NEMOCLAW_VLLM_READY_TIMEOUT": "soon"})


@pytest.mark.parametrize("variable", ["NEMOCLAW_OLLAMA_PULL_TIMEOUT", "NEMOCLAW_LOCAL_INFERENCE_TIMEOUT"])
def test_lenient_timeouts_fall_back_with_a_warning(variable: str) -> None:
    settings = Settings.from_env({variable: "nope"})
    assert len(settings.warnings) == 1 and variable in settings.warnings[0]
    assert settings.ollama_pull_timeout == 1800.0 and settings.local_inference_timeout == 180.0


def test_tokens_are_secrets_and_whitespace_only_is_ignored() -> None:
    settings = Settings.from_env({"HF_TOKEN": "   ", "HUGGING_FACE_HUB_TOKEN": "hf_secretvalue123"})
    found = settings.hf_token_value()
    assert found is not None and found[0] == "HUGGING_FACE_HUB_TOKEN"
    assert isinstance(found[1], Secret) and found[1].reveal() == "hf_secretvalue123"
    assert "hf_secretvalue123" not in repr(settings)


def test_hf_token_wins_over_legacy_name() -> None:
    settings = Settings.from_env({"HF_TOKEN": "a1", "HUGGING_FACE_HUB_TOKEN": "b2"})
    assert settings.hf_token_value()[0] == "HF_TOKEN"  # type: ignore[index]


def test_ngc_key_order() -> None:
    env = {"NVIDIA_API_KEY": "c", "NVIDIA_INFERENCE_API_KEY": "b"}
    assert Settings.from_env(env).ngc_key_value()[0] == "NVIDIA_INFERENCE_API_KEY"  # type: ignore[index]
    assert Settings.from_env({**env, "NGC_API_KEY": "a"}).ngc_key_value()[0] == "NGC_API_KEY"  # type: ignore[index]
    assert Settings.from_env({}).ngc_key_value() is None


def test_paths_derive_from_the_injected_home() -> None:
    settings = Settings.from_env({"HOME": "/h"})
    assert str(settings.hf_home) == "/h/.cache/huggingface"
    assert str(settings.state_dir) == "/h/.local/state/nemoclaw-runtime"
    assert str(settings.docker_config_path) == "/h/.docker/config.json"
    assert str(Settings.from_env({"HOME": "/h", "HF_HOME": "/data/hf"}).hf_home) == "/data/hf"


def test_from_env_does_not_touch_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOCLAW_VLLM_PORT", "9001")
    assert Settings.from_env({}).vllm_port == 8000
    assert Settings.from_env().vllm_port == 9001


def test_provider_is_validated() -> None:
    assert Settings.from_env({"NEMOCLAW_PROVIDER": " Install-VLLM "}).provider == "install-vllm"
    with pytest.raises(InvalidSetting, match="NEMOCLAW_PROVIDER"):
        Settings.from_env({"NEMOCLAW_PROVIDER": "cloud"})


def test_secret_never_formats_its_value() -> None:
    secret = Secret("hf_abcdefghijkl")
    assert "hf_abc" not in f"{secret} {secret!r} {secret:>20}"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


def test_one_redactor_masks_every_token_shape_and_keeps_plain_text() -> None:
    from nemoclaw_runtime.kernel.secret import redact

    text = ("hf_abcdefghijk12 nvapi-abcdef123 sk-abcdefghij Authorization: Bearer abc.def-ghi123 "
            "HF_TOKEN=plain-value password: 'p4ss' max_tokens 64 GPU 0 has 23.55 GiB")
    shown = redact(text, ["23.55"])
    for leaked in ("hf_abcdefghijk12", "nvapi-abcdef123", "sk-abcdefghij", "abc.def-ghi123", "plain-value", "p4ss",
                   "23.55"):
        assert leaked not in shown
    assert "max_tokens 64" in shown and "GPU 0 has" in shown


@pytest.mark.parametrize("variable", ["NEMOCLAW_PROVIDER", "NEMOCLAW_PREFERRED_API", "NEMOCLAW_VLLM_MAX_MODEL_LEN"])
def test_choice_settings_quote_a_bad_value_bounded_on_one_line(variable: str) -> None:
    raw = "x" * 5000 + "\n\x1b[2J" + "hf_" + "A" * 30
    with pytest.raises(InvalidSetting) as caught:
        Settings.from_env({variable: raw})
    message = caught.value.message
    assert len(message) < 400 and "\n" not in message and "\x1b" not in message and "A" * 30 not in message

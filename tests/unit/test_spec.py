from __future__ import annotations

import dataclasses

import pytest

from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.secret import Secret
from nemoclaw_runtime.runtimes.docker.spec import ContainerSpec, GpuRequest, PortBinding, image_repository


def _spec(**changes: object) -> ContainerSpec:
    base = ContainerSpec(name="n", runtime="vllm", image="127.0.0.1:5000/team/img:1.0", command=("vllm", "serve", "m"),
                         env=(("HF_HOME", "/root/.cache/huggingface"), ("HF_TOKEN", Secret("hf_topsecret123"))),
                         ports=(PortBinding(8000, 8001),))
    return dataclasses.replace(base, **changes)


def test_secret_env_values_are_redacted_in_every_display_form() -> None:
    spec = _spec()
    shown = f"{spec.to_dict()} {spec!r}"
    assert "hf_topsecret123" not in shown
    assert spec.to_dict()["env"]["HF_TOKEN"] == "***"
    assert spec.secret_env_names() == ("HF_TOKEN",)


def test_spec_hash_ignores_secret_values_and_labels_but_not_the_command() -> None:
    spec = _spec()
    same = _spec(env=(("HF_HOME", "/root/.cache/huggingface"), ("HF_TOKEN", Secret("another"))),
                 labels=(("x", "y"),))
    assert spec.spec_hash() == same.spec_hash()
    assert spec.spec_hash() != _spec(command=("vllm", "serve", "other")).spec_hash()
    assert spec.spec_hash() != _spec(image_digest="sha256:" + "a" * 64).spec_hash()


def test_image_ref_pins_the_digest_and_keeps_the_registry_port() -> None:
    assert _spec().image_ref == "127.0.0.1:5000/team/img:1.0"
    assert _spec(image_digest="sha256:abc").image_ref == "127.0.0.1:5000/team/img@sha256:abc"
    assert image_repository("nvcr.io/nvidia/vllm:26.05.post1-py3") == "nvcr.io/nvidia/vllm"
    assert image_repository("localhost:5000/x@sha256:1") == "localhost:5000/x"
    assert image_repository("ollama/ollama") == "ollama/ollama"


def test_ports_default_to_loopback() -> None:
    assert _spec().ports[0].host_ip == "127.0.0.1"


@pytest.mark.parametrize(("text", "mode", "indices"), [("all", "all", ()), ("none", "none", ()),
                                                        ("1,0", "indices", (0, 1)), (" 3 ", "indices", (3,))])
def test_gpu_request_parse(text: str, mode: str, indices: tuple[int, ...]) -> None:
    request = GpuRequest.parse(text)
    assert (request.mode, request.indices) == (mode, indices)


@pytest.mark.parametrize("text", ["gpu0", "0,,1", "-1", "all,0"])
def test_gpu_request_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidInput):
        GpuRequest.parse(text)

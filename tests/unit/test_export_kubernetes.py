"""Issue 14 part 2, the library: ``export_kubernetes`` writes manifests that validate offline — built-in kinds against
the Kubernetes OpenAPI schemas (kubernetes-validate, strict), LeaderWorkerSet / NIMCache / NIMService against their
published CRDs (fixtures/kubernetes/crds, source in SOURCE.md) with unknown fields refused too — and carry what
``up`` would run: the registry's argv, the digest, the GPUs, /dev/shm, the cache, the probes' budget, and Secret
*references* only (a canary token in the environment never appears)."""

from __future__ import annotations

import json
import math
import shlex
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from nemoclaw_runtime.kernel.errors import InvalidInput, UnknownModel
from nemoclaw_runtime.kernel.settings import Settings
from nemoclaw_runtime.registry import load_registry
from nemoclaw_runtime.runtimes.export import KubernetesExport, export_kubernetes
from nemoclaw_runtime.runtimes.fit import DirectoryModelSource
from nemoclaw_runtime.runtimes.lockfile import make_lock, write_lock

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "fixtures" / "kubernetes" / "crds"
K8S_VERSION = "1.30.0"
DIGEST = "sha256:" + "ab" * 32
HF_CANARY = "hf_CanaryHfToken0123456789abcdef"
NGC_CANARY = "nvapi-CanaryNgcKey0123456789abcdef"
BUILT_IN = {"v1", "apps/v1"}


def settings(**env: str) -> Settings:
    return Settings.from_env({"HF_TOKEN": HF_CANARY, "NGC_API_KEY": NGC_CANARY, **env})


def export(runtime: str, **kwargs: Any) -> KubernetesExport:
    kwargs.setdefault("settings", settings())
    return export_kubernetes(runtime, **kwargs)


def by_kind(result: KubernetesExport) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in result.documents}


# --- validation ----------------------------------------------------------------------------------------------------


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    group, version = api_version.split("/")
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        names = crd["spec"]["names"]
        if crd["spec"]["group"] == group and names["kind"] == kind:
            return next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    raise AssertionError(f"no CRD fixture for {api_version} {kind}")


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema does not declare: the API server would prune them silently, so a typo would pass
    jsonschema (CRD schemas have no ``additionalProperties: false``) and be lost on apply."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for position, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{position}]")
    return found


def validate(document: dict[str, Any]) -> None:
    if document["apiVersion"] in BUILT_IN:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        return
    schema = crd_schema(document["apiVersion"], document["kind"])
    jsonschema.Draft7Validator(schema).validate(document)
    assert unknown_fields(document, schema) == [], document["kind"]
    # a CRD's top-level metadata is opaque to its schema (the API server's ObjectMeta): its keys are checked here
    assert set(document["metadata"]) <= {"name", "namespace", "labels", "annotations"}, document["metadata"]


ALL_FORMATS = [  # (runtime, options, the kinds it must produce, in order)
    ("vllm", {"model": "qwen3.6-27b"}, ["PersistentVolumeClaim", "Deployment", "Service"]),
    ("vllm", {"model": "deepseek-r1-distill-70b", "gpus": 4, "format": "deployment"},
     ["PersistentVolumeClaim", "Deployment", "Service"]),
    ("vllm", {"model": "deepseek-v4-flash", "gpus": 8, "nodes": 2}, ["LeaderWorkerSet", "Service"]),
    ("vllm", {"model": "hf:Qwen/Qwen3-8B", "gpus": 1, "nodes": 3, "format": "leaderworkerset"},
     ["LeaderWorkerSet", "Service"]),
    ("nim", {"model": "nvidia/nemotron-3-nano-30b-a3b"}, ["NIMCache", "NIMService"]),
    ("nim", {"model": "nvidia/nemotron-3-super-120b-a12b", "gpus": 8, "nodes": 2, "format": "nim-operator"},
     ["NIMCache", "NIMService"]),
    ("nim", {"model": "meta/llama-3.1-8b-instruct", "format": "deployment"},
     ["PersistentVolumeClaim", "Deployment", "Service"]),
]


@pytest.mark.parametrize(("runtime", "options", "kinds"), ALL_FORMATS)
def test_every_format_validates_against_its_schemas(runtime: str, options: dict[str, Any], kinds: list[str]) -> None:
    result = export(runtime, namespace="llm", **options)
    assert [document["kind"] for document in result.documents] == kinds
    for document in result.documents:
        validate(document)
        assert document["metadata"]["namespace"] == "llm"
        assert document["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "nemoclaw-runtime"
    assert list(yaml.safe_load_all(result.to_yaml())) == list(result.documents)
    assert json.loads(json.dumps(result.to_dict())) == {**result.to_dict(), "documents": list(result.documents)}


def test_the_validators_catch_a_wrong_manifest() -> None:
    """The checks above are not vacuous: a typo in a CRD field or a bad built-in value is caught."""
    result = export("nim", model="meta/llama-3.1-8b-instruct")
    service = json.loads(json.dumps(by_kind(result)["NIMService"]))
    service["spec"]["storage"]["sharedMemSizeLimit"] = "16Gi"
    assert unknown_fields(service, crd_schema(service["apiVersion"], "NIMService")) == [
        ".spec.storage.sharedMemSizeLimit"]
    with pytest.raises(AssertionError):
        validate(service)
    service = json.loads(json.dumps(by_kind(result)["NIMService"]))
    service["spec"]["expose"]["service"]["port"] = 70000
    with pytest.raises(jsonschema.ValidationError):
        validate(service)
    deployment = json.loads(json.dumps(by_kind(export("vllm", model="qwen3.6-27b"))["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


@pytest.mark.parametrize(("runtime", "options"), [(runtime, options) for runtime, options, _ in ALL_FORMATS])
def test_no_secret_value_anywhere(runtime: str, options: dict[str, Any]) -> None:
    result = export(runtime, **options)
    for text in (result.to_yaml(), result.to_json(), json.dumps(result.to_dict())):
        assert HF_CANARY not in text and NGC_CANARY not in text
        assert "CanaryHfToken" not in text and "CanaryNgcKey" not in text
    assert '"value": "hf_' not in result.to_json()


# --- vLLM on one node ----------------------------------------------------------------------------------------------


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def test_vllm_deployment_runs_the_registry_argv_with_tensor_parallelism() -> None:
    model = load_registry().resolve_vllm_model("qwen3.6-27b", profile=None)
    result = export("vllm", model="qwen3.6-27b", gpus=2)
    assert result.format == "deployment" and [d["kind"] for d in result.documents] == [
        "PersistentVolumeClaim", "Deployment", "Service"]
    container = _pod(by_kind(result)["Deployment"])["containers"][0]
    args = container["args"]
    assert args[:5] == ["vllm", "serve", "Qwen/Qwen3.6-27B-FP8", "--port", "8000"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert [a for a in args if a != "--tensor-parallel-size" and a != "2"] == list(model.serve_argv())
    assert "--revision" in args and model.hf_revision in args  # the registry's pinned weights
    assert "command" not in container  # the image's entrypoint is kept, as on one host
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def test_one_gpu_adds_no_tensor_parallel_flag() -> None:
    args = _pod(by_kind(export("vllm", model="qwen3.6-27b"))["Deployment"])["containers"][0]["args"]
    assert "--tensor-parallel-size" not in args


def test_vllm_deployment_volumes_env_probes_and_service() -> None:
    result = export("vllm", model="qwen3.6-27b", name="qwen", namespace="ml")
    docs = by_kind(result)
    pod = _pod(docs["Deployment"])
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory" and mounts["dshm"] == "/dev/shm"
    assert volumes["hf-cache"]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"][
        "name"] == "qwen-hf-cache"
    assert mounts["hf-cache"] == "/root/.cache/huggingface"
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_HOME"]["value"] == "/root/.cache/huggingface"
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "hf-token", "key": "HF_TOKEN", "optional": True}}}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 1800
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    service = docs["Service"]["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 8000
    template_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= template_labels.items()
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/instance"] == "qwen"
    assert docs["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}


def test_startup_budget_follows_the_readiness_timeout_setting() -> None:
    result = export("vllm", model="qwen3.6-27b", settings=settings(NEMOCLAW_VLLM_READY_TIMEOUT="3605"))
    startup = _pod(by_kind(result)["Deployment"])["containers"][0]["startupProbe"]
    assert startup["failureThreshold"] == math.ceil(3605 / startup["periodSeconds"])


def test_a_gated_model_needs_the_token_secret() -> None:
    result = export("vllm", model="deepseek-r1-distill-70b")
    env = {e["name"]: e for e in _pod(by_kind(result)["Deployment"])["containers"][0]["env"]}
    assert "optional" not in env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert any("hf-token (required" in note and "--from-file=./HF_TOKEN" in note for note in result.notes)


def test_the_default_name_comes_from_the_model() -> None:
    assert by_kind(export("vllm", model="qwen3.6-27b"))["Deployment"]["metadata"]["name"] == "vllm-qwen3-6-27b"
    assert by_kind(export("vllm", model="hf:Qwen/Qwen3-8B"))["Service"]["metadata"]["name"] == "vllm-qwen-qwen3-8b"
    assert by_kind(export("nim", model="meta/llama-3.1-8b-instruct"))["NIMService"]["metadata"][
        "name"] == "nim-meta-llama-3-1-8b-instruct"


def test_the_cache_is_sized_from_the_weights_when_they_are_known() -> None:
    source = DirectoryModelSource(ROOT / "fixtures" / "fit")
    model = load_registry().resolve_vllm_model("qwen3.6-27b", profile=None)
    weights = source.facts(model.hf_id, revision=model.hf_revision).weights
    assert weights is not None
    result = export("vllm", model="qwen3.6-27b", model_source=source)
    size = by_kind(result)["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"]
    assert size == f"{math.ceil(weights.total_bytes * 1.2 / 1024**3)}Gi" and size != "100Gi"
    assert not any("not known here" in note for note in result.notes)
    unknown = export("vllm", model="qwen3.6-27b")
    assert by_kind(unknown)["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert any("100Gi" in note for note in unknown.notes)


# --- the image: by digest when one is known ------------------------------------------------------------------------


def test_the_image_is_a_tag_with_a_note_when_nothing_pins_it() -> None:
    result = export("vllm", model="qwen3.6-27b")
    image = _pod(by_kind(result)["Deployment"])["containers"][0]["image"]
    assert image == load_registry().vllm_profile_for("linux-nvidia").image  # type: ignore[union-attr]
    assert any("not pinned" in note for note in result.notes)


def test_an_image_with_a_digest_is_used_by_digest() -> None:
    result = export("vllm", model="qwen3.6-27b", image=f"registry.example:5000/team/vllm:v1@{DIGEST}")
    assert _pod(by_kind(result)["Deployment"])["containers"][0]["image"] == f"registry.example:5000/team/vllm@{DIGEST}"
    assert not any("not pinned" in note for note in result.notes)


def _lock(tmp_path: Path, runtime: str, model: str, image: str, revision: str | None = None) -> Path:
    lock = make_lock(runtime=runtime, model=model, image=image, image_digest=DIGEST, weights_revision=revision,
                     argv=("vllm", "serve"), registry_entry_version="x")
    return write_lock(lock, tmp_path / f"{runtime}.lock.json")


def test_the_lock_pins_the_image_the_model_and_the_weights(tmp_path: Path) -> None:
    image = "nvcr.io/nvidia/vllm:26.05.post1-py3"
    path = _lock(tmp_path, "vllm", "hf:Qwen/Qwen3-8B", image, revision="c" * 40)
    result = export("vllm", lock_path=path)  # the model comes from the lock
    container = _pod(by_kind(result)["Deployment"])["containers"][0]
    assert container["image"] == f"nvcr.io/nvidia/vllm@{DIGEST}"
    assert container["args"][2] == "Qwen/Qwen3-8B"
    assert container["args"][container["args"].index("--revision") + 1] == "c" * 40


def test_the_lock_pins_the_nim_operator_image(tmp_path: Path) -> None:
    path = _lock(tmp_path, "nim", "meta/llama-3.1-8b-instruct", "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.8.0")
    docs = by_kind(export("nim", lock_path=str(path)))
    assert docs["NIMService"]["spec"]["image"]["repository"] == "nvcr.io/nim/meta/llama-3.1-8b-instruct"
    assert docs["NIMService"]["spec"]["image"]["tag"] == f"1.8.0@{DIGEST}"
    puller = docs["NIMCache"]["spec"]["source"]["ngc"]["modelPuller"]
    assert puller == f"nvcr.io/nim/meta/llama-3.1-8b-instruct@{DIGEST}"


def test_a_lock_that_disagrees_is_refused(tmp_path: Path) -> None:
    path = _lock(tmp_path, "vllm", "qwen3.6-27b", "nvcr.io/nvidia/vllm:26.05.post1-py3")
    with pytest.raises(InvalidInput, match="lock is for the model") as error:
        export("vllm", model="nemotron-3-nano-4b", lock_path=path)
    assert error.value.remedy
    with pytest.raises(InvalidInput, match="is not the lock's image"):
        export("vllm", lock_path=path, image="nvcr.io/nvidia/vllm:25.01")
    with pytest.raises(InvalidInput, match="is for vllm, not nim"):
        export("nim", lock_path=path)


# --- vLLM on several nodes: LeaderWorkerSet --------------------------------------------------------------------------


def _script(template: dict[str, Any]) -> str:
    command = template["spec"]["containers"][0]["command"]
    assert command[:2] == ["sh", "-c"] and len(command) == 3
    return str(command[2])


def test_leaderworkerset_runs_ray_then_vllm_with_tensor_and_pipeline_parallelism() -> None:
    result = export("vllm", model="deepseek-v4-flash", gpus=8, nodes=2)
    assert result.format == "leaderworkerset"
    lws, service = by_kind(result)["LeaderWorkerSet"], by_kind(result)["Service"]
    template = lws["spec"]["leaderWorkerTemplate"]
    assert lws["spec"]["replicas"] == 1
    assert template["size"] == 2 and template["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = _script(template["leaderTemplate"])
    ray, _, serve = leader.partition(" && exec ")
    assert ray == ("bash /vllm-workspace/examples/online_serving/multi-node-serving.sh leader "
                   "--ray_cluster_size=$(LWS_GROUP_SIZE)")
    argv = shlex.split(serve)
    assert argv[:3] == ["vllm", "serve", "deepseek-ai/DeepSeek-V4-Flash"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
    compilation = argv[argv.index("--compilation-config") + 1]
    assert json.loads(compilation)["cudagraph_mode"] == "FULL_AND_PIECEWISE"  # JSON survives the quoting
    worker = _script(template["workerTemplate"])
    assert worker == ("bash /vllm-workspace/examples/online_serving/multi-node-serving.sh worker "
                      "--ray_address=$(LWS_LEADER_ADDRESS)")
    for script in (leader, worker):
        subprocess.run(["sh", "-n", "-c", script], check=True)  # the shell can parse it
    for role in ("leaderTemplate", "workerTemplate"):
        pod = template[role]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert "emptyDir" in volumes["hf-cache"]  # a RWO claim cannot serve every pod: each has its own cache
        assert {e["name"]: e for e in container["env"]}["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert "startupProbe" in template["leaderTemplate"]["spec"]["containers"][0]
    assert "startupProbe" not in template["workerTemplate"]["spec"]["containers"][0]
    assert service["metadata"]["name"] == f"{lws['metadata']['name']}-leader"
    assert service["spec"]["selector"] == {"leaderworkerset.sigs.k8s.io/name": lws["metadata"]["name"],
                                           "role": "leader"}
    assert template["leaderTemplate"]["metadata"]["labels"]["role"] == "leader"


def test_kubelet_expansion_is_escaped_in_argv() -> None:
    extra = json.dumps(["--chat-template", "$(HOME)/x; rm -rf /"])
    one = export("vllm", model="qwen3.6-27b", settings=settings(NEMOCLAW_VLLM_EXTRA_ARGS_JSON=extra))
    args = _pod(by_kind(one)["Deployment"])["containers"][0]["args"]
    assert args[-1] == "$$(HOME)/x; rm -rf /"
    many = export("vllm", model="qwen3.6-27b", nodes=2, settings=settings(NEMOCLAW_VLLM_EXTRA_ARGS_JSON=extra))
    leader = _script(by_kind(many)["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]["leaderTemplate"])
    assert leader.endswith("'$$(HOME)/x; rm -rf /'")


def test_a_credential_in_the_extra_args_is_refused() -> None:
    extra = json.dumps(["--api-key", "PlantedKey123"])
    with pytest.raises(InvalidInput, match="credential") as error:
        export("vllm", model="qwen3.6-27b", settings=settings(NEMOCLAW_VLLM_EXTRA_ARGS_JSON=extra))
    assert "PlantedKey123" not in error.value.message + str(error.value.remedy)


# --- NIM -----------------------------------------------------------------------------------------------------------


def test_nim_operator_cache_and_service() -> None:
    result = export("nim", model="nvidia/nemotron-3-nano-30b-a3b", gpus=2)
    assert result.format == "nim-operator"
    cache, service = by_kind(result)["NIMCache"], by_kind(result)["NIMService"]
    ngc = cache["spec"]["source"]["ngc"]
    assert ngc == {"modelPuller": "nvcr.io/nim/nvidia/nemotron-3-nano:latest", "pullSecret": "ngc-secret",
                   "authSecret": "ngc-api-secret", "model": {"tensorParallelism": "2"}}
    assert cache["spec"]["storage"]["pvc"]["volumeAccessMode"] == "ReadWriteOnce"
    spec = service["spec"]
    assert spec["image"] == {"repository": "nvcr.io/nim/nvidia/nemotron-3-nano", "tag": "latest",
                             "pullPolicy": "IfNotPresent", "pullSecrets": ["ngc-secret"]}
    assert spec["authSecret"] == "ngc-api-secret"
    assert spec["storage"]["nimCache"] == {"name": cache["metadata"]["name"]}
    assert spec["storage"]["sharedMemorySizeLimit"] == "16Gi"
    assert spec["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert spec["expose"]["service"] == {"type": "ClusterIP", "port": 8000}
    startup = spec["startupProbe"]["probe"]
    assert startup["httpGet"]["path"] == "/v1/health/ready"
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 1200
    assert "multiNode" not in spec
    assert any("ngc-api-secret" in note and "--from-file=./NGC_API_KEY" in note for note in result.notes)
    assert any("generic ngc-secret" in note and "dockerconfigjson" in note for note in result.notes)


def test_nim_on_several_nodes_is_a_multinode_nimservice() -> None:
    result = export("nim", model="nvidia/nemotron-3-super-120b-a12b", gpus=4, nodes=2)
    spec = by_kind(result)["NIMService"]["spec"]
    assert spec["multiNode"]["parallelism"] == {"tensor": 4, "pipeline": 2}
    assert by_kind(result)["NIMCache"]["spec"]["storage"]["pvc"]["volumeAccessMode"] == "ReadWriteMany"


def test_nim_deployment_takes_the_key_from_a_secret() -> None:
    result = export("nim", model="meta/llama-3.1-8b-instruct", format="deployment")
    docs = by_kind(result)
    pod = _pod(docs["Deployment"])
    container = pod["containers"][0]
    assert pod["imagePullSecrets"] == [{"name": "ngc-secret"}]
    env = {e["name"]: e for e in container["env"]}
    for variable in ("NGC_API_KEY", "NIM_NGC_API_KEY"):
        assert env[variable] == {"name": variable, "valueFrom": {"secretKeyRef": {
            "name": "ngc-api-secret", "key": "NGC_API_KEY"}}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v1/health/ready"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"dshm": "/dev/shm", "nim-cache": "/opt/nim/.cache"}
    assert pod["securityContext"]["fsGroup"] == 1000


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("runtime", "options", "message"), [
    ("ollama", {"model": "x"}, "export kubernetes supports vllm and nim"),
    ("vllm", {}, "needs a model"),
    ("nim", {}, "needs a model"),
    ("vllm", {"model": "qwen3.6-27b", "gpus": 0}, "--gpus"),
    ("vllm", {"model": "qwen3.6-27b", "gpus": 65}, "--gpus"),
    ("vllm", {"model": "qwen3.6-27b", "nodes": 0}, "--nodes"),
    ("vllm", {"model": "qwen3.6-27b", "nodes": 65}, "--nodes"),
    ("vllm", {"model": "qwen3.6-27b", "format": "nim-operator"}, "Invalid --format"),
    ("nim", {"model": "meta/llama-3.1-8b-instruct", "format": "leaderworkerset"}, "Invalid --format"),
    ("vllm", {"model": "qwen3.6-27b", "format": "deployment", "nodes": 2}, "runs on one node"),
    ("nim", {"model": "meta/llama-3.1-8b-instruct", "format": "deployment", "nodes": 2}, "runs on one node"),
    ("vllm", {"model": "qwen3.6-27b", "format": "leaderworkerset"}, "--nodes 2 or more"),
    ("vllm", {"model": "qwen3.6-27b", "namespace": "Bad_NS"}, "--namespace"),
    ("vllm", {"model": "qwen3.6-27b", "namespace": "a" * 64}, "--namespace"),
    ("vllm", {"model": "qwen3.6-27b", "name": "1abc"}, "--name"),
    ("vllm", {"model": "qwen3.6-27b", "name": "abc-"}, "--name"),
    ("vllm", {"model": "qwen3.6-27b", "name": "a" * 60, "nodes": 2}, "--name"),
    ("vllm", {"model": "qwen3.6-27b", "image": "--privileged"}, "image reference"),
    ("vllm", {"model": "qwen3.6-27b", "lock_path": "/nonexistent/x.lock.json"}, "No lock file"),
])
def test_bad_input_is_refused_with_a_remedy(runtime: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        export(runtime, **options)
    assert message in error.value.message and error.value.remedy and error.value.exit_code == 2
    assert "\n" not in error.value.message


def test_an_unknown_model_is_the_registry_error() -> None:
    with pytest.raises(UnknownModel, match="Recognised values"):
        export("vllm", model="no-such-model")
    with pytest.raises(UnknownModel, match="for NIM"):
        export("nim", model="no/such-nim")


def test_the_model_setting_up_reads_is_the_default() -> None:
    result = export("vllm", settings=settings(NEMOCLAW_VLLM_MODEL="nemotron-3-nano-4b"))
    assert _pod(by_kind(result)["Deployment"])["containers"][0]["args"][2] == "nvidia/NVIDIA-Nemotron-3-Nano-4B-FP8"

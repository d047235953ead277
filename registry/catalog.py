"""The loaded registry and the questions callers ask of it: which profile, which model, what fits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nemoclaw_runtime.kernel.errors import InsufficientResources, InvalidInput, NoSuitableGpu, UnknownModel
from nemoclaw_runtime.kernel.names import PROFILE_NONE
from nemoclaw_runtime.kernel.units import format_mib
from nemoclaw_runtime.registry.entries import HF_ID_RE, HF_PREFIX, NimModel, OllamaStarter, VllmModel, VllmProfile
from nemoclaw_runtime.registry.loader import VLLM_PLATFORMS

NO_GPU_PROFILE = PROFILE_NONE
#: The GPU profiles a model named by its Hugging Face id alone may run on: every one managed vLLM serves (the
#: loader's list of vLLM platforms, the one source).
VLLM_HF_PLATFORMS = VLLM_PLATFORMS
LIST_COMMAND = "nemoclaw-runtime models"


def _unknown_prefix(source: str, raw: str) -> str:
    """``NEMOCLAW_VLLM_MODEL='x'`` for a variable, ``--model 'x'`` for an option."""
    return f"{source} '{raw}'" if source.startswith("-") else f"{source}='{raw}'"


@dataclass(frozen=True)
class Registry:
    """Everything the data files say. Build with :func:`nemoclaw_runtime.registry.load_registry`."""

    vllm_models: tuple[VllmModel, ...]
    vllm_profiles: Mapping[str, VllmProfile]
    nim_models: tuple[NimModel, ...]
    ollama_starters: tuple[OllamaStarter, ...]
    ollama_fallback_tag: str

    # --- vLLM -----------------------------------------------------------------------------------------------

    def vllm_profile_for(self, gpu_profile: str) -> VllmProfile | None:
        """The vLLM profile for a GPU profile (``jetson`` → the Linux one); ``None`` for ``none``.

        An unrecognised name raises :class:`InvalidInput` rather than silently meaning "no profile".
        """
        if gpu_profile == NO_GPU_PROFILE:
            return None
        for profile in self.vllm_profiles.values():
            if gpu_profile == profile.gpu_profile or gpu_profile in profile.also_for:
                return profile
        known = sorted(
            {
                NO_GPU_PROFILE,
                *self.vllm_profiles,
                *(a for p in self.vllm_profiles.values() for a in p.also_for),
            }
        )
        raise InvalidInput(
            f"Unknown GPU profile '{gpu_profile}'. Known profiles: {', '.join(known)}.",
            remedy="check the GPU snapshot named by NEMOCLAW_GPU_SNAPSHOT, or run `nemoclaw-runtime gpus`",
            details={"gpu_profile": gpu_profile},
        )

    def find_vllm_model(self, text: str) -> VllmModel | None:
        """The entry whose slug or HF id is ``text`` (trimmed, any case), or ``None``."""
        wanted = text.strip()
        return next((model for model in self.vllm_models if wanted and model.matches(wanted)), None)

    def vllm_model(self, slug: str) -> VllmModel:
        """The entry for a slug or HF id; :class:`UnknownModel` otherwise."""
        return self.resolve_vllm_model(slug, profile=None)

    def resolve_vllm_model(
        self, text: str | None, *, profile: VllmProfile | None, source: str = "NEMOCLAW_VLLM_MODEL"
    ) -> VllmModel:
        """The model to serve: ``text`` when given (any platform), else the profile's default.

        ``source`` names where ``text`` came from (a variable, or an option such as ``--model``) for the
        error message.
        """
        if text is None or not text.strip():
            if profile is None:
                raise InvalidInput(
                    "No default vLLM model without a GPU profile: this host has no DGX Spark, DGX Station or "
                    "NVIDIA GPU profile.",
                    remedy=f"name a model with --model or NEMOCLAW_VLLM_MODEL "
                    f"(see `{LIST_COMMAND} --runtime vllm "
                    f"--all`)",
                    details={"variable": source},
                )
            return self._by_slug(profile.default_slug)
        found = self.find_vllm_model(text)
        if found is None:
            found = self._hf_model(text, source)
        if found is None:
            raise self._unknown_vllm(text, source)
        return found

    def _hf_model(self, raw: str, source: str) -> VllmModel | None:
        """``hf:ORG/NAME`` or ``ORG/NAME`` that is no registry entry: any Hugging Face model, with vLLM's defaults
        (a registry entry named by its HF id after ``hf:`` keeps its own flags)."""
        text = raw.strip()
        prefixed = text.lower().startswith(HF_PREFIX)
        hf_id = text[len(HF_PREFIX):].strip() if prefixed else text
        if not HF_ID_RE.match(hf_id) or ".." in hf_id:
            if not prefixed:
                return None
            raise InvalidInput(
                f"Invalid {_unknown_prefix(source, raw)}: after '{HF_PREFIX}' comes a Hugging Face id 'org/name' "
                "(letters, digits, '.', '_', '-')",
                remedy="write the model as hf:ORG/NAME, e.g. hf:Qwen/Qwen3-8B",
                details={"variable": source})
        return self.find_vllm_model(hf_id) or VllmModel.from_hf_id(hf_id, VLLM_HF_PLATFORMS)

    def _by_slug(self, slug: str) -> VllmModel:
        return next(model for model in self.vllm_models if model.slug == slug)  # the loader checked it exists

    def _unknown_vllm(self, raw: str, source: str) -> UnknownModel:
        slugs = ", ".join(f"'{model.slug}'" for model in self.vllm_models)
        return UnknownModel(
            f"Unknown {_unknown_prefix(source, raw)}. Recognised values: {slugs} "
            f"(or the full Hugging Face model id).",
            remedy=f"run `{LIST_COMMAND} --runtime vllm --all` to see every model and pick a slug",
            details={"variable": source, "value": raw, "recognised": [m.slug for m in self.vllm_models]},
        )

    def vllm_models_for(self, profile: VllmProfile | None) -> tuple[VllmModel, ...]:
        """The models a profile offers, in registry order (NemoClaw's ``modelsForPlatform``).

        spark: 27b, r1, nano, nvfp4 · station: 27b, r1, nano, v4 · linux: 27b, r1, nano. An interactive picker
        lists the profile's default first; :meth:`vllm_picker_order` gives that order.
        """
        if profile is None:
            return ()
        return tuple(model for model in self.vllm_models if model.serves_on(profile.gpu_profile))

    def vllm_picker_order(self, profile: VllmProfile | None) -> tuple[VllmModel, ...]:
        """The profile's models with its default moved to the top, as the picker shows them."""
        models = self.vllm_models_for(profile)
        if profile is None:
            return models
        default = self._by_slug(profile.default_slug)
        return (default, *(model for model in models if model is not default))

    # --- NIM ------------------------------------------------------------------------------------------------

    def nim_models_fitting(self, budget_mib: int | None) -> tuple[NimModel, ...]:
        """Entries with ``min_vram_mib <= budget_mib``, in catalog order; none when the budget is unknown."""
        return tuple(model for model in self.nim_models if model.fits(budget_mib))

    def resolve_nim_model(
        self, text: str | None, *, budget_mib: int | None, source: str = "NEMOCLAW_MODEL"
    ) -> NimModel:
        """The NIM model to serve: ``text`` (name, served id or image, any case), else the first that fits.

        Unknown → :class:`UnknownModel` (exit 2); too big for a known budget → :class:`InsufficientResources`.
        """
        if text is None or not text.strip():
            fitting = self.nim_models_fitting(budget_mib)
            if not fitting:
                raise NoSuitableGpu(
                    "No NIM models fit your GPU VRAM."
                    if budget_mib
                    else "No NIM model can be chosen: the GPU memory of this host is unknown.",
                    remedy=f"see `{LIST_COMMAND} --runtime nim --all` for each model's minimum VRAM",
                    details={"budget_mib": budget_mib},
                )
            return fitting[0]
        wanted = text.strip()
        found = next((model for model in self.nim_models if model.matches(wanted)), None)
        if found is None:
            names = ", ".join(f"'{model.name}'" for model in self.nim_models)
            raise UnknownModel(
                f"Unsupported {_unknown_prefix(source, text)} for NIM. Recognised values: {names}.",
                remedy=f"run `{LIST_COMMAND} --runtime nim --all` to see the NIM catalog",
                details={"variable": source, "value": text, "recognised": [m.name for m in self.nim_models]},
            )
        if found.fits(budget_mib) is False:
            raise InsufficientResources(
                f"NIM model '{found.name}' needs at least {format_mib(found.min_vram_mib)} of GPU memory; "
                f"this host has {format_mib(budget_mib)}.",
                remedy=f"pick a smaller model from `{LIST_COMMAND} --runtime nim`",
                details={"model": found.name, "min_vram_mib": found.min_vram_mib, "budget_mib": budget_mib},
            )
        return found

    # --- Ollama ---------------------------------------------------------------------------------------------

    def fittable_ollama_starters(
        self, memory_mib: int | None, *, nvidia_known: bool, compute_constrained: bool
    ) -> tuple[OllamaStarter, ...]:
        """NemoClaw's ``fittableOllamaModelTags``: the starters to offer, smallest first.

        Only the fallback starter (``qwen3.5:9b``) unless this is a known (NVIDIA) host with known memory;
        otherwise every starter that fits, skipping compute-intensive ones on compute-constrained hosts.
        """
        if not nvidia_known or memory_mib is None or memory_mib <= 0:
            return tuple(s for s in self.ollama_starters if s.tag == self.ollama_fallback_tag)
        smallest_first = sorted(self.ollama_starters, key=lambda s: (s.required_memory_mib, s.tag))
        return tuple(
            starter
            for starter in smallest_first
            if starter.fits(memory_mib) and not (compute_constrained and starter.compute_intensive)
        )

    def default_ollama_starter(
        self, memory_mib: int | None, *, nvidia_known: bool, compute_constrained: bool
    ) -> OllamaStarter | None:
        """The largest fittable starter, or ``None`` when nothing fits."""
        fittable = self.fittable_ollama_starters(
            memory_mib, nvidia_known=nvidia_known, compute_constrained=compute_constrained
        )
        return fittable[-1] if fittable else None

    def ollama_starter(self, tag: str) -> OllamaStarter | None:
        wanted = tag.strip().lower()
        return next((s for s in self.ollama_starters if s.tag.lower() == wanted), None)


__all__ = ["NO_GPU_PROFILE", "Registry", "VLLM_HF_PLATFORMS"]

"""``nemoclaw-runtime validate``: prove an OpenAI-compatible endpoint answers a real request (with a tool)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import click

from nemoclaw_runtime.cli._output import Output, json_option
from nemoclaw_runtime.kernel.errors import InvalidInput
from nemoclaw_runtime.kernel.names import APIS as _APIS
from nemoclaw_runtime.kernel.secret import Secret


@click.command("validate")
@click.option("--base-url", required=True, metavar="URL",
              help="The endpoint's OpenAI base URL, e.g. http://127.0.0.1:8000/v1.")
@click.option("--model", required=True, metavar="ID", help="The model id the server serves (GET <base-url>/models).")
@click.option("--api", type=click.Choice(_APIS), default=None,
              help="API to prove (default: NEMOCLAW_PREFERRED_API, else openai-completions). openai-responses "
                   "falls back to chat completions when the server does not stream it properly.")
@click.option("--api-key-env", metavar="NAME", default=None,
              help="Name of an environment variable that holds the endpoint's API key (keys never go on argv).")
@json_option
def validate(base_url: str, model: str, api: str | None, api_key_env: str | None, json_mode: bool) -> int:
    """Send one real chat request (carrying a tool) and report which API path works and how fast it answered.

    \b
    Budget: NEMOCLAW_LOCAL_INFERENCE_TIMEOUT seconds per request (default 180). Exit 5 when the endpoint
    does not give a usable answer; the error names the cause and the fix.
    """
    from nemoclaw_runtime.api import validate as validate_endpoint  # imports httpx: only when run
    from nemoclaw_runtime.kernel.settings import Settings

    settings = Settings.from_env(os.environ)
    output = Output(json_mode)
    for warning in settings.warnings:
        output.warn(warning)
    result = validate_endpoint(base_url, model, settings=settings, api=api, events=output.events(),
                               api_key=_api_key(api_key_env))
    data = result.to_dict()

    def human() -> Iterator[str]:
        yield f"✓ {result.model} answered at {result.base_url} in {result.latency_ms:.0f} ms"
        yield f"  API path:  {result.api}"
        if result.fallback_reason:
            yield f"  (asked for {result.requested_api}; fell back: {result.fallback_reason})"
        yield "  tools:     " + ("accepted (tool_choice auto)" if result.tools_supported else "not supported")
        yield f"  reply:     {result.reply_excerpt}"

    output.result(data, human)
    return 0


def _api_key(variable: str | None) -> Secret | None:
    """The key held by ``variable``, as a Secret; None without ``--api-key-env``."""
    if variable is None:
        return None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise InvalidInput(f"--api-key-env {variable}: that variable is not set or is empty",
                           remedy=f"export {variable}=<the endpoint's API key>, or drop --api-key-env")
    return Secret(value)


__all__ = ["validate"]

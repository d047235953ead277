"""Runtime drivers (vLLM, NIM, Ollama) and the Docker layer they share."""

__all__: list[str] = []


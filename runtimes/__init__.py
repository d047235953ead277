"""Runtime drivers (vLLM, NIM, Ollama) and the Docker layer they share."""

"""The model registry: managed-vLLM entries, the NIM catalog and Ollama starter models, loaded from data files."""

"""Fakes that run as real servers on 127.0.0.1 (or as FROM-scratch busybox images): the Hugging Face hub,
vLLM, NIM, Ollama and an OpenAI-compatible endpoint. They speak HTTP; tests reach them by URL only."""

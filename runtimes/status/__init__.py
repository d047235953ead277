"""What is running and how it is doing: health, GPU memory, KV cache and throughput of every managed server."""

__all__: list[str] = []


"""The fit engine: will a model fit this host, and where, decided from its config and safetensors headers before
any download (weights bytes, KV cache per token, per-GPU budget, tensor parallelism, the largest context)."""

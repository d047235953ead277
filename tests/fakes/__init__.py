"""In-process test doubles (no server, no engine): a fake Docker port, a fake NVML, a fake clock."""

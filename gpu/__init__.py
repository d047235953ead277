"""GPU inventory (NVML) and host profiles."""

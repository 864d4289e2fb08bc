"""Benchmarks: `make bench` (python -m benchmarks). Baselines are measured in the same run."""

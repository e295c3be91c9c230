"""Benchmarks for resilient-mcp: run them with ``python -m bench``."""

"""The bounded registry behind per-tool breakers and histograms."""

from __future__ import annotations

import tracemalloc

import pytest

from resilient_mcp import CircuitBreaker, ConfigurationError
from resilient_mcp._registry import BoundedRegistry


def test_makes_values_on_demand_and_reuses_them():
    """A key's value is made once and then returned again."""
    made = []
    registry = BoundedRegistry(lambda key: made.append(key) or key.upper())

    assert "A" == registry.get("a")
    assert "A" == registry.get("a")
    assert ["a"] == made


def test_evicts_the_least_recently_used():
    """Past max_size the entry used least recently goes."""
    registry = BoundedRegistry(str.upper, max_size=2)
    registry.get("a")
    registry.get("b")
    registry.get("a")  # b is now the least recently used

    registry.get("c")

    assert ["a", "c"] == list(registry)
    assert registry.peek("b") is None
    assert 1 == registry.evictions


def test_ten_thousand_tools_stay_bounded():
    """10,000 distinct keys never hold more than max_size breakers."""
    registry = BoundedRegistry(
        lambda name: CircuitBreaker(name=name), max_size=100
    )
    tracemalloc.start()
    for i in range(1000):
        registry.get(f"tool-{i}")
    after_first, _ = tracemalloc.get_traced_memory()
    for i in range(1000, 10_000):
        registry.get(f"tool-{i}")
    after_all, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert 100 == len(registry)
    assert 9_900 == registry.evictions
    # Nine times more keys, no more memory (allow 10 % for allocator noise).
    assert after_all < after_first * 1.1


def test_invalid_size_is_rejected():
    """max_size must be a positive integer."""
    with pytest.raises(ConfigurationError, match="max_size must be"):
        BoundedRegistry(str, max_size=0)

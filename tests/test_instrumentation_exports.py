"""The public surface of resilient_mcp.instrumentation."""

from __future__ import annotations

import resilient_mcp

from resilient_mcp import instrumentation


def test_all_is_sorted_and_complete():
    """__all__ is sorted and every name in it exists."""
    names = instrumentation.__all__

    assert sorted(names) == names
    for name in names:
        assert hasattr(instrumentation, name)


def test_public_names_claim_the_public_module():
    """Tracebacks and docs show resilient_mcp.instrumentation.X."""
    for name in instrumentation.__all__:
        obj = getattr(instrumentation, name)

        assert "resilient_mcp.instrumentation" == obj.__module__, name


def test_the_root_package_does_not_import_it():
    """Observability is a separate import, like resilient_mcp.testing."""
    assert "instrumentation" not in resilient_mcp.__all__

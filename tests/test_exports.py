"""The public surface: what is exported, and where it claims to live."""

from __future__ import annotations

import resilient_mcp
import resilient_mcp.testing


def test_all_is_sorted_and_complete():
    """__all__ is sorted and every name in it exists."""
    names = resilient_mcp.__all__

    assert sorted(names) == names
    for name in names:
        assert hasattr(resilient_mcp, name)


def test_public_classes_claim_the_public_module():
    """Tracebacks show resilient_mcp.X, not resilient_mcp._module.X."""
    for name in resilient_mcp.__all__:
        obj = getattr(resilient_mcp, name)
        if isinstance(obj, type):
            assert "resilient_mcp" == obj.__module__, name


def test_testing_is_not_imported_by_the_package():
    """resilient_mcp.testing is a separate import, as trio.testing is."""
    assert "testing" not in resilient_mcp.__all__
    assert sorted(resilient_mcp.testing.__all__) == (
        resilient_mcp.testing.__all__
    )

"""
Public helpers for testing code that uses resilient_mcp.

Not imported by ``import resilient_mcp``; import it explicitly.
"""

from ._helpers import fail_once, set_testing
from ._virtual import (
    VirtualTimeEventLoop,
    run_virtual,
    wait_all_tasks_blocked,
)


__all__ = [
    "VirtualTimeEventLoop",
    "fail_once",
    "run_virtual",
    "set_testing",
    "wait_all_tasks_blocked",
]

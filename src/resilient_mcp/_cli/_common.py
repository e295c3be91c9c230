"""
What every command shares: the program's name and the one-line error.
"""

from __future__ import annotations

from typing import Final


PROG: Final = "resilient-mcp"


class CliError(Exception):
    """A problem to report in one line, with exit code 1."""

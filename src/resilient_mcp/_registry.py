"""
A bounded, least-recently-used registry of per-key objects.

The MCP client keeps one circuit breaker (and one latency histogram) per
tool.  A server may list ten thousand tools, or a caller may invent tool
names; either way memory must stay bounded.  The registry keeps at most
``max_size`` entries and evicts the one used least recently.  An evicted
breaker that a call still holds keeps working for that call; the next call
for the key simply starts with a fresh one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, final

import attrs

from ._config import ConfigurationError


K = TypeVar("K")
V = TypeVar("V")


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class BoundedRegistry(Generic[K, V]):
    """
    At most *max_size* values, made on demand by *factory(key)*.

    Args:
        factory: Makes the value for a key seen for the first time (or
            again after its eviction).
        max_size: The most entries kept at once (at least 1).

    .. versionadded:: 0.1.0
    """

    factory: Callable[[K], V]
    max_size: int = attrs.field(default=1000, kw_only=True)
    _entries: OrderedDict[K, V] = attrs.field(init=False, factory=OrderedDict)
    _evictions: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        size: object = self.max_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(
                f"BoundedRegistry.max_size must be an integer >= 1, "
                f"got {size!r}"
            )

    def __repr__(self) -> str:
        return (
            f"<BoundedRegistry {len(self._entries)}/{self.max_size} "
            f"entries, {self._evictions} evicted>"
        )

    def get(self, key: K) -> V:
        """The value for *key*, made (and maybe evicting another) if new."""
        entries = self._entries
        try:
            value = entries[key]
        except KeyError:
            value = entries[key] = self.factory(key)
            if len(entries) > self.max_size:
                entries.popitem(last=False)
                self._evictions += 1
        else:
            entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value for *key* if present, without making or touching it."""
        return self._entries.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(tuple(self._entries))

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the entries, least recently used first."""
        return list(self._entries.items())

    @property
    def evictions(self) -> int:
        """How many entries were evicted to stay within ``max_size``."""
        return self._evictions

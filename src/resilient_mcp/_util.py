"""Small helpers with no better home."""

from __future__ import annotations

from typing import Any


def fixup_module_metadata(module_name: str, namespace: dict[str, Any]) -> None:
    """
    Make re-exported names claim the public module as their home.

    Tracebacks and docs then show ``resilient_mcp.CircuitBreakerError``
    instead of ``resilient_mcp._errors.CircuitBreakerError`` (after
    trio's ``_util.fixup_module_metadata``).
    """
    seen: set[int] = set()

    def fix_one(qualname: str, name: str, obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        mod = getattr(obj, "__module__", None)
        if mod is not None and mod.startswith(module_name + "._"):
            obj.__module__ = module_name
            if hasattr(obj, "__name__") and "." not in obj.__name__:
                obj.__name__ = name
                obj.__qualname__ = qualname
            if isinstance(obj, type):
                for attr_name, attr_value in obj.__dict__.items():
                    fix_one(f"{qualname}.{attr_name}", attr_name, attr_value)

    for name in namespace.get("__all__", ()):
        if name.startswith("_") or name not in namespace:
            continue  # private, or loaded lazily (fixed up then)
        fix_one(name, name, namespace[name])

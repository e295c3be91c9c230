"""
The one private name of OpenTelemetry we read: its global tracer provider.

:func:`~resilient_mcp.instrumentation.call_tracer` runs on every pipeline
call and must notice a tracer provider set at any time.  The public
:func:`opentelemetry.trace.get_tracer_provider` answers that, but while no
provider is set it looks up ``OTEL_PYTHON_TRACER_PROVIDER`` in
``os.environ`` on every call: 1.3 microseconds, ten times the whole cached
check, and about a third of a whole pipeline call without a timeout (3.7
microseconds in docs/performance.md).  OpenTelemetry offers no public way
to learn cheaply that the provider changed, so the cache is keyed on the
module global that ``set_tracer_provider`` writes,
``opentelemetry.trace._TRACER_PROVIDER``.

What we rely on, pinned by ``tests/test_instrumentation_otel.py``
(``test_the_private_global_we_read``): the global is ``None`` until a
provider is set, and then *is* the provider that ``get_tracer_provider``
returns.  If a release renames it, :data:`PROVIDER_GLOBAL` is missing and
every call takes the public path: slower, still right.  If a release kept
the name but stopped using it, tracing set up later would go unnoticed:
that is what the test and the ``opentelemetry-api<2`` bound guard against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final


if TYPE_CHECKING:
    from types import ModuleType


PROVIDER_GLOBAL: Final = "_TRACER_PROVIDER"
"""The name of the global provider in ``opentelemetry.trace``."""


def trace_globals(module: ModuleType) -> Mapping[str, object]:
    """
    The globals of the ``opentelemetry.trace`` module.

    A lookup of :data:`PROVIDER_GLOBAL` in them costs one dictionary
    lookup, less than ``getattr``.
    """
    return vars(module)

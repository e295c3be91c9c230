"""
Chaos engineering for code built on resilient_mcp: inject faults, replay.

Three tools, one vocabulary of faults (:class:`Latency`, :class:`Error`,
:class:`Hang`, :class:`Drop`, :class:`Corrupt`, :class:`Reorder`), decided
by a seeded :class:`FaultInjector`:

* :meth:`FaultInjector.wrap` around any async callable;
* :class:`ChaosTransport` between an MCP client and its transport
  (in-process, stdio or streamable HTTP), which can also spoil and
  reorder the server's answers;
* :func:`open_chaos_proxy`, a TCP proxy that can black-hole, reset and
  cut connections to a real server.

::

    from resilient_mcp.testing.chaos import (
        ChaosTransport, Error, FaultInjector,
    )

    injector = FaultInjector([Error(rate=0.8)], seed=1234)
    async with ResilientMCPClient(ChaosTransport(server, injector)) as client:
        ...
    print(injector.metrics())   # the seed is there, to replay the run

This module imports the MCP SDK; :mod:`resilient_mcp.testing` does not.
"""

from __future__ import annotations

from ._chaos import ChaosMetrics, Decision, FaultInjector
from ._chaos_delays import (
    DelayDistribution,
    ExponentialDelay,
    FixedDelay,
    LognormalDelay,
    UniformDelay,
)
from ._chaos_faults import (
    DEFAULT_MAX_HOLD,
    DEFAULT_OVERSIZED_BYTES,
    ChaosError,
    Corrupt,
    Corruption,
    Drop,
    DroppedConnectionError,
    Error,
    Fault,
    Hang,
    Latency,
    Reorder,
    Strike,
    fault_name,
)
from ._chaos_proxy import ChaosProxy, ProxyMode, open_chaos_proxy
from ._chaos_transport import (
    HANDSHAKE_METHODS,
    PADDING_KEY,
    UNEXPECTED_KEY,
    ChaosTransport,
)


__all__ = [
    "DEFAULT_MAX_HOLD",
    "DEFAULT_OVERSIZED_BYTES",
    "HANDSHAKE_METHODS",
    "PADDING_KEY",
    "UNEXPECTED_KEY",
    "ChaosError",
    "ChaosMetrics",
    "ChaosProxy",
    "ChaosTransport",
    "Corrupt",
    "Corruption",
    "Decision",
    "DelayDistribution",
    "Drop",
    "DroppedConnectionError",
    "Error",
    "ExponentialDelay",
    "Fault",
    "FaultInjector",
    "FixedDelay",
    "Hang",
    "Latency",
    "LognormalDelay",
    "ProxyMode",
    "Reorder",
    "Strike",
    "UniformDelay",
    "fault_name",
    "open_chaos_proxy",
]

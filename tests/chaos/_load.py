"""
The mixed-fault workloads behind the load test and the soak run.

Not a test module.  Two workloads, one set of books:

* :func:`build_in_process`: the in-process flaky server, called through
  the SDK's direct dispatcher (the fastest path, so that 10,000 calls fit
  the default run), its faults injected inside the server: the flaky
  tool's JSON-RPC errors, ``chaotic`` tools (one safe to retry, one not)
  whose bodies go through a :class:`FaultInjector` (latency from a
  distribution, errors, hangs, dropped connections), and periodic
  outages in which every tool call fails;
* :func:`build_over_transport`: the same server behind a
  :class:`ChaosTransport` injecting every transport fault (garbled,
  misaddressed, mistyped, oversized and reordered answers, dropped
  connections), for the soak run.

Both check the same books: every call counted once, by the callers, by the
client's outcome counters and by its latency histograms.
"""

from __future__ import annotations

import gc
import random
import tracemalloc

from collections import Counter
from typing import Any, Final

import attrs
import trio

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from resilient_mcp import (
    BulkheadConfig,
    BulkheadError,
    CallTimeout,
    CircuitBreakerConfig,
    CircuitBreakerError,
    InvalidResponseError,
    NotSentError,
    Outcome,
    PermanentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    ServerError,
    SessionLostError,
)
from resilient_mcp.testing._flaky_app import SAFE
from resilient_mcp.testing.chaos import (
    ChaosTransport,
    Corrupt,
    Corruption,
    Drop,
    Error,
    ExponentialDelay,
    FaultInjector,
    Hang,
    Latency,
    Reorder,
)
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


SEED: Final = 6  # the injectors' and the server's seed
WORKERS: Final = 24  # concurrent callers (the bulkhead holds 16 + 16)
THINK: Final = 0.02  # mean seconds a caller waits between two calls
TIMEOUT: Final = 2.0  # seconds per attempt
SETTLE: Final = 10.0  # seconds after which every deadline of a call passed
OUTAGE_EVERY: Final = 5.0  # seconds between two outages
OUTAGE_LENGTH: Final = 1.0  # seconds an outage lasts
TOOLS: Final = ("echo", "flaky", "chaotic", "add", "chaotic_unsafe")
"""The call mix: safe, safe but failing, chaotic (safe), unsafe, chaotic
and unsafe (its faults reach the caller)."""

EXPECTED_ERRORS: Final = (
    BulkheadError,
    CallTimeout,
    CircuitBreakerError,
    InvalidResponseError,
    NotSentError,
    PermanentError,
    ServerError,
    SessionLostError,
)
"""What a call of the workloads may fail with; anything else is a bug."""

OUTCOME_OF: Final = {
    "returned": Outcome.SUCCESS,
    "CircuitBreakerError": Outcome.CIRCUIT_OPEN,
    "BulkheadError": Outcome.BULKHEAD_FULL,
    "CallTimeout": Outcome.TIMEOUT,
}
"""The client's outcome for what a caller saw, where it is one to one."""


def server_faults() -> list[Any]:
    """What the ``chaotic`` tool suffers inside the server."""
    return [
        Latency(delay=ExponentialDelay(mean=0.05, cap=1.0), rate=0.5),
        Error(rate=0.03, error=MCPError(INTERNAL_ERROR, "chaos")),
        Hang(rate=0.003),
        Drop(rate=0.01),
    ]


def transport_faults() -> list[Any]:
    """Every fault a transport can suffer, at modest rates."""
    return [
        Latency(delay=ExponentialDelay(mean=0.05, cap=1.0), rate=0.5),
        Error(rate=0.02),
        Hang(rate=0.003),
        Corrupt(rate=0.003, kind=Corruption.GARBLED_JSON),
        Corrupt(rate=0.003, kind=Corruption.UNKNOWN_ID),
        Corrupt(rate=0.003, kind=Corruption.SCHEMA_MISMATCH),
        Corrupt(rate=0.003, kind=Corruption.OUTPUT_SCHEMA_MISMATCH),
        Corrupt(rate=0.003, kind=Corruption.OVERSIZED, size=10_000),
        Reorder(rate=0.02, max_hold=0.2),
        Drop(rate=0.0005),
    ]


def client_config(threshold: float = 0.2) -> ResilientClientConfig:
    """
    Every policy on, tuned so that each of them acts now and then.

    Args:
        threshold: The server breaker's failure rate threshold: above the
            background failure rate of the workload, below an outage's.
    """
    return ResilientClientConfig(
        circuit_breaker=CircuitBreakerConfig(
            failure_rate_threshold=threshold,
            minimum_calls=20,
            monitoring_window=2,
            recovery_timeout=0.25,
            success_threshold=2,
        ),
        tool_circuit_breaker=CircuitBreakerConfig(
            failure_rate_threshold=0.5,
            minimum_calls=20,
            monitoring_window=5,
            recovery_timeout=1,
        ),
        retry=RetryConfig(max_attempts=3, initial_delay=0.05, max_delay=0.5),
        bulkheads={
            "tools": BulkheadConfig(
                max_concurrent_requests=16,
                queue_size=16,
                request_timeout=5.0,
            )
        },
        timeout=TIMEOUT,
    )


@attrs.define
class Outages:
    """Every ``OUTAGE_EVERY`` seconds, ``OUTAGE_LENGTH`` seconds of failure."""

    active: bool = False
    count: int = 0

    async def run(self) -> None:
        """Switch outages on and off until cancelled."""
        while True:
            await trio.sleep(OUTAGE_EVERY)
            self.active = True
            self.count += 1
            await trio.sleep(OUTAGE_LENGTH)
            self.active = False


@attrs.define
class Workload:
    """A client, its server's state and the injector of the faults."""

    client: ResilientMCPClient
    state: FlakyState
    injector: FaultInjector
    outages: Outages
    chaotic_runs: Counter[str] = attrs.field(factory=Counter)


def _server(seed: int) -> tuple[Any, FlakyState, Outages]:
    state = FlakyState(
        FlakyServerConfig(allow_crash=False, seed=seed, failure_rate=0.05)
    )
    server = create_flaky_server(state=state)
    outages = Outages()

    async def outage(ctx: Any, call_next: Any) -> Any:
        if outages.active and ctx.method == "tools/call":
            raise MCPError(INTERNAL_ERROR, "outage")
        return await call_next(ctx)

    server.middleware.append(outage)
    return server, state, outages


def build_in_process(*, seed: int = SEED) -> Workload:
    """The in-process server, its ``chaotic`` tools faulty (see module)."""
    server, state, outages = _server(seed)
    injector = FaultInjector(server_faults(), seed=seed)
    runs: Counter[str] = Counter()

    async def chaos(text: str) -> str:
        runs["chaotic"] += 1

        async def body() -> str:
            return text

        return await injector.call(body)

    @server.tool(annotations=SAFE)
    async def chaotic(text: str) -> str:
        """Return the text, after whatever the injector decides."""
        return await chaos(text)

    @server.tool()
    async def chaotic_unsafe(text: str) -> str:
        """The same, unannotated: a client must not retry it."""
        return await chaos(text)

    client = ResilientMCPClient(server, config=client_config())
    return Workload(client, state, injector, outages, runs)


def build_over_transport(*, seed: int = SEED) -> Workload:
    """The in-process server behind a chaotic transport (see module)."""
    server, state, outages = _server(seed)

    @server.tool(annotations=SAFE)
    async def chaotic(text: str) -> str:
        """Return the text (the faults are on the transport)."""
        return text

    @server.tool()
    async def chaotic_unsafe(text: str) -> str:
        """The same, unannotated: a client must not retry it."""
        return text

    injector = FaultInjector(transport_faults(), seed=seed)
    chaos = ChaosTransport(server, injector, methods={"tools/call"})
    client = ResilientMCPClient(chaos, config=client_config(threshold=0.4))
    return Workload(client, state, injector, outages)


@attrs.define
class Books:
    """What the callers saw, for the accounting checks."""

    calls: int = 0
    outcomes: Counter[str] = attrs.field(factory=Counter)
    unexpected: list[BaseException] = attrs.field(factory=list)

    def settled(self) -> int:
        """Calls that ended, by any outcome."""
        return sum(self.outcomes.values())

    def failed(self) -> int:
        """Calls that raised."""
        return self.settled() - self.outcomes["returned"]


async def one_call(client: ResilientMCPClient, books: Books, n: int) -> None:
    """Make call number *n* of the mix and count how it ended."""
    tool = TOOLS[n % len(TOOLS)]
    arguments: dict[str, Any] = (
        {"a": n, "b": 1} if tool == "add" else {"text": str(n)}
    )
    books.calls += 1
    try:
        await client.call_tool(tool, arguments)
    except EXPECTED_ERRORS as exc:
        books.outcomes[type(exc).__name__] += 1
    except Exception as exc:  # counted, and reported by the checks
        books.outcomes["unexpected"] += 1
        books.unexpected.append(exc)
    else:
        books.outcomes["returned"] += 1


async def run_calls(
    client: ResilientMCPClient,
    books: Books,
    calls: int,
    *,
    start: int = 0,
    until: float | None = None,
    outages: Outages | None = None,
) -> None:
    """
    Make *calls* calls (fewer if *until* passes first) from ``WORKERS``.

    Each caller thinks for an exponentially distributed while (seeded)
    between its calls, so that the load comes in waves.  With *until* (an
    event-loop time), no call starts after it.  With *outages*, they come
    and go while the calls are made.
    """
    numbers = iter(range(start, start + calls))

    async def worker(rng: random.Random) -> None:
        for n in numbers:  # shared: each number is taken once
            await trio.sleep(rng.expovariate(1 / THINK))
            if until is not None and trio.current_time() >= until:
                return
            await one_call(client, books, n)

    async with trio.open_nursery() as outer:
        if outages is not None:
            outer.start_soon(outages.run)
        async with trio.open_nursery() as nursery:
            for i in range(WORKERS):
                nursery.start_soon(worker, random.Random(start + i))
        outer.cancel_scope.cancel()  # the workers are done: so are outages
    if outages is not None:
        outages.active = False


def memory_now() -> int:
    """Bytes tracemalloc traces now, after a full garbage collection."""
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    return current


def histogram_memory() -> int:
    """
    Bytes tracemalloc traces to the histograms' own code.

    Histograms start sparse and grow a bucket at a time as new latencies
    come, until they are promoted to their dense array (allocated by
    hdrh): legitimate growth, bounded by the keys, not by the calls.  The
    load test reports it apart from the rest.
    """
    patterns = ("*/resilient_mcp/_metrics/*", "*/hdrh/*")  # dense arrays
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(inclusive=True, filename_pattern=pattern)
            for pattern in patterns
        ]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def traced_memory() -> int:
    """
    Bytes tracemalloc traces once the run has settled.

    Trio keeps a cancel scope in its deadline heap until the deadline
    passes, even after the scope exited (it prunes lazily), so the run's
    last few hundred timeouts would read as retained memory.  Sleeping
    ``SETTLE`` seconds lets every deadline the calls set pass.
    """
    await trio.sleep(SETTLE)
    return memory_now()

"""
The watchlist: which resilience objects the exporters read, and how.

Exporters never sit on the hot path.  A pipeline, breaker, bulkhead or
retry manager only bumps its own counters; the Prometheus collector, the
OpenTelemetry callbacks and the health monitor read :meth:`metrics`
snapshots when *they* run, through a :class:`Watchlist`.

The objects are not thread-safe, and some exporters run in threads of
their own, so :meth:`Watchlist.read` takes its snapshot in the event
loop's thread (handing the read to the loop when called elsewhere): the
snapshots, plus a copy of each latency histogram, whose buckets and
percentiles the exporter computes off the loop.
"""

from __future__ import annotations

import logging
import weakref

from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.from_thread
import attrs

from .._metrics import LatencyHistogram, LatencyRecorder
from ._loop import (
    LoopFinishedError,
    LoopHandle,
    call_in_loop,
    this_threads_loop,
)


if TYPE_CHECKING:
    from .._breaker import CircuitBreaker, CircuitBreakerMetrics
    from .._bulkhead import Bulkhead, BulkheadMetrics
    from .._hedging import Hedging
    from .._hedging_config import HedgingMetrics
    from .._outcomes import PipelineMetrics
    from .._pipeline import ResiliencePipeline
    from .._rate_limiter import RateLimiter, RateLimiterMetrics
    from .._retry import RetryManager, RetryMetrics
    from .._retry_budget import RetryBudget, RetryBudgetMetrics
    from .._throttling import AdaptiveThrottle, ThrottlingMetrics


logger: Final = logging.getLogger("resilient_mcp")

READ_TIMEOUT: Final = 5.0  # seconds a foreign thread waits for the loop


@attrs.frozen(kw_only=True)
class Reading:
    """
    What a :class:`Watchlist` saw at one moment, taken in the loop thread.

    Each policy appears once, however many watched pipelines share it.
    Every tuple is sorted by name.
    """

    pipelines: tuple[tuple[ResiliencePipeline, PipelineMetrics], ...]
    """Watched pipelines and their snapshots."""
    breakers: tuple[tuple[CircuitBreaker, CircuitBreakerMetrics], ...]
    """Breakers, watched directly or through a pipeline."""
    bulkheads: tuple[tuple[Bulkhead, BulkheadMetrics], ...]
    """Bulkheads, watched directly or through a pipeline."""
    retries: tuple[tuple[RetryManager, RetryMetrics], ...]
    """Retry managers, watched directly or through a pipeline."""
    latencies: tuple[tuple[str, LatencyHistogram], ...]
    """(operation, a private copy of its latency histogram), each once."""
    bulkhead_waits: tuple[tuple[str, LatencyHistogram], ...] = ()
    """(bulkhead name, a private copy of its wait histogram)."""
    rate_limiters: tuple[tuple[RateLimiter, RateLimiterMetrics], ...] = ()
    """Rate limiters, watched directly or through a pipeline, each once."""
    tools: tuple[tuple[str, LatencyHistogram], ...] = ()
    """(tool name, a private copy of its latency histogram), for the
    tools of watched clients that have a histogram now (the client's
    ``max_tracked_tools``, least recently used evicted)."""
    retry_budgets: tuple[tuple[RetryBudget, RetryBudgetMetrics], ...] = ()
    """Retry budgets of watched pipelines, each once."""
    throttles: tuple[tuple[AdaptiveThrottle, ThrottlingMetrics], ...] = ()
    """Adaptive throttles, watched directly or through a pipeline."""
    hedgings: tuple[tuple[Hedging, HedgingMetrics], ...] = ()
    """Hedging policies of watched pipelines, each once."""


LatencySource = LatencyHistogram | LatencyRecorder


@final
@attrs.define(eq=False, repr=False)
class Watchlist:
    """
    The resilience objects that metrics exporters and health checks read.

    Think of it as the list of gauges on a control-room wall: putting an
    object on the list costs the object nothing, and whoever walks past
    (a Prometheus scrape, an OpenTelemetry export, the health monitor)
    reads every gauge on it at that moment.  One watchlist can feed all
    three at once.

    >>> from resilient_mcp import ResiliencePipeline
    >>> pipeline = ResiliencePipeline()
    >>> watchlist = Watchlist()
    >>> watchlist.watch_pipeline(pipeline)  # its breaker, bulkhead, retry too
    >>> collector = ResilienceCollector(watchlist)  # for a Prometheus registry

    Objects are held weakly: watching an object does not keep it alive,
    and an object that is garbage-collected drops off the list.  Names are
    metric labels, so they must be unique per kind: two different circuit
    breakers both named ``"default"`` would be indistinguishable, and
    watching the second one raises :class:`ValueError`.

    Reads happen in the event loop's thread.  The watchlist remembers the
    loop it was created or last given an object in, and a read from any
    other thread is handed to that loop (see :meth:`read`).

    .. versionadded:: 0.1.0
    """

    _pipelines: weakref.WeakKeyDictionary[ResiliencePipeline, None] = (
        attrs.field(init=False, factory=weakref.WeakKeyDictionary)
    )
    _breakers: weakref.WeakKeyDictionary[CircuitBreaker, None] = attrs.field(
        init=False, factory=weakref.WeakKeyDictionary
    )
    _bulkheads: weakref.WeakKeyDictionary[Bulkhead, None] = attrs.field(
        init=False, factory=weakref.WeakKeyDictionary
    )
    _retries: weakref.WeakKeyDictionary[RetryManager, None] = attrs.field(
        init=False, factory=weakref.WeakKeyDictionary
    )
    _limiters: weakref.WeakKeyDictionary[RateLimiter, None] = attrs.field(
        init=False, factory=weakref.WeakKeyDictionary
    )
    _throttles: weakref.WeakKeyDictionary[AdaptiveThrottle, None] = (
        attrs.field(init=False, factory=weakref.WeakKeyDictionary)
    )
    _latencies: weakref.WeakKeyDictionary[LatencySource, str | None] = (
        attrs.field(init=False, factory=weakref.WeakKeyDictionary)
    )
    _tool_recorders: weakref.WeakKeyDictionary[LatencyRecorder, None] = (
        attrs.field(init=False, factory=weakref.WeakKeyDictionary)
    )
    _loop: LoopHandle | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self._remember_loop()

    def __repr__(self) -> str:
        return (
            f"<Watchlist {len(self._pipelines)} pipelines, "
            f"{len(self._breakers)} breakers, {len(self._bulkheads)} "
            f"bulkheads, {len(self._retries)} retry managers, "
            f"{len(self._latencies)} latency sources>"
        )

    # -- registration ------------------------------------------------------

    def watch_pipeline(self, pipeline: ResiliencePipeline) -> None:
        """
        Watch a pipeline, and through it its policies.

        Its breaker, bulkhead, retry manager, retry budget and hedging
        policy are watched too (each once, however many pipelines share it).

        The pipeline's name is its series' ``operation`` label; its
        latency (with ``recorder=``) is reported under its ``record_key``.

        Raises:
            ValueError: Another watched pipeline has the same name, or one
                of its policies has the name of a different policy of the
                same kind that is watched already.
        """
        _check_unique("pipeline", pipeline, list(self._pipelines))
        for kind, part, known in (
            ("circuit breaker", pipeline.circuit_breaker, self._all_breakers),
            ("bulkhead", pipeline.bulkhead, self._all_bulkheads),
            ("retry manager", pipeline.retry, self._all_retries),
            ("retry budget", pipeline.retry_budget, self._all_budgets),
            ("hedging policy", pipeline.hedging, self._all_hedgings),
            ("rate limiter", pipeline.rate_limit, self._all_limiters),
            ("throttle", pipeline.throttling, self._all_throttles),
        ):
            if part is not None:
                _check_unique(kind, part, known())
        self._pipelines[pipeline] = None
        self._remember_loop()

    def watch_client(self, client: Any) -> None:
        """
        Watch a :class:`~resilient_mcp.ResilientMCPClient`.

        Every MCP method's pipeline is watched (its name is the
        ``operation`` label), and through them the server's breaker, the
        bulkheads per operation kind and the retry manager; and the
        latency of each tool the client tracks (its ``tool`` label), at
        most ``max_tracked_tools`` of them, least recently used evicted.

        Raises:
            ValueError: A name clashes with an object watched already (two
                clients need different names).
        """
        for pipeline in client.pipelines():
            self.watch_pipeline(pipeline)
        self._tool_recorders[client.tool_latency_recorder] = None

    def watch_circuit_breaker(self, breaker: CircuitBreaker) -> None:
        """
        Watch a circuit breaker; its name is the ``breaker`` label.

        Raises:
            ValueError: A different watched breaker has the same name.
        """
        _check_unique("circuit breaker", breaker, self._all_breakers())
        self._breakers[breaker] = None
        self._remember_loop()

    def watch_bulkhead(self, bulkhead: Bulkhead) -> None:
        """
        Watch a bulkhead; its name is the ``bulkhead`` label.

        Raises:
            ValueError: A different watched bulkhead has the same name.
        """
        _check_unique("bulkhead", bulkhead, self._all_bulkheads())
        self._bulkheads[bulkhead] = None
        self._remember_loop()

    def watch_retry(self, retry: RetryManager) -> None:
        """
        Watch a retry manager; its name is the ``retry`` label.

        Raises:
            ValueError: A different watched retry manager has the same
                name.
        """
        _check_unique("retry manager", retry, self._all_retries())
        self._retries[retry] = None
        self._remember_loop()

    def watch_rate_limiter(self, limiter: RateLimiter) -> None:
        """
        Watch a rate limiter; its name is the ``rate_limiter`` label.

        Raises:
            ValueError: A different watched rate limiter has the same name.

        .. versionadded:: 0.1.0
        """
        _check_unique("rate limiter", limiter, self._all_limiters())
        self._limiters[limiter] = None

    def watch_throttle(self, throttle: AdaptiveThrottle) -> None:
        """
        Watch an adaptive throttle; its name is the ``throttle`` label.

        Raises:
            ValueError: A different watched throttle has the same name.
        """
        _check_unique("throttle", throttle, self._all_throttles())
        self._throttles[throttle] = None
        self._remember_loop()

    def watch_latency(
        self, source: LatencySource, *, operation: str | None = None
    ) -> None:
        """
        Watch the latencies of one operation, or of many.

        Args:
            source: A :class:`~resilient_mcp.LatencyHistogram` of one
                operation, or a ``LatencyRecorder`` whose keys are
                operations (each key is reported as an ``operation``).
            operation: The operation a histogram measures; required for a
                histogram, and must be ``None`` for a recorder.

        Raises:
            ValueError: *operation* is missing for a histogram, given for a
                recorder, or already used by another watched histogram.
            TypeError: *source* is neither.

        When a recorder's key equals an operation reported by a source
        watched earlier, the earlier source wins.
        """
        if isinstance(source, LatencyRecorder):
            if operation is not None:
                raise ValueError(
                    "a LatencyRecorder reports its keys as operations; "
                    "pass operation only with a LatencyHistogram"
                )
        elif isinstance(source, LatencyHistogram):
            if not operation:
                raise ValueError(
                    "watching a LatencyHistogram needs operation=..., the "
                    "name its latencies are reported under"
                )
            for other, name in list(self._latencies.items()):
                if name == operation and other is not source:
                    raise ValueError(
                        f"operation {operation!r} already has a watched "
                        "latency histogram"
                    )
        else:
            raise TypeError(
                "expected a LatencyHistogram or a LatencyRecorder, got "
                f"{type(source).__name__}"
            )
        self._latencies[source] = operation
        self._remember_loop()

    def unwatch(self, obj: object) -> None:
        """
        Stop watching *obj*; nothing happens if it was not watched.

        Unwatching a pipeline also drops its policies, unless they are
        watched directly or through another pipeline.
        """
        for table in (
            self._pipelines,
            self._breakers,
            self._bulkheads,
            self._retries,
            self._limiters,
            self._throttles,
            self._latencies,
            self._tool_recorders,
        ):
            table.pop(obj, None)  # type: ignore[call-overload]

    # -- reading -----------------------------------------------------------

    def read(self, *, timeout: float = READ_TIMEOUT) -> Reading:
        """
        Take a consistent :class:`Reading` of everything watched.

        In the event loop's thread this reads directly.  From an AnyIO
        worker thread it hops to that worker's loop.  From any other
        thread it hands the read to the loop the watchlist remembers and
        waits for it; once that loop has finished, nothing changes the
        objects any more and they are read directly.

        Args:
            timeout: Seconds another thread waits for the loop.

        Raises:
            TimeoutError: The event loop did not run the read in time (it
                is blocked, perhaps waiting for this very thread).
        """
        if this_threads_loop() is not None:
            return self._read_here()
        try:
            return anyio.from_thread.run_sync(self._read_here)
        except anyio.NoEventLoopError:
            pass  # not an AnyIO worker thread
        loop = self._loop
        if loop is not None:
            try:
                return call_in_loop(loop, self._read_here, timeout)
            except LoopFinishedError:
                pass
        return self._read_here()

    def _read_here(self) -> Reading:
        pipelines = sorted(
            ((p, p.metrics()) for p in list(self._pipelines)),
            key=lambda item: item[1].name,
        )
        breakers: dict[int, tuple[Any, Any]] = {}
        bulkheads: dict[int, tuple[Any, Any]] = {}
        retries: dict[int, tuple[Any, Any]] = {}
        budgets: dict[int, tuple[Any, Any]] = {}
        limiters: dict[int, tuple[Any, Any]] = {}
        throttles: dict[int, tuple[Any, Any]] = {}
        hedgings: dict[int, tuple[Any, Any]] = {}
        # A pipeline's snapshot already holds its policies' snapshots.
        for pipeline, metrics in pipelines:
            _add(budgets, pipeline.retry_budget, metrics.retry_budget)
            _add(breakers, pipeline.circuit_breaker, metrics.circuit_breaker)
            _add(bulkheads, pipeline.bulkhead, metrics.bulkhead)
            _add(retries, pipeline.retry, metrics.retry)
            _add(limiters, pipeline.rate_limit, metrics.rate_limiter)
            _add(throttles, pipeline.throttling, metrics.throttling)
            _add(hedgings, pipeline.hedging, metrics.hedging)
        for table, watched in (
            (breakers, list(self._breakers)),
            (bulkheads, list(self._bulkheads)),
            (retries, list(self._retries)),
            (limiters, list(self._limiters)),
            (throttles, list(self._throttles)),
        ):
            for obj in watched:
                if id(obj) not in table:
                    table[id(obj)] = (obj, obj.metrics())
        by_name = _by_name(bulkheads)
        tools: dict[str, LatencyHistogram] = {}
        for recorder in list(self._tool_recorders):
            for key in recorder.keys():  # noqa: SIM118 - not a dict
                tools.setdefault(key, recorder.histogram(key))
        return Reading(
            pipelines=tuple(pipelines),
            breakers=_by_name(breakers),
            bulkheads=by_name,
            retries=_by_name(retries),
            rate_limiters=_by_name(limiters),
            latencies=self._latencies_of(pipelines),
            bulkhead_waits=tuple(
                (m.name, b.wait_histogram()) for b, m in by_name
            ),
            tools=tuple(sorted(tools.items())),
            retry_budgets=_by_name(budgets),
            throttles=_by_name(throttles),
            hedgings=_by_name(hedgings),
        )

    def _latencies_of(
        self, pipelines: list[tuple[ResiliencePipeline, PipelineMetrics]]
    ) -> tuple[tuple[str, LatencyHistogram], ...]:
        latencies: dict[str, LatencyHistogram] = {}
        for pipeline, _ in pipelines:
            recorder = pipeline.recorder
            if recorder is not None:
                key = pipeline.record_key
                key = pipeline.name if key is None else key
                if key not in latencies:
                    latencies[key] = _histogram_or_empty(recorder, key)
        for source, operation in list(self._latencies.items()):
            if isinstance(source, LatencyRecorder):
                for key in source.keys():  # noqa: SIM118 - not a dict
                    if key not in latencies:
                        latencies[key] = source.histogram(key)
            elif operation is not None and operation not in latencies:
                latencies[operation] = source.copy()
        return tuple(sorted(latencies.items()))

    # -- internals ---------------------------------------------------------

    def _all_breakers(self) -> list[Any]:
        found: list[Any] = list(self._breakers)
        found += [p.circuit_breaker for p in list(self._pipelines)]
        return found

    def _all_bulkheads(self) -> list[Any]:
        found: list[Any] = list(self._bulkheads)
        found += [p.bulkhead for p in list(self._pipelines)]
        return found

    def _all_retries(self) -> list[Any]:
        found: list[Any] = list(self._retries)
        found += [p.retry for p in list(self._pipelines)]
        return found

    def _all_budgets(self) -> list[Any]:
        return [p.retry_budget for p in list(self._pipelines)]

    def _all_hedgings(self) -> list[Any]:
        return [p.hedging for p in list(self._pipelines)]

    def _all_limiters(self) -> list[Any]:
        found: list[Any] = list(self._limiters)
        found += [p.rate_limit for p in list(self._pipelines)]
        return found

    def _all_throttles(self) -> list[Any]:
        found: list[Any] = list(self._throttles)
        found += [p.throttling for p in list(self._pipelines)]
        return found

    def _remember_loop(self) -> None:
        loop = this_threads_loop()
        if loop is not None:
            self._loop = loop


def _histogram_or_empty(recorder: LatencyRecorder, key: str) -> Any:
    try:
        return recorder.histogram(key)
    except KeyError:  # nothing recorded yet: export zeros, not nothing
        return LatencyHistogram()


def _add(table: dict[int, tuple[Any, Any]], obj: Any, metrics: Any) -> None:
    if obj is not None and metrics is not None:
        table.setdefault(id(obj), (obj, metrics))


def _by_name(table: dict[int, tuple[Any, Any]]) -> tuple[Any, ...]:
    return tuple(sorted(table.values(), key=lambda item: item[1].name))


def _check_unique(kind: str, new: Any, known: list[Any]) -> None:
    for other in known:
        if other is not None and other is not new and other.name == new.name:
            raise ValueError(
                f"a different {kind} named {new.name!r} is watched already; "
                "names are metric labels, so give each one its own name"
            )

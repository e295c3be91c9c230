"""The health monitor: per-interval success rate, trips and rejections."""

from __future__ import annotations

import contextlib
import functools
import logging

import anyio
import pytest

from _scenario import Boom, Script, sleep_then
from resilient_mcp import (
    BulkheadConfig,
    BulkheadError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    ResiliencePipeline,
)
from resilient_mcp.instrumentation import (
    HealthReport,
    Watchlist,
    log_health_report,
    run_health_monitor,
)


class TimedLines(logging.Handler):
    """Keeps (event-loop time, level, message) of every record."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's time, level and message."""
        self.lines.append(
            (anyio.current_time(), record.levelname, record.getMessage())
        )


@pytest.fixture
def health_log():
    """A logger of its own, recording when each line was logged."""
    logger = logging.getLogger("tests.health")
    handler = TimedLines()
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, handler.lines
    logger.removeHandler(handler)


def test_each_interval_reports_only_its_own_calls(run, health_log):
    """Every 30 s: the rate, trips and rejections of those 30 s alone."""
    logger, lines = health_log

    async def scenario():
        tools = ResiliencePipeline(
            name="tools",
            circuit_breaker=CircuitBreaker(
                CircuitBreakerConfig(
                    failure_threshold=2,
                    monitoring_window=10,
                    recovery_timeout=1000,
                ),
                name="server",
            ),
        )
        slots = ResiliencePipeline(
            name="slots",
            bulkhead=BulkheadConfig(
                name="slots",
                max_concurrent_requests=1,
                queue_size=0,
                request_timeout=None,
            ),
        )
        watchlist = Watchlist()
        watchlist.watch_pipeline(tools)
        watchlist.watch_pipeline(slots)

        async def call_slots():
            with contextlib.suppress(BulkheadError):
                await slots.call(sleep_then, 1)

        async with anyio.create_task_group() as tg:
            await tg.start(
                functools.partial(
                    run_health_monitor, watchlist, interval=30, logger=logger
                )
            )
            # [0, 30): 7 successes and 1 failure.
            for t in range(1, 8):
                await anyio.sleep_until(t)
                await tools.call(Script("ok"))
            with pytest.raises(Boom):
                await tools.call(Script(Boom("down")))
            # [30, 60): 10 successes, all well.
            await anyio.sleep_until(31)
            for _ in range(10):
                await tools.call(Script("ok"))
            # [60, 90): no calls at all.
            # [90, 120): the breaker trips and a full bulkhead rejects.
            await anyio.sleep_until(91)
            for _ in range(2):
                with pytest.raises(Boom):
                    await tools.call(Script(Boom("down")))
            with pytest.raises(CircuitBreakerError):
                await tools.call(Script("never runs"))
            await anyio.sleep_until(95)
            async with anyio.create_task_group() as calls:
                calls.start_soon(call_slots)
                calls.start_soon(call_slots)
            await anyio.sleep_until(125)
            tg.cancel_scope.cancel()

        # 1 success (the slots call that ran) and 4 failures in [90, 120).
        assert [
            (30.0, "WARNING", "Success rate below 95%: 87.50%"),
            (120.0, "WARNING", "Success rate below 95%: 20.00%"),
            (120.0, "WARNING", "Circuit breaker trips detected: 1"),
            (120.0, "WARNING", "Bulkhead rejections: 1"),
        ] == lines

    run(scenario)


def test_objects_watched_later_count_from_zero(run, health_log):
    """A pipeline watched mid-interval brings its calls into that interval."""
    logger, lines = health_log

    async def scenario():
        watchlist = Watchlist()
        pipeline = ResiliencePipeline(name="late")
        async with anyio.create_task_group() as tg:
            await tg.start(
                functools.partial(
                    run_health_monitor, watchlist, interval=30, logger=logger
                )
            )
            await anyio.sleep_until(10)
            await pipeline.call(Script("ok"))
            with pytest.raises(Boom):
                await pipeline.call(Script(Boom("down")))
            watchlist.watch_pipeline(pipeline)
            await anyio.sleep_until(61)
            tg.cancel_scope.cancel()

        assert [(30.0, "WARNING", "Success rate below 95%: 50.00%")] == lines

    run(scenario)


async def test_a_late_tick_does_not_bunch_up(autojump_clock, health_log):
    """After a stall, the next tick comes a full interval later."""
    logger, lines = health_log
    watchlist = Watchlist()
    pipeline = ResiliencePipeline(name="tools")
    watchlist.watch_pipeline(pipeline)

    async with anyio.create_task_group() as tg:
        await tg.start(
            functools.partial(
                run_health_monitor, watchlist, interval=30, logger=logger
            )
        )
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom("down")))
        autojump_clock.jump(100)  # the loop stalls past three ticks
        await anyio.sleep(1)
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom("down")))
        await anyio.sleep_until(155)
        tg.cancel_scope.cancel()

    assert [
        (100.0, "WARNING", "Success rate below 95%: 0.00%"),
        (130.0, "WARNING", "Success rate below 95%: 0.00%"),
    ] == lines


async def test_logs_on_the_resilient_mcp_logger_by_default(
    autojump_clock, caplog
):
    """Without a logger argument the lines go to the resilient_mcp logger."""
    watchlist = Watchlist()
    pipeline = ResiliencePipeline(name="tools")
    watchlist.watch_pipeline(pipeline)
    caplog.set_level(logging.WARNING, logger="resilient_mcp")

    async with anyio.create_task_group() as tg:
        await tg.start(run_health_monitor, watchlist)
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom("down")))
        await anyio.sleep(45)
        tg.cancel_scope.cancel()

    assert [("resilient_mcp", logging.WARNING)] == [
        (r.name, r.levelno) for r in caplog.records
    ]
    assert ["Success rate below 95%: 0.00%"] == caplog.messages
    assert 45.0 == anyio.current_time()


@pytest.mark.parametrize(
    ("threshold", "report", "expected"),
    [
        (0.999, (98, 2, 0, 0), ["Success rate below 99.9%: 98.00%"]),
        (1.0, (1, 1, 0, 0), ["Success rate below 100%: 50.00%"]),
        (0.95, (95, 5, 0, 0), []),
        (
            0.95,
            (0, 0, 2, 3),
            [
                "Circuit breaker trips detected: 2",
                "Bulkhead rejections: 3",
            ],
        ),
        (0.0, (0, 7, 0, 0), []),
    ],
)
def test_report_lines(caplog, threshold, report, expected):
    """The threshold is printed as a percentage; quiet reports log nothing."""
    caplog.set_level(logging.WARNING, logger="resilient_mcp")
    successes, failures, trips, rejections = report

    log_health_report(
        HealthReport(
            successful_requests=successes,
            failed_requests=failures,
            circuit_breaker_trips=trips,
            bulkhead_rejections=rejections,
        ),
        success_rate_threshold=threshold,
    )

    assert expected == caplog.messages


def test_no_finished_calls_means_no_success_rate():
    """No finished call means no rate at all, rather than 0% or 100%."""
    empty = HealthReport(
        successful_requests=0,
        failed_requests=0,
        circuit_breaker_trips=0,
        bulkhead_rejections=0,
    )

    assert empty.success_rate is None


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0},
        {"interval": float("inf")},
        {"interval": float("nan")},
        {"success_rate_threshold": 1.5},
        {"success_rate_threshold": -0.1},
    ],
)
async def test_rejects_bad_settings(options):
    """A non-positive interval or a threshold outside 0..1 is an error."""
    with pytest.raises(ValueError, match=r"interval|success_rate_threshold"):
        await run_health_monitor(Watchlist(), **options)

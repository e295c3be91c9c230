"""The bulkhead: concurrency cap, bounded queue, timeouts, no leaked slot."""

from __future__ import annotations

import functools

import anyio
import pytest
import trio
import trio.testing

from _scenario import Boom, boom, ok, sleep_then
from resilient_mcp import (
    Bulkhead,
    BulkheadConfig,
    BulkheadError,
    CallTimeout,
    ResiliencePipeline,
)
from resilient_mcp.testing import run_virtual, wait_all_tasks_blocked


class Gauge:
    """An operation that records how many copies of it run at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.peak = 0
        self.started: list[tuple[float, int]] = []

    async def __call__(self, index: int) -> int:
        self.started.append((anyio.current_time(), index))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await anyio.sleep(self.seconds)
        finally:
            self.running -= 1
        return index


def test_caps_concurrency_queues_and_rejects(run):
    """2 run, 5 wait, the rest are rejected at once with BulkheadError."""

    async def scenario():
        bulkhead = Bulkhead(
            BulkheadConfig(
                name="tools",
                max_concurrent_requests=2,
                queue_size=5,
                request_timeout=None,
            )
        )
        gauge = Gauge(1.0)
        done, rejected = [], []

        async def caller(i):
            try:
                done.append(await bulkhead.call(gauge, i))
            except BulkheadError as exc:
                rejected.append((i, exc, anyio.current_time()))

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(caller, i)
                await wait_all_tasks_blocked()

        assert 2 == gauge.peak
        assert list(range(7)) == sorted(done)
        assert [7, 8, 9] == [i for i, _, _ in rejected]
        assert all(e.resource_name == "tools" for _, e, _ in rejected)
        assert all(e.queue_full for _, e, _ in rejected)
        assert all(t == 0.0 for _, _, t in rejected)
        # Served in arrival order: two at t=0, 1, 2, then the seventh.
        by_time = {}
        for started, index in gauge.started:
            by_time.setdefault(started, set()).add(index)
        assert {0: {0, 1}, 1: {2, 3}, 2: {4, 5}, 3: {6}} == by_time
        assert 4.0 == anyio.current_time()
        metrics = bulkhead.metrics()
        assert 7 == metrics.completed_requests
        assert 3 == metrics.rejected_requests
        assert 0 == metrics.active_requests
        assert 0 == metrics.queued_requests

    run(scenario)


def test_wait_time_metrics(run):
    """Wait times are the time spent queued, averaged over admitted calls."""

    async def scenario():
        bulkhead = Bulkhead(
            BulkheadConfig(max_concurrent_requests=1, queue_size=3)
        )
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(bulkhead.call, Gauge(2.0), i)
                await wait_all_tasks_blocked()

        metrics = bulkhead.metrics()
        # Waits of 0, 2, 4 and 6 seconds.
        assert 3.0 == metrics.average_wait_time
        assert 6.0 == pytest.approx(metrics.max_wait_time, rel=1e-3)
        assert 6.0 == pytest.approx(metrics.p99_wait_time, rel=1e-3)
        assert 2.0 == pytest.approx(metrics.p50_wait_time, rel=1e-3)

    run(scenario)


def test_request_timeout_bounds_wait_plus_run(run):
    """request_timeout covers the time queued plus the time running."""

    async def scenario():
        bulkhead = Bulkhead(
            BulkheadConfig(
                name="b", max_concurrent_requests=1, request_timeout=5
            )
        )
        outcomes = {}

        async def caller(name, seconds):
            try:
                outcomes[name] = await bulkhead.call(sleep_then, seconds)
            except TimeoutError as exc:
                outcomes[name] = (type(exc).__name__, anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "first", 3)
            await wait_all_tasks_blocked()
            tg.start_soon(caller, "second", 3)  # waits 3, runs 2 of 3

        assert "done" == outcomes["first"]
        assert ("CallTimeout", 5.0) == outcomes["second"]
        metrics = bulkhead.metrics()
        assert 1 == metrics.timed_out_requests
        assert 2 == metrics.completed_requests

    run(scenario)


async def test_timeout_while_queued_frees_the_queue_place(autojump_clock):
    """A call that times out in the queue leaves it; nothing leaks."""
    bulkhead = Bulkhead(
        BulkheadConfig(
            max_concurrent_requests=1, queue_size=1, request_timeout=2
        )
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bulkhead.call, functools.partial(sleep_then, 1.5))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CallTimeout):
            # Queued at 0; the slot frees at 1.5; it runs 0.5 of 5 s.
            await bulkhead.call(functools.partial(sleep_then, 5))
        assert 2.0 == trio.current_time()

    metrics = bulkhead.metrics()
    assert 0 == metrics.active_requests
    assert 0 == metrics.queued_requests
    assert "ok" == await bulkhead.call(ok)


async def test_cancelled_while_queued_leaks_nothing(autojump_clock):
    """A caller cancelled in the queue frees its place and takes no slot."""
    bulkhead = Bulkhead(
        BulkheadConfig(
            max_concurrent_requests=1, queue_size=1, request_timeout=None
        )
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bulkhead.call, functools.partial(sleep_then, 10))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(1):
            await bulkhead.call(ok)
        await trio.testing.wait_all_tasks_blocked()

        metrics = bulkhead.metrics()
        assert 1 == metrics.active_requests
        assert 0 == metrics.queued_requests
        assert 1 == metrics.abandoned_requests
        # The queue place is free again: this one may wait.
        nursery.start_soon(bulkhead.call, ok)
        await trio.testing.wait_all_tasks_blocked()
        assert 1 == bulkhead.metrics().queued_requests

    metrics = bulkhead.metrics()
    assert 0 == metrics.active_requests
    assert 2 == metrics.completed_requests
    assert 0 == metrics.timed_out_requests


async def test_cancelled_while_running_frees_the_slot(autojump_clock):
    """A caller cancelled mid-run gives its slot back."""
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent_requests=1))

    with trio.move_on_after(1):
        await bulkhead.call(functools.partial(sleep_then, 10))

    assert 0 == bulkhead.metrics().active_requests
    assert "ok" == await bulkhead.call_nowait(ok)


async def test_errors_free_the_slot(autojump_clock):
    """A failing call releases its slot and is counted as completed."""
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent_requests=1))

    with pytest.raises(Boom):
        await bulkhead.call(boom)

    assert "ok" == await bulkhead.call_nowait(ok)
    assert 2 == bulkhead.metrics().completed_requests


async def test_zero_queue_rejects_every_waiter(autojump_clock):
    """With queue_size=0 no call ever waits."""
    bulkhead = Bulkhead(
        BulkheadConfig(max_concurrent_requests=1, queue_size=0)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bulkhead.call, functools.partial(sleep_then, 1))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(BulkheadError):
            await bulkhead.call(ok)


async def test_call_nowait_never_queues(autojump_clock):
    """call_nowait rejects when no slot is free, even with queue room."""
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent_requests=1))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bulkhead.call, functools.partial(sleep_then, 1))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(BulkheadError) as info:
            await bulkhead.call_nowait(ok)

    assert info.value.queue_full is False


async def test_one_task_may_hold_two_slots(autojump_clock):
    """Nested calls from one task borrow separate slots."""
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent_requests=2))

    async def outer():
        return await bulkhead.call(ok, "inner")

    assert "inner" == await bulkhead.call(outer)


async def test_rejection_is_a_cancel_point_and_sometimes_yields(
    autojump_clock,
):
    """A cancelled caller is cancelled; every rejection is a checkpoint."""
    bulkhead = Bulkhead(
        BulkheadConfig(max_concurrent_requests=1, queue_size=0)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bulkhead.call, functools.partial(sleep_then, 1))
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await bulkhead.call(ok)
        assert scope.cancelled_caught
        for _ in range(3):
            with (
                trio.testing.assert_checkpoints(),
                pytest.raises(BulkheadError),
            ):
                await bulkhead.call(ok)


def test_repr_shows_live_state():
    """The repr shows slots and queue in use."""
    bulkhead = Bulkhead(BulkheadConfig(name="tools"))

    assert "<Bulkhead 'tools': 0/10 active, 0/100 queued, 0 rejected>" == repr(
        bulkhead
    )


async def test_request_timeout_on_the_fast_path(autojump_clock):
    """A call that found a free slot is still bounded by request_timeout."""
    bulkhead = Bulkhead(BulkheadConfig(name="b", request_timeout=2))

    with pytest.raises(CallTimeout, match="bulkhead 'b'"):
        await bulkhead.call(sleep_then, 10)

    assert 2.0 == trio.current_time()
    metrics = bulkhead.metrics()
    assert 1 == metrics.timed_out_requests
    assert 0 == metrics.active_requests
    assert "b" == bulkhead.name


@pytest.mark.parametrize(
    "backends",
    [
        ("trio", "asyncio"),
        ("asyncio", "trio"),
        ("trio", "trio"),
        ("asyncio", "asyncio"),
    ],
)
def test_issue_12_item_9_one_pipeline_on_two_backends(backends):
    """A pipeline used on one backend, then another, still queues callers."""
    pipeline = ResiliencePipeline(
        name="shared",
        bulkhead=BulkheadConfig(
            max_concurrent_requests=1, queue_size=5, request_timeout=None
        ),
    )

    async def scenario():
        gauge = Gauge(1.0)
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(pipeline.call, gauge, i)
                await wait_all_tasks_blocked()
        return gauge.peak, [i for _, i in gauge.started]

    for backend in backends:
        assert (1, [0, 1, 2]) == run_virtual(scenario, backend=backend)

    metrics = pipeline.bulkhead.metrics()
    assert 6 == metrics.completed_requests
    assert 0 == metrics.active_requests


def test_issue_12_item_9_busy_on_another_backend_is_a_clear_error():
    """A bulkhead still busy on trio refuses asyncio callers, saying why."""
    bulkhead = Bulkhead(BulkheadConfig(name="b", max_concurrent_requests=1))

    async def on_asyncio():
        with pytest.raises(RuntimeError, match="bulkhead 'b' is in use on"):
            await bulkhead.call(ok)

    async def on_trio():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bulkhead.call, trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            # An asyncio loop run from inside a trio task: the limiter's
            # slot is held by a trio call that has not ended.
            await trio.to_thread.run_sync(anyio.run, on_asyncio)
            nursery.cancel_scope.cancel()

    trio.run(on_trio)

    assert 0 == bulkhead.metrics().active_requests

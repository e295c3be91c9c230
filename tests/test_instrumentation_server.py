"""
The /metrics endpoint, over real HTTP on the loopback interface.

Every server listens on 127.0.0.1, port 0, inside the test's own task
group, and every test that uses the network runs under ``fail_after``.
The network tests run on the real clock: the server answers from threads
of its own (prometheus_client's threading WSGI server).
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading

import anyio
import httpx2
import pytest

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.exposition import (
    CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE,
)
from prometheus_client.parser import text_string_to_metric_families

from _raw_http import exchange, status_of
from _scenario import Boom, Script
from resilient_mcp import (
    BulkheadConfig,
    CircuitBreaker,
    CircuitBreakerConfig,
    ResiliencePipeline,
)
from resilient_mcp.instrumentation import (
    ResilienceCollector,
    Watchlist,
    _server,
    serve_metrics,
)


LIMIT = 10  # seconds any network test may take


def without_date(response):
    """A raw response's head without its Date line, which may differ."""
    return b"\r\n".join(
        line
        for line in response.split(b"\r\n")
        if not line.startswith(b"Date: ")
    )


@pytest.fixture(params=["trio", "asyncio"])
def real_backend(request):
    """Run a scenario on each backend, on the real clock."""

    def runner(fn):
        return anyio.run(fn, backend=request.param)

    return runner


def make_pipeline():
    """A pipeline with a breaker and a bulkhead, as the recipes expect."""
    return ResiliencePipeline(
        name="tools",
        bulkhead=BulkheadConfig(name="tools"),
        circuit_breaker=CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=1), name="search-server"
        ),
    )


def test_scrape_over_http_and_the_seed_recipes(real_backend):
    """A real HTTP GET returns every series; the grep recipes find theirs."""

    async def scenario():
        watchlist = Watchlist()
        pipeline = make_pipeline()
        watchlist.watch_pipeline(pipeline)
        await pipeline.call(Script("ok"))
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom("down")))
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                port = await tg.start(
                    functools.partial(serve_metrics, watchlist, port=0)
                )
                async with httpx2.AsyncClient() as client:
                    response = await client.get(
                        f"http://127.0.0.1:{port}/metrics"
                    )
                tg.cancel_scope.cancel()

        assert 0 != port
        assert 200 == response.status_code
        # What prometheus_client's own servers answer to "Accept: */*".
        assert CONTENT_TYPE_PLAIN_0_0_4 == response.headers["content-type"]
        text = response.text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        assert (
            1.0
            == samples[
                (
                    "resilient_mcp_circuit_breaker_state",
                    (("breaker", "search-server"), ("state", "open")),
                )
            ]
        )
        assert (
            1.0
            == samples[
                (
                    "resilient_mcp_requests_total",
                    (("operation", "tools"), ("outcome", "error")),
                )
            ]
        )
        # curl http://localhost:8080/metrics | grep circuit_breaker
        breaker_lines = [
            line for line in text.splitlines() if "circuit_breaker" in line
        ]
        assert (
            "resilient_mcp_circuit_breaker_trips_total"
            '{breaker="search-server"} 1.0'
        ) in breaker_lines
        # curl http://localhost:8080/metrics | grep bulkhead_queue
        queue_lines = [
            line for line in text.splitlines() if "bulkhead_queue" in line
        ]
        assert 'resilient_mcp_bulkhead_queue_depth{bulkhead="tools"} 0.0' in (
            queue_lines
        )

    real_backend(scenario)


def test_paths_methods_and_bad_requests(real_backend):
    """404, 405, 400, 431 and 505 come back, and the server keeps serving."""

    async def scenario():
        registry = CollectorRegistry()
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                port = await tg.start(
                    functools.partial(serve_metrics, registry, port=0)
                )
                answers = [
                    await exchange(port, request)
                    for request in [
                        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "
                        + b"a" * 70_000
                        + b"\r\n\r\n",
                        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET /metrics?x=1 HTTP/1.0\r\n\r\n",
                    ]
                ]
                # The standard library answers a request whose version it
                # cannot serve as HTTP/0.9 would: no status line.
                bare = [
                    await exchange(port, request)
                    for request in [
                        b"GET /metrics HTTP/x.y\r\n\r\n",
                        b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",
                    ]
                ]
                # A client that leaves before finishing its request.
                async with await anyio.connect_tcp("127.0.0.1", port) as s:
                    await s.send(b"GET /metr")
                healthy = await exchange(
                    port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                tg.cancel_scope.cancel()

        assert [404, 404, 405, 400, 431, 200, 200] == [
            status_of(answer) for answer in answers
        ]
        assert b"Error code: 400" in bare[0]
        assert b"Error code: 505" in bare[1]
        assert b"\r\nAllow: GET, HEAD\r\n" in answers[2]
        assert answers[2].endswith(
            b"405 Method Not Allowed: only GET and HEAD are served\n"
        )
        assert answers[5].endswith(b"\r\n\r\nok\n")
        assert 200 == status_of(healthy)

    real_backend(scenario)


def test_issue_12_item_17_stops_with_its_task_group(real_backend):
    """Cancelling the owner closes the port and ends the server's thread."""

    async def scenario():
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                port = await tg.start(
                    functools.partial(
                        serve_metrics, CollectorRegistry(), port=0
                    )
                )
                served = await exchange(
                    port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                tg.cancel_scope.cancel()
            with pytest.raises(OSError):
                await anyio.connect_tcp("127.0.0.1", port)
        return served, port

    served, port = real_backend(scenario)

    assert 200 == status_of(served)
    assert [] == [
        t.name for t in threading.enumerate() if t.name.endswith(f":{port}")
    ]


def test_issue_12_item_17_no_hand_written_http():
    """The server module parses no HTTP itself: no regexes, no raw sockets."""
    source = inspect.getsource(_server)

    assert "import re\n" not in source
    assert "create_tcp_listener" not in source
    assert "make_wsgi_app" in source


async def test_head_answers_the_headers_of_get():
    """HEAD gets the status and headers of GET, without the body."""
    watchlist = Watchlist()
    pipeline = make_pipeline()
    watchlist.watch_pipeline(pipeline)
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve_metrics, watchlist, port=0)
            )
            get = await exchange(
                port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            head = await exchange(
                port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            tg.cancel_scope.cancel()

    headers, _, body = get.partition(b"\r\n\r\n")
    assert without_date(headers + b"\r\n\r\n") == without_date(head)
    assert f"Content-Length: {len(body)}".encode() in headers


async def test_openmetrics_when_the_scraper_asks():
    """An Accept header asking for OpenMetrics gets OpenMetrics."""
    watchlist = Watchlist()
    pipeline = make_pipeline()
    watchlist.watch_pipeline(pipeline)
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(
                    serve_metrics, ResilienceCollector(watchlist), port=0
                )
            )
            async with httpx2.AsyncClient() as client:
                response = await client.get(
                    f"http://127.0.0.1:{port}/metrics",
                    headers={"Accept": "application/openmetrics-text"},
                )
            tg.cancel_scope.cancel()

    assert OPENMETRICS_CONTENT_TYPE == response.headers["content-type"]
    assert response.text.endswith("# EOF\n")
    assert "# UNIT resilient_mcp_bulkhead_queue_wait_seconds seconds" in (
        response.text
    )


async def test_a_failing_collector_gets_500_and_the_server_survives(caplog):
    """An exception while collecting is logged and answered with 500."""

    class Broken:
        """A collector with a bug."""

        def collect(self):
            """Fail, as a buggy collector would."""
            raise Boom("collector bug")

    caplog.set_level(logging.INFO, logger="resilient_mcp")

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve_metrics, Broken(), port=0)
            )
            first = await exchange(
                port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            second = await exchange(
                port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            tg.cancel_scope.cancel()

    assert 500 == status_of(first)
    assert 200 == status_of(second)
    assert [
        f"Serving metrics on http://127.0.0.1:{port}/metrics",
        "Metrics server: collecting the metrics failed",
    ] == [r.getMessage() for r in caplog.records]


async def test_a_port_in_use_fails_to_start():
    """Binding a port that is taken raises OSError from start()."""
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve_metrics, CollectorRegistry(), port=0)
            )
            with pytest.raises(OSError):
                await tg.start(
                    functools.partial(
                        serve_metrics, CollectorRegistry(), port=port
                    )
                )
            tg.cancel_scope.cancel()


async def test_serves_the_default_registry():
    """With no source, the global prometheus_client registry is served."""
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve_metrics, port=0))
            answer = await exchange(
                port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            tg.cancel_scope.cancel()

    assert 200 == status_of(answer)
    assert b"python_info" in answer  # a default collector of the registry


async def test_ipv6_addresses_are_bracketed_in_the_log(caplog):
    """The startup line shows an IPv6 listen address as a valid URL."""
    caplog.set_level(logging.INFO, logger="resilient_mcp")
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            try:
                port = await tg.start(
                    functools.partial(
                        serve_metrics, CollectorRegistry(), host="::1", port=0
                    )
                )
            except OSError:
                pytest.skip("no IPv6 loopback here")
            tg.cancel_scope.cancel()

    assert [f"Serving metrics on http://[::1]:{port}/metrics"] == (
        caplog.messages
    )


async def test_no_host_listens_on_every_interface():
    """host=None serves the IPv4 loopback (and IPv6 where dual-stack)."""
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(
                    serve_metrics, CollectorRegistry(), host=None, port=0
                )
            )
            answer = await exchange(
                port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            tg.cancel_scope.cancel()

    assert 200 == status_of(answer)

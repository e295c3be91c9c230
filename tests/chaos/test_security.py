"""
What resilient_mcp never writes down: payloads, secrets, open ports.

A canary string is put where secrets live (tool arguments and results, a
stdio server's environment, credentials in a URL, an HTTP header) and the
client is run through its failure paths with every ``resilient_mcp``
logger at DEBUG and an OpenTelemetry exporter in memory; the canary must
not appear in a log record, a span, or a ``repr``.

Server-provided error text is another matter, decided in
docs/reliability.md: it is the operator's main diagnostic, so it does go
into exceptions, retry log lines and spans, and a server that echoes
arguments into its error messages leaks them there.  The tests below keep
servers from echoing, so that they check what the library itself does.

The metrics endpoint listens on the loopback interface unless told
otherwise and answers only ``/metrics`` and ``/healthz``.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys

import httpx2
import pytest
import trio
import trio.testing

from mcp.client.stdio import StdioServerParameters
from prometheus_client import CollectorRegistry

from _raw_http import exchange, status_of
from resilient_mcp import (
    CallTimeout,
    InvalidResponseError,
    NotSentError,
    PermanentError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
    SessionConfig,
)
from resilient_mcp.instrumentation import serve_metrics
from resilient_mcp.testing.chaos import (
    ChaosTransport,
    Corrupt,
    Corruption,
    FaultInjector,
)
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    create_flaky_server,
)


pytestmark = pytest.mark.chaos

CANARY = "canary-7f3a9c-secret"  # must never be written down
LIMIT = 30  # seconds; a hang guard
SERVER_MODULE = "resilient_mcp.testing.flaky_server"


class Opaque:
    """A value no JSON serialiser knows."""


def written_by_us(caplog):
    """Everything resilient_mcp's loggers wrote, tracebacks included."""
    formatter = logging.Formatter()
    texts = []
    for record in caplog.records:
        if record.name.split(".")[0] != "resilient_mcp":
            continue
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(formatter.formatException(record.exc_info))
    return "\n".join(texts)


def written_on_spans(exporter):
    """Every name, attribute, event and status text of every span."""
    texts = []
    for span in exporter.get_finished_spans():
        texts.append(span.name)
        texts.extend(str(v) for v in span.attributes.values())
        texts.append(str(span.status.description))
        for event in span.events:
            texts.extend(str(v) for v in event.attributes.values())
    return "\n".join(texts)


async def test_arguments_and_results_reach_no_log_and_no_span(
    autojump_clock, caplog, spans
):
    """
    No argument and no result reaches a log record, a span or a repr.

    Checked through success, tool errors, retries, timeouts, a garbled and
    a mistyped answer and unsendable arguments, with every logger at DEBUG
    and tracing on.
    """
    caplog.set_level(logging.DEBUG)
    server = create_flaky_server(FlakyServerConfig(allow_crash=False, seed=1))
    injector = FaultInjector([], seed=1)
    chaos = ChaosTransport(server, injector, methods={"tools/call"})
    config = ResilientClientConfig(
        timeout=5, retry=RetryConfig(max_attempts=2, jitter=False)
    )
    seen = []
    async with ResilientMCPClient(chaos, config=config) as client:
        echoed = await client.call_tool("echo", {"text": CANARY})
        refused = await client.call_tool("tool_error", {"message": CANARY})
        with pytest.raises(CallTimeout):
            await client.call_tool("slow", {"seconds": 60, "text": CANARY})
        with pytest.raises(PermanentError) as unsendable:
            await client.call_tool("echo", {"text": CANARY, "x": Opaque()})
        seen.append(unsendable.value)
        for kind, error in [
            (Corruption.SCHEMA_MISMATCH, InvalidResponseError),
            (Corruption.GARBLED_JSON, CallTimeout),
        ]:
            chaos.injector = FaultInjector(
                [Corrupt(rate=1.0, kind=kind)], seed=1
            )
            with pytest.raises(error) as failed:
                await client.call_tool("add", {"a": 1, "b": 2})
            seen.append(failed.value)
        shown = [repr(client), repr(client.metrics()), repr(client.supervisor)]

    assert CANARY == echoed.structured_content["result"]
    assert CANARY in refused.content[0].text
    assert CANARY not in written_by_us(caplog)
    assert CANARY not in written_on_spans(spans)
    assert len(spans.get_finished_spans()) > 0  # tracing was on
    assert [] == [str(e) for e in seen if CANARY in str(e)]
    assert [] == [text for text in shown if CANARY in text]


async def test_payload_logging_is_an_opt_in_at_debug(autojump_clock, caplog):
    """
    Logging arguments and results is an opt-in, at DEBUG.

    With log_payloads, each call's arguments and result (or error) go to
    the resilient_mcp.payloads logger; without it, nothing does.
    """
    caplog.set_level(logging.DEBUG, logger="resilient_mcp")
    server = create_flaky_server(FlakyServerConfig(allow_crash=False))
    opted_in = ResilientClientConfig(log_payloads=True)
    async with ResilientMCPClient(server, config=opted_in) as client:
        await client.call_tool("echo", {"text": CANARY})
        with pytest.raises(PermanentError):
            await client.call_tool("reject", {"message": "no"})
    logged = [
        r.getMessage() for r in caplog.records if r.name.endswith("payloads")
    ]
    caplog.clear()
    async with ResilientMCPClient(server) as client:
        await client.call_tool("echo", {"text": CANARY})

    assert 4 == len(logged)
    assert f"tools/call 'echo' arguments: {{'text': '{CANARY}'}}" in logged
    assert any(m.startswith("tools/call 'echo' result:") for m in logged)
    assert CANARY in logged[1]
    assert any("'reject' failed: PermanentError" in m for m in logged)
    assert CANARY not in written_by_us(caplog)


@pytest.mark.slow
async def test_the_stdio_servers_environment_is_never_logged(
    caplog, server_log
):
    """
    A secret in the stdio server's environment is never logged.

    It appears in no log line and no repr, through a connect, a SIGKILL, a
    reconnect and a failed start.
    """
    caplog.set_level(logging.DEBUG)
    env = {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PYTHONUNBUFFERED": "1",
        "API_TOKEN": CANARY,
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", SERVER_MODULE, "stdio"], env=env
    )
    broken = StdioServerParameters(
        command=sys.executable, args=["-c", "raise SystemExit(3)"], env=env
    )
    session = SessionConfig(
        connect_timeout=20, reconnect_delay=0.01, stdio_errlog=server_log
    )
    config = ResilientClientConfig(session=session)
    with trio.fail_after(LIMIT):
        async with ResilientMCPClient(params, config=config) as client:
            stats = await client.call_tool("stats", {})
            os.kill(stats.structured_content["pid"], signal.SIGKILL)
            await client.call_tool("echo", {"text": "back"})
            shown = [repr(client), repr(client.metrics())]
        with pytest.raises(NotSentError) as failed:
            async with ResilientMCPClient(broken, config=config):
                pass

    assert CANARY not in written_by_us(caplog)
    assert CANARY not in str(failed.value)
    assert [] == [text for text in shown if CANARY in text]


async def test_credentials_in_the_url_and_headers_are_never_logged(
    caplog, free_port
):
    """
    Credentials in the URL and in HTTP headers are never logged.

    They appear neither in the logs nor in the error of a refused
    connection.
    """
    caplog.set_level(logging.DEBUG)
    url = f"http://user:{CANARY}@127.0.0.1:{free_port}/mcp"
    session = SessionConfig(
        connect_timeout=5,
        http_client_factory=functools.partial(
            httpx2.AsyncClient, headers={"Authorization": f"Bearer {CANARY}"}
        ),
    )
    config = ResilientClientConfig(session=session)
    with trio.fail_after(LIMIT):
        with pytest.raises(NotSentError) as refused:
            async with ResilientMCPClient(url, config=config):
                pass

    assert CANARY not in written_by_us(caplog)
    assert CANARY not in str(refused.value)
    assert CANARY not in repr(refused.value.cause)


# -- the metrics endpoint ----------------------------------------------------


async def test_the_metrics_endpoint_listens_on_loopback_by_default(caplog):
    """
    Without a host, serve_metrics listens on 127.0.0.1 only.

    It says so, and a connection to another local address is refused.
    """
    caplog.set_level(logging.INFO, logger="resilient_mcp")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(serve_metrics, CollectorRegistry(), port=0)
            )
            healthy = await exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n")
            refused = None
            if sys.platform == "linux":  # all of 127/8 is local there
                with pytest.raises(OSError) as refused:
                    await exchange(
                        port, b"GET /metrics HTTP/1.0\r\n\r\n", "127.0.0.2"
                    )
            nursery.cancel_scope.cancel()

    assert 200 == status_of(healthy)
    assert f"http://127.0.0.1:{port}/metrics" in caplog.text
    assert refused is None or refused.value is not None


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /metrics HTTP/1.1", 200),
        (b"GET /healthz HTTP/1.1", 200),
        (b"GET /metrics?name=x HTTP/1.1", 200),
        (b"HEAD /metrics HTTP/1.1", 200),
        (b"GET / HTTP/1.1", 404),
        (b"GET /metrics/ HTTP/1.1", 404),
        # http.server collapses leading slashes (its open-redirect fix)
        (b"GET //metrics HTTP/1.1", 200),
        (b"GET /METRICS HTTP/1.1", 404),
        (b"GET /healthz/../metrics HTTP/1.1", 404),
        (b"GET /metrics%2F HTTP/1.1", 404),
        (b"GET /debug/vars HTTP/1.1", 404),
        (b"GET /.env HTTP/1.1", 404),
        (b"GET /favicon.ico HTTP/1.1", 404),
        (b"POST /metrics HTTP/1.1", 405),
        (b"PUT /healthz HTTP/1.1", 405),
        (b"DELETE /metrics HTTP/1.1", 405),
        (b"OPTIONS * HTTP/1.1", 405),  # only GET and HEAD, whatever the target
        (b"TRACE /metrics HTTP/1.1", 405),
        (b"CONNECT 127.0.0.1:22 HTTP/1.1", 405),  # nor a proxy
    ],
)
async def test_the_metrics_endpoint_serves_nothing_else(request_line, status):
    """
    Only GET or HEAD of /metrics and /healthz get a 200.

    (http.server reads ``//metrics`` as ``/metrics``.)
    """
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(serve_metrics, CollectorRegistry(), port=0)
            )
            answer = await exchange(
                port, request_line + b"\r\nHost: x\r\n\r\n"
            )
            nursery.cancel_scope.cancel()

    assert status == status_of(answer)

"""
``/metrics`` over HTTP: ``prometheus_client``'s exposition in a thread.

The HTTP side is ``prometheus_client``'s own: its WSGI app
(:func:`prometheus_client.make_wsgi_app`) behind its threading WSGI server
(the standard library's :mod:`wsgiref`, one thread per request), as
:func:`prometheus_client.start_wsgi_server` runs it.  We add a small WSGI
dispatcher for ``/healthz``, ``HEAD`` and the errors, and a task that
owns the server: it starts the server in the application's task group and
shuts it down when that task group is cancelled.

Threads are safe here because nothing in them touches our objects: the
collector reads through :meth:`Watchlist.read`, which hands the read to
the event loop's thread and waits for it.  The encoding (and the bucket
counting) runs in the request's thread, off the loop.
"""

from __future__ import annotations

import logging
import socket
import threading

from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol
from wsgiref.simple_server import WSGIRequestHandler

import anyio
import anyio.abc
import anyio.to_thread

from .._config import ConfigurationError
from ._prometheus import ResilienceCollector, _import_prometheus
from ._watch import Watchlist


if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from prometheus_client.exposition import ThreadingWSGIServer


logger: Final = logging.getLogger("resilient_mcp")

DEFAULT_HOST: Final = "127.0.0.1"  # private to the machine
DEFAULT_PORT: Final = 8080  # TCP port
REQUEST_TIMEOUT: Final = 10.0  # seconds a connection may stay silent
POLL_INTERVAL: Final = 0.1  # seconds between the server's shutdown checks

_App = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


class _Collectable(Protocol):
    """Anything ``prometheus_client.generate_latest`` can encode."""

    def collect(self) -> Any: ...


class _QuietHandler(WSGIRequestHandler):
    """A request handler that logs nothing and gives up on silent peers."""

    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Log nothing: a scrape every few seconds is no news."""


def _plain(
    start_response: StartResponse,
    status: HTTPStatus,
    text: str,
    *,
    include_body: bool = True,
    extra: tuple[tuple[str, str], ...] = (),
) -> list[bytes]:
    body = f"{text}\n".encode()
    start_response(
        f"{status.value} {status.phrase}",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *extra,
        ],
    )
    return [body] if include_body else []


def make_app(registry: _Collectable) -> _App:
    """
    The WSGI app: ``/metrics``, ``/healthz``, and an error for the rest.

    ``GET /metrics`` is ``prometheus_client``'s own app; ``HEAD`` gets
    GET's status and headers without the body.
    """
    from prometheus_client import make_wsgi_app  # noqa: PLC0415

    metrics_app = make_wsgi_app(registry)

    def app(
        environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        include_body = method != "HEAD"
        if method not in {"GET", "HEAD"}:
            return _plain(
                start_response,
                HTTPStatus.METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: only GET and HEAD are served",
                extra=(("Allow", "GET, HEAD"),),
            )
        if path == "/healthz":
            return _plain(
                start_response, HTTPStatus.OK, "ok", include_body=include_body
            )
        if path != "/metrics":
            return _plain(
                start_response,
                HTTPStatus.NOT_FOUND,
                "404 Not Found: try /metrics",
                include_body=include_body,
            )
        answer: list[tuple[str, list[tuple[str, str]]]] = []

        def keep(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            answer.append((status, headers))
            return lambda _data: None  # the legacy write(), unused

        try:
            body = b"".join(
                metrics_app({**environ, "REQUEST_METHOD": "GET"}, keep)
            )
        except Exception:
            logger.exception("Metrics server: collecting the metrics failed")
            return _plain(
                start_response,
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: collecting the metrics failed",
                include_body=include_body,
            )
        status, headers = answer[0]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body] if include_body else []

    return app


def _bind(host: str | None, port: int, app: _App) -> ThreadingWSGIServer:
    """A bound and listening server; ``None`` binds every interface."""
    from prometheus_client.exposition import (  # noqa: PLC0415
        ThreadingWSGIServer,
    )

    dual_stack = host is None and socket.has_dualstack_ipv6()
    address = ("::" if dual_stack else "0.0.0.0") if host is None else host  # noqa: S104
    family = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

        def server_bind(self) -> None:
            if dual_stack:
                self.socket.setsockopt(
                    socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0
                )
            super().server_bind()

    server = Server((address, port), _QuietHandler)
    server.set_app(app)
    return server


def _stop(server: ThreadingWSGIServer, thread: threading.Thread) -> None:
    server.shutdown()  # returns once serve_forever has returned
    server.server_close()
    thread.join()


async def serve_metrics(
    source: Watchlist | _Collectable | None = None,
    *,
    host: str | None = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    buckets: Sequence[float] | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """
    Serve ``/metrics`` (and ``/healthz``) over HTTP until cancelled.

    Start it in a task group the application owns; ``start`` returns the
    port it listens on once it accepts connections::

        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_metrics, watchlist)
            ...  # the application; cancel tg.cancel_scope to stop

    The HTTP server is ``prometheus_client``'s (its WSGI app and threading
    WSGI server, one thread per request); this task owns it.  When the
    task is cancelled, the server stops accepting, closes its socket and
    its thread ends before the task returns.

    ``GET /metrics`` answers with the Prometheus text format, or with
    OpenMetrics when the scraper's ``Accept`` header asks for it (and
    gzipped if it accepts gzip).  ``GET /healthz`` answers ``ok``: the
    server is alive.  ``HEAD`` gets GET's status and headers.  Any other
    path is 404, any other method 405; a malformed request gets the
    standard library's 400 (or 414, 431, 505).

    Args:
        source: What to expose: a :class:`Watchlist` (wrapped in a
            :class:`ResilienceCollector`), a ``prometheus_client`` registry
            or collector, or ``None`` for ``prometheus_client.REGISTRY``.
        host: The address to listen on; ``127.0.0.1`` keeps the endpoint
            private to the machine.  ``None`` listens on every interface.
        port: The TCP port; 0 picks a free one (see *task_status*).
        buckets: The latency buckets' upper bounds in seconds, for a
            :class:`Watchlist` *source* (see :class:`ResilienceCollector`);
            ``None`` for the defaults.
        task_status: Receives the bound port, for ``TaskGroup.start``.

    Raises:
        OSError: The address could not be bound (for example, the port is
            in use).
        ModuleNotFoundError: ``prometheus_client`` is not installed.
        ConfigurationError: *buckets* is invalid, or given with a
            *source* that is not a :class:`Watchlist`.

    .. versionadded:: 0.1.0
    """
    _import_prometheus()
    from prometheus_client import REGISTRY, CollectorRegistry  # noqa: PLC0415

    if buckets is not None and not isinstance(source, Watchlist):
        raise ConfigurationError(
            "serve_metrics(buckets=...) applies to a Watchlist source; "
            "pass the buckets to your ResilienceCollector instead"
        )
    registry: _Collectable
    if source is None:
        registry = REGISTRY
    elif isinstance(source, Watchlist | ResilienceCollector):
        # A registry, not the bare collector: prometheus_client's app
        # filters on ?name[]=... through the registry.
        collector: ResilienceCollector
        if isinstance(source, ResilienceCollector):
            collector = source
        elif buckets is None:
            collector = ResilienceCollector(source)
        else:
            collector = ResilienceCollector(source, buckets=buckets)
        own = CollectorRegistry(auto_describe=True)
        own.register(collector)
        registry = own
    else:
        registry = source
    server = _bind(host, port, make_app(registry))
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": POLL_INTERVAL},
        name=f"resilient_mcp metrics server :{server.server_port}",
        daemon=True,
    )
    thread.start()
    try:
        shown = "0.0.0.0" if host is None else host  # noqa: S104
        logger.info(
            "Serving metrics on http://%s:%d/metrics",
            f"[{shown}]" if ":" in shown else shown,  # an IPv6 address
            server.server_port,
        )
        task_status.started(server.server_port)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_stop, server, thread)
    raise AssertionError("unreachable")  # pragma: no cover

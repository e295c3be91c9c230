"""
A tiny HTTP/1.1 server for ``/metrics``, run in the application's nursery.

``prometheus_client.start_http_server`` runs in a thread of its own, which
would read our objects while the event loop changes them.  This server is
a task like any other: it starts in a nursery the application owns, stops
when that nursery is cancelled, and reads the watched objects in the
loop's thread.  The exposition itself (``prometheus_client``'s encoder,
which also computes latency percentiles) runs in a worker thread, so a
scrape never stalls the loop for long.

It speaks just enough HTTP/1.1 for a scraper and ``curl``: one request
per connection, ``GET`` and ``HEAD`` only, no request body.  Every
connection is bounded in size and in time, at most ``MAX_CONNECTIONS`` are
served at once, and a bad request gets an error response, never a crashed
server.
"""

from __future__ import annotations

import errno
import logging
import re

from http import HTTPStatus
from typing import Any, Final, NoReturn, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from anyio.streams.buffered import BufferedByteReceiveStream

from ._prometheus import ResilienceCollector, _import_prometheus
from ._watch import Watchlist


logger: Final = logging.getLogger("resilient_mcp")

DEFAULT_HOST: Final = "127.0.0.1"  # the seed's http://localhost:8080
DEFAULT_PORT: Final = 8080  # TCP port
MAX_REQUEST_BYTES: Final = 8192  # bytes: request line plus headers
REQUEST_TIMEOUT: Final = 10.0  # seconds to receive a request's head
CONNECTION_TIMEOUT: Final = 30.0  # seconds for a whole exchange
MAX_CONNECTIONS: Final = 32  # connections served at once
LINGER_TIMEOUT: Final = 2.0  # seconds to wait for the client to close
LINGER_BYTES: Final = 65536  # bytes of leftover input drained at most
ACCEPT_RETRY_DELAY: Final = 0.1  # seconds to back off when out of fds

# accept() errors that mean "out of resources, try again later" (as in
# trio's serve_listeners), rather than "this listener is broken".
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET: Final = re.compile(rb"[\x21-\x7e]+")
_VERSION: Final = re.compile(rb"HTTP/([0-9])\.([0-9])")
_HEADER: Final = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*"
)


class _Collectable(Protocol):
    """Anything ``prometheus_client.generate_latest`` can encode."""

    def collect(self) -> Any: ...


class HttpError(Exception):
    """A request we answer with an error status."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(f"{status.value} {status.phrase}: {reason}")
        self.status = status
        self.reason = reason


@attrs.frozen(kw_only=True)
class Request:
    """The parts of a request the server looks at."""

    method: str
    """``GET``, ``HEAD``, ...: a valid token, as sent."""
    path: str
    """The target's path, without the query."""
    accept: str
    """The ``Accept`` header(s), comma-joined; empty if none."""


def parse_request(head: bytes) -> Request:
    """
    Parse a request line and header block (without the final blank line).

    Raises:
        HttpError: The request is malformed (400) or of an HTTP version
            other than 1.x (505).
    """
    request_line, *header_lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3:  # method, target, version
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed method")
    if not _TARGET.fullmatch(target):
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request target")
    matched = _VERSION.fullmatch(version)
    if matched is None:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed HTTP version")
    if matched.group(1) != b"1":
        raise HttpError(
            HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.x is served"
        )
    headers: dict[bytes, list[bytes]] = {}
    for line in header_lines:
        field = _HEADER.fullmatch(line)
        if field is None:
            # Includes obsolete line folding (a line starting with
            # whitespace), which RFC 9112 lets servers reject.
            raise HttpError(HTTPStatus.BAD_REQUEST, "malformed header field")
        headers.setdefault(field.group(1).lower(), []).append(field.group(2))
    if matched.group(2) != b"0" and len(headers.get(b"host", ())) != 1:
        # RFC 9112, section 3.2: exactly one Host in an HTTP/1.1 request.
        raise HttpError(HTTPStatus.BAD_REQUEST, "exactly one Host required")
    return Request(
        method=method.decode("ascii"),
        path=_path_of(target.decode("ascii")),
        accept=b", ".join(headers.get(b"accept", ())).decode("latin-1"),
    )


def _path_of(target: str) -> str:
    if target.startswith("/"):
        return target.partition("?")[0]
    if target.lower().startswith(("http://", "https://")):
        return urlsplit(target).path or "/"
    raise HttpError(HTTPStatus.BAD_REQUEST, "unsupported request target")


def render_response(
    status: HTTPStatus,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    include_body: bool = True,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """An HTTP/1.1 response that closes the connection."""
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra_headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if include_body else head


def _error_response(error: HttpError, *, include_body: bool = True) -> bytes:
    extra: tuple[tuple[str, str], ...] = ()
    if error.status is HTTPStatus.METHOD_NOT_ALLOWED:
        extra = (("Allow", "GET, HEAD"),)
    return render_response(
        error.status,
        f"{error}\n".encode(),
        include_body=include_body,
        extra_headers=extra,
    )


async def serve_metrics(
    source: Watchlist | _Collectable | None = None,
    *,
    host: str | None = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """
    Serve ``/metrics`` (and ``/healthz``) over HTTP until cancelled.

    Start it in a task group the application owns; ``start`` returns the
    port it listens on once it accepts connections::

        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_metrics, watchlist)
            ...  # the application; cancel tg.cancel_scope to stop

    ``GET /metrics`` answers with the Prometheus text format, or with
    OpenMetrics when the scraper's ``Accept`` header asks for it.
    ``GET /healthz`` answers ``ok``: the event loop is alive.  Any other
    path is 404, any other method 405, a malformed request 400.

    Args:
        source: What to expose: a :class:`Watchlist` (wrapped in a
            :class:`ResilienceCollector`), a ``prometheus_client`` registry
            or collector, or ``None`` for ``prometheus_client.REGISTRY``.
        host: The address to listen on; ``127.0.0.1`` keeps the endpoint
            private to the machine.  ``None`` listens on every interface.
        port: The TCP port; 0 picks a free one (see *task_status*).
        task_status: Receives the bound port, for ``TaskGroup.start``.

    Raises:
        OSError: The address could not be bound (for example, the port is
            in use).
        ModuleNotFoundError: ``prometheus_client`` is not installed.

    .. versionadded:: 0.1.0
    """
    _import_prometheus()
    from prometheus_client import REGISTRY  # noqa: PLC0415

    registry: _Collectable
    if source is None:
        registry = REGISTRY
    elif isinstance(source, Watchlist):
        registry = ResilienceCollector(source)
    else:
        registry = source
    listener = await anyio.create_tcp_listener(
        local_host=host, local_port=port
    )
    async with listener, anyio.create_task_group() as tg:
        bound: int = listener.extra(  # noqa: S610 - not Django's extra()
            anyio.abc.SocketAttribute.local_port
        )
        slots = anyio.Semaphore(MAX_CONNECTIONS)
        for one in listener.listeners:
            tg.start_soon(_accept_loop, one, tg, slots, registry)
        shown = "0.0.0.0" if host is None else host  # noqa: S104
        logger.info(
            "Serving metrics on http://%s:%d/metrics",
            f"[{shown}]" if ":" in shown else shown,  # an IPv6 address
            bound,
        )
        task_status.started(bound)
        await anyio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _accept_loop(
    listener: anyio.abc.Listener[anyio.abc.SocketStream],
    tg: anyio.abc.TaskGroup,
    slots: anyio.Semaphore,
    registry: _Collectable,
) -> None:
    if not isinstance(listener, anyio.abc.SocketListener):  # pragma: no cover
        raise TypeError(f"expected a socket listener, got {listener!r}")
    while True:
        # Take a slot before accepting, so that excess connections wait in
        # the kernel's backlog instead of as tasks in our memory.
        await slots.acquire()
        try:
            stream = await listener.accept()
        except OSError as exc:
            slots.release()
            if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                raise
            logger.warning(
                "Metrics server: accept() failed (%s); retrying in %gs",
                errno.errorcode.get(exc.errno or 0, exc.errno),
                ACCEPT_RETRY_DELAY,
            )
            await anyio.sleep(ACCEPT_RETRY_DELAY)
            continue
        except BaseException:
            slots.release()
            raise
        tg.start_soon(_serve_connection, stream, slots, registry)


async def _serve_connection(
    stream: anyio.abc.SocketStream,
    slots: anyio.Semaphore,
    registry: _Collectable,
) -> None:
    try:
        with anyio.move_on_after(CONNECTION_TIMEOUT):
            response = await _respond(stream, registry)
            if response is not None:
                await stream.send(response)
                await _linger(stream)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the client went away; nothing to answer
    except Exception:
        # A bug of ours must not take the application's task group down.
        logger.exception("Metrics server: unexpected error")
    finally:
        slots.release()
        await anyio.aclose_forcefully(stream)


async def _linger(stream: anyio.abc.SocketStream) -> None:
    """
    Half-close, then drain what the client still sends, before closing.

    Closing a socket with unread input makes the kernel reset the
    connection, and a reset can destroy the response before the client
    reads it (RFC 9112, section 9.6).  So we send EOF first and read until
    the client closes too, within bounds.
    """
    await stream.send_eof()
    drained = 0
    with anyio.move_on_after(LINGER_TIMEOUT):
        try:
            while drained < LINGER_BYTES:
                drained += len(await stream.receive())
        except anyio.EndOfStream:
            pass


async def _respond(
    stream: anyio.abc.SocketStream, registry: _Collectable
) -> bytes | None:
    """The response to send, or ``None`` to just close the connection."""
    head = await _receive_head(stream)
    if not isinstance(head, bytes):
        return None if head is None else _error_response(head)
    try:
        request = parse_request(head)
    except HttpError as error:
        return _error_response(error)
    return await _route(request, registry)


async def _receive_head(
    stream: anyio.abc.SocketStream,
) -> bytes | HttpError | None:
    """The request head; an error to answer; ``None`` if the peer left."""
    receiver = BufferedByteReceiveStream(stream)
    too_large = HttpError(
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
        f"the request head exceeds {MAX_REQUEST_BYTES} bytes",
    )
    with anyio.move_on_after(REQUEST_TIMEOUT):
        try:
            head = await receiver.receive_until(b"\r\n\r\n", MAX_REQUEST_BYTES)
        except anyio.DelimiterNotFound:
            return too_large
        except anyio.IncompleteRead:
            return None  # closed before the request was complete
        # receive_until checks the limit between reads, and one read may
        # bring a whole oversized head at once.
        return too_large if len(head) > MAX_REQUEST_BYTES else head
    return HttpError(
        HTTPStatus.REQUEST_TIMEOUT,
        f"no complete request within {REQUEST_TIMEOUT:g}s",
    )


async def _route(request: Request, registry: _Collectable) -> bytes:
    include_body = request.method != "HEAD"
    if request.method not in {"GET", "HEAD"}:
        return _error_response(
            HttpError(
                HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD are served"
            )
        )
    if request.path == "/metrics":
        return await _metrics_response(request, registry, include_body)
    if request.path == "/healthz":
        return render_response(
            HTTPStatus.OK, b"ok\n", include_body=include_body
        )
    return _error_response(
        HttpError(HTTPStatus.NOT_FOUND, "try /metrics"),
        include_body=include_body,
    )


async def _metrics_response(
    request: Request, registry: _Collectable, include_body: bool
) -> bytes:
    from prometheus_client.exposition import choose_encoder  # noqa: PLC0415

    encoder, content_type = choose_encoder(request.accept)
    try:
        # In a worker thread: the collector hops back into the loop for
        # its cheap reads, and the percentile math runs off the loop.
        body: bytes = await anyio.to_thread.run_sync(encoder, registry)
    except Exception:
        logger.exception("Metrics server: collecting the metrics failed")
        return render_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            b"500 Internal Server Error: collecting the metrics failed\n",
            include_body=include_body,
        )
    return render_response(
        HTTPStatus.OK, body, content_type, include_body=include_body
    )

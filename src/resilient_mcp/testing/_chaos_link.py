"""
One connection through a :class:`~._chaos_transport.ChaosTransport`.

The :class:`Link` sits between the client's streams and the inner
transport's.  Each request the client sends asks the injector for a
:class:`~._chaos.Decision`: an error answer or a hang is applied at once,
without sending; a drop ends the connection after sending; latency,
corruption and reordering are remembered by request id and applied to the
server's answer as :meth:`Link.pump` forwards it.  Notifications, the
handshake and the answers to the server's own requests pass untouched.
"""

from __future__ import annotations

import contextvars

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Self, TypeAlias, final

import anyio
import attrs

from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)

from .._mcp._transport import ReadStreamBase
from ._chaos import Decision
from ._chaos_faults import Corrupt, Corruption, Drop, Error, Hang, Reorder


if TYPE_CHECKING:
    from types import TracebackType

    from anyio.streams.memory import (
        MemoryObjectReceiveStream,
        MemoryObjectSendStream,
    )

    from .._mcp._streams import ReadStream, WriteStream


PADDING_KEY: Final = "resilient_mcp/chaos-padding"
"""The ``_meta`` key :attr:`~._chaos.Corruption.OVERSIZED` pads under."""

UNEXPECTED_KEY: Final = "resilient_mcp/chaos-unexpected"
"""The only key of the structured content
:attr:`~._chaos.Corruption.OUTPUT_SCHEMA_MISMATCH` leaves."""

_WRONG: Final = "chaos: wrong type"

Item: TypeAlias = tuple[contextvars.Context | None, SessionMessage | Exception]
"""One item for the client: the sender's context, and the message."""


def _wrong_type(value: object) -> object:
    """A value of another JSON type than *value*."""
    if isinstance(value, str | type(None)):
        return [_WRONG]
    return _WRONG


def _error_data(error: BaseException) -> ErrorData:
    if isinstance(error, MCPError):
        return error.error
    text = str(error) or type(error).__name__
    return ErrorData(code=INTERNAL_ERROR, message=f"chaos: {text}")


@final
@attrs.define(eq=False, repr=False)
class ChaosReadStream(ReadStreamBase):
    """The client's read side: what the link delivers, with its context."""

    receiver: MemoryObjectReceiveStream[Item]
    last_context: contextvars.Context | None = None

    async def receive(self) -> SessionMessage | Exception:
        context, item = await self.receiver.receive()
        self.last_context = context
        return item

    async def aclose(self) -> None:
        await self.receiver.aclose()


@final
@attrs.define(eq=False, repr=False)
class ChaosWriteStream:
    """The client's write side: every message goes through the link."""

    link: Link

    async def send(self, item: SessionMessage, /) -> None:
        await self.link.send(item)

    async def aclose(self) -> None:
        await self.link.inner_write.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@final
@attrs.define(eq=False, repr=False)
class Link:
    """One connection through a :class:`ChaosTransport`."""

    decide: Callable[[], Decision]
    affects: Callable[[str], bool]
    inner_read: ReadStream[SessionMessage | Exception]
    inner_write: WriteStream[SessionMessage]
    to_client: MemoryObjectSendStream[Item]
    on_in_flight: Callable[[int], None]
    task_group: anyio.abc.TaskGroup | None = None
    pending: dict[RequestId, Decision] = attrs.field(factory=dict)
    outstanding: set[RequestId] = attrs.field(factory=set)
    dropped: bool = False
    delivered: anyio.Event = attrs.field(factory=anyio.Event)

    # -- the client's requests -------------------------------------------

    async def send(self, item: SessionMessage) -> None:
        if self.dropped:
            raise anyio.ClosedResourceError
        message = item.message
        if isinstance(message, JSONRPCNotification):
            self._forget_cancelled(message)
        if not isinstance(message, JSONRPCRequest):
            await self.inner_write.send(item)
            return
        self.outstanding.add(message.id)
        self.on_in_flight(len(self.outstanding))
        if not self.affects(message.method):
            await self.inner_write.send(item)
            return
        decision = self.decide()
        fault = decision.fault
        if isinstance(fault, Error):
            answer = JSONRPCError(
                jsonrpc="2.0", id=message.id, error=_error_data(fault.error())
            )
            await self._deliver(None, SessionMessage(answer))
            return
        if isinstance(fault, Hang):
            await anyio.lowlevel.checkpoint()
            return
        if decision.delay > 0 or isinstance(fault, Corrupt | Reorder):
            self.pending[message.id] = decision
        await self.inner_write.send(item)
        if isinstance(fault, Drop):
            self.drop()

    def _forget_cancelled(self, message: JSONRPCNotification) -> None:
        # A cancelled request may never be answered: forget its decision,
        # so that the table stays as small as the requests in flight.
        if message.method != "notifications/cancelled":
            return
        params = message.params or {}
        request_id = params.get("requestId")
        if isinstance(request_id, int | str):
            self.pending.pop(request_id, None)
            self.outstanding.discard(request_id)

    def drop(self) -> None:
        """End the connection: the client sees the end of the stream."""
        if self.dropped:
            return
        self.dropped = True
        self.pending.clear()
        self.outstanding.clear()
        self.to_client.close()
        if self.task_group is not None:
            self.task_group.cancel_scope.cancel()

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the pump and the held-back deliveries until dropped."""
        # A task group of the link's own, inside a task: dropping cancels
        # it, never the caller's code that runs inside the transport.
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            tg.start_soon(self.pump)
            task_status.started()

    # -- the server's messages ---------------------------------------------

    async def pump(self) -> None:
        """Forward the server's messages, spoiling some, until it ends."""
        inner = self.inner_read
        try:
            async for item in inner:
                context = getattr(inner, "last_context", None)
                message = (
                    item.message if isinstance(item, SessionMessage) else None
                )
                decision = None
                if (
                    isinstance(message, JSONRPCResponse | JSONRPCError)
                    and message.id is not None
                ):
                    decision = self.pending.pop(message.id, None)
                if decision is None:
                    await self._deliver(context, item)
                    continue
                spoilt = _spoil(item, decision)
                if decision.delay > 0 or isinstance(decision.fault, Reorder):
                    assert self.task_group is not None  # noqa: S101 (run)
                    self.task_group.start_soon(
                        self._deliver_later, context, spoilt, decision
                    )
                else:
                    await self._deliver(context, spoilt)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the connection is gone either way
        finally:
            # The server's side ended: so does the client's, as on a real
            # link, even if answers are still held back.
            self.to_client.close()

    async def _deliver(
        self,
        context: contextvars.Context | None,
        item: SessionMessage | Exception,
    ) -> None:
        try:
            await self.to_client.send((context, item))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # dropped, or the client is gone
        if isinstance(item, SessionMessage):
            message = item.message
            if isinstance(message, JSONRPCResponse | JSONRPCError):
                self.outstanding.discard(message.id)
        delivered, self.delivered = self.delivered, anyio.Event()
        delivered.set()

    async def _deliver_later(
        self,
        context: contextvars.Context | None,
        item: SessionMessage | Exception,
        decision: Decision,
    ) -> None:
        if decision.delay > 0:
            await anyio.sleep(decision.delay)
        fault = decision.fault
        if isinstance(fault, Reorder):
            overtaken = self.delivered
            with anyio.move_on_after(fault.max_hold):
                await overtaken.wait()
        await self._deliver(context, item)


def _spoil(
    item: SessionMessage | Exception, decision: Decision
) -> SessionMessage | Exception:
    fault = decision.fault
    if not isinstance(fault, Corrupt) or not isinstance(item, SessionMessage):
        return item
    message = item.message
    kind = fault.kind
    if kind is Corruption.GARBLED_JSON:
        text = message.model_dump_json(by_alias=True, exclude_unset=True)
        try:
            jsonrpc_message_adapter.validate_json(
                text[: len(text) // 2], by_name=False
            )
        except ValueError as exc:
            # What the SDK's stdio transport hands the session for a line
            # it cannot parse.
            return exc
        raise AssertionError("half a JSON object parsed")  # pragma: no cover
    if kind is Corruption.UNKNOWN_ID:
        update = {"id": f"chaos-unknown-{decision.index}"}
        return SessionMessage(message.model_copy(update=update))
    if not isinstance(message, JSONRPCResponse):
        return item  # an error answer has no result to spoil
    result = dict(message.result)
    if kind is Corruption.SCHEMA_MISMATCH:
        result = {key: _wrong_type(value) for key, value in result.items()}
        result.setdefault("_meta", _WRONG)
    elif kind is Corruption.OUTPUT_SCHEMA_MISMATCH:
        if "structuredContent" not in result:
            return item
        result["structuredContent"] = {UNEXPECTED_KEY: _WRONG}
    else:
        meta = result.get("_meta")
        padded = dict(meta) if isinstance(meta, dict) else {}
        padded[PADDING_KEY] = "x" * fault.size
        result["_meta"] = padded
    return SessionMessage(message.model_copy(update={"result": result}))

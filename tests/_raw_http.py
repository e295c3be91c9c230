"""Raw HTTP exchanges over TCP, for tests of the metrics endpoint."""

from __future__ import annotations

import anyio


async def exchange(
    port: int, request: bytes, host: str = "127.0.0.1"
) -> bytes:
    """Send raw bytes to the server and read its answer until it closes."""
    async with await anyio.connect_tcp(host, port) as stream:
        await stream.send(request)
        chunks = []
        while True:
            try:
                chunks.append(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return b"".join(chunks)


def status_of(response: bytes) -> int:
    """The status code of a raw response."""
    return int(response.split(b" ", 2)[1])

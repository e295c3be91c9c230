"""
The MCP server the MCP benchmarks call: one async ``echo`` tool.

In process, :func:`build_server` makes a fresh one; for the stdio rows the
benchmark starts this file as a script (``python _echo_server.py``), which
serves it over stdio on asyncio, as ``MCPServer.run`` always does.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


def build_server() -> MCPServer:
    server = MCPServer("bench-echo")

    @server.tool()
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return server


if __name__ == "__main__":
    build_server().run("stdio")

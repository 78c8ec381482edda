#!/usr/bin/env python3
"""tickets_server.py - a small ticket-desk MCP server over Streamable HTTP (example upstream for Leasehold).

Run:  python3 examples/tickets_server.py --port 9100 [--token-file PATH] [--host 127.0.0.1]

Serves MCP (stateless Streamable HTTP, FastMCP) at http://<host>:<port>/mcp and prints exactly one line

    listening on http://127.0.0.1:<port>/mcp

to stdout (flushed) once it accepts connections. `--port 0` picks a free port and prints the real one.

With `--token-file PATH`, every HTTP request must carry `Authorization: Bearer <file contents, stripped>`;
anything else gets 401 (the file is read once at startup).

Tools (in-memory, per process; ids are integers):
    tickets_list                 all tickets
    tickets_get     {id}         one ticket (error result when unknown)
    tickets_create  {title}      a new open ticket
    tickets_whoami               the request's `_meta` and the Authorization header this server received
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import socket
import sys
import threading
import time
from typing import Any

try:  # mcp 1.x
    from mcp.server.fastmcp import Context, FastMCP as _Server
    from mcp.server.fastmcp.exceptions import ToolError

    _SDK_MAJOR = 1
except ImportError:  # mcp 2.x renamed FastMCP to MCPServer
    from mcp.server.mcpserver import Context, MCPServer as _Server  # type: ignore[no-redef]
    from mcp.server.mcpserver.exceptions import ToolError  # type: ignore[no-redef]

    _SDK_MAJOR = 2

from mcp.types import ToolAnnotations

# --------------------------------------------------------------------------- in-memory tickets

_lock = threading.Lock()
_tickets: dict[int, dict[str, Any]] = {
    1: {"id": 1, "title": "Printer on floor 3 is offline", "status": "open", "created": "2026-01-05T09:00:00Z"},
    2: {"id": 2, "title": "VPN drops every hour", "status": "open", "created": "2026-01-06T14:30:00Z"},
    3: {"id": 3, "title": "Request: new laptop for onboarding", "status": "closed", "created": "2026-01-07T08:15:00Z"},
}
_next_id = 4


def tickets_list() -> dict[str, Any]:
    with _lock:
        items = [dict(t) for t in sorted(_tickets.values(), key=lambda t: t["id"])]
    return {"tickets": items, "count": len(items)}


def tickets_get(id: int) -> dict[str, Any]:  # noqa: A002 - the argument is called "id" on the wire
    with _lock:
        ticket = _tickets.get(int(id))
    if ticket is None:
        raise ToolError(f"no ticket with id {id}")
    return dict(ticket)


def tickets_create(title: str) -> dict[str, Any]:
    global _next_id
    title = title.strip()
    if not title:
        raise ToolError("title must not be empty")
    with _lock:
        ticket = {
            "id": _next_id,
            "title": title,
            "status": "open",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _tickets[_next_id] = ticket
        _next_id += 1
    return dict(ticket)


def _request_meta(ctx: Context) -> dict[str, Any] | None:
    try:
        meta = ctx.request_context.meta
    except Exception:
        return None
    if meta is None:
        return None
    if isinstance(meta, dict):
        return json.loads(json.dumps(meta, default=str))
    dump = getattr(meta, "model_dump", None)
    return dump(mode="json", by_alias=True, exclude_none=True) if dump else {"repr": repr(meta)}


def _request_headers(ctx: Context) -> dict[str, str] | None:
    headers = getattr(ctx, "headers", None)  # mcp 2.x: Context.headers
    if headers is None:
        try:  # mcp 1.x: the Starlette Request of the HTTP transport
            request = ctx.request_context.request
            headers = getattr(request, "headers", None)
        except Exception:
            headers = None
    if headers is None:
        return None
    return {str(k).lower(): str(v) for k, v in dict(headers).items()}


def tickets_whoami(ctx: Context) -> dict[str, Any]:
    headers = _request_headers(ctx) or {}
    return {
        "meta": _request_meta(ctx),
        "authorization": headers.get("authorization"),
        "headers": {k: v for k, v in headers.items() if k in ("user-agent", "mcp-protocol-version", "mcp-session-id", "host")},
    }


def build_server(host: str) -> Any:
    kwargs: dict[str, Any] = {"log_level": "WARNING"}
    if _SDK_MAJOR == 1:
        kwargs.update(host=host, stateless_http=True)
    server = _Server("leasehold-example-tickets", instructions="Example ticket desk upstream for Leasehold.", **kwargs)
    ro = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
    server.add_tool(tickets_list, name="tickets_list", description="Tickets: list all tickets (id, title, status, created).", annotations=ro)
    server.add_tool(tickets_get, name="tickets_get", description="Tickets: get one ticket by its integer id.", annotations=ro)
    server.add_tool(
        tickets_create,
        name="tickets_create",
        description="Tickets: create a new open ticket with the given title; returns the ticket.",
        annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False),
    )
    server.add_tool(
        tickets_whoami,
        name="tickets_whoami",
        description="Tickets: echo the request's _meta and the Authorization header this server received (auth passthrough tests).",
        annotations=ro,
    )
    return server


def build_app(server: Any, host: str) -> Any:
    if _SDK_MAJOR == 1:
        return server.streamable_http_app()
    return server.streamable_http_app(stateless_http=True, host=host)


# --------------------------------------------------------------------------- bearer-token gate


class BearerTokenMiddleware:
    """Pure ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`, else 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = ("Bearer " + token).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan: the MCP session manager must start
            return
        got = b""
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                got = value
                break
        if hmac.compare_digest(got, self.expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "unauthorized", "error_description": "missing or invalid bearer token"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="tickets"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- main


async def serve(host: str, port: int, token: str | None) -> None:
    import uvicorn

    server = build_server(host)
    app = build_app(server, host)
    if token is not None:
        app = BearerTokenMiddleware(app, token)

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    real_port = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    userver = uvicorn.Server(config)
    task = asyncio.create_task(userver.serve(sockets=[sock]))
    while not userver.started:
        if task.done():
            await task  # startup failed: surface the error
            return
        await asyncio.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{real_port}/mcp", flush=True)
    await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Example tickets MCP server (Streamable HTTP).")
    parser.add_argument("--port", type=int, default=9100, help="TCP port (0 = pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--token-file", help="require Authorization: Bearer <contents of this file, stripped>")
    args = parser.parse_args(argv)

    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            print(f"tickets_server: token file {args.token_file} is empty", file=sys.stderr)
            return 2
    try:
        asyncio.run(serve(args.host, args.port, token))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

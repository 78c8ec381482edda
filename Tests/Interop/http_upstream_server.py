#!/usr/bin/env python3
"""An HTTP upstream MCP server for test_upstream_http.py (runs from .venv-examples).

Run:  python http_upstream_server.py --port 0

Prints `listening on http://127.0.0.1:<port>` once it accepts connections, then serves:

- `/mcp`: the official SDK's FastMCP, stateful Streamable HTTP (so it has a standalone GET stream).
  Tools: `echo {text}`; `add_tool {name, where}` registers a tool `name` at runtime and sends
  `notifications/tools/list_changed`, on the session's GET stream (`where: "stream"`, the SDK's
  `send_tool_list_changed`) or inside this call's own SSE answer (`where: "answer"`); `slow
  {steps, seconds}` sleeps in steps with a progress notification after each (records the progress
  token it was given, and a cancellation).
- `/raw`: a hand-written Streamable HTTP endpoint for what an SDK server will not do on purpose.
  No GET stream (405). Tools: `huge` answers with an SSE event that grows slowly for a minute
  (10 KB every 10 ms); `hang` never answers; `ask` asks the client for its roots inside its answer
  and returns what the client answered; `fine` answers at once.
- `/moved`: answers 307 to `/caught`, which counts the requests that followed (there must be none).
- `GET /stats`: what `/raw` and `/caught` saw (JSON): bytes of `huge` sent before the client went away, the
  `notifications/cancelled` it received, the client's answer to `ask`, `slow`'s tokens and cancellations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ServerNotification, ToolListChangedNotification
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

stats: dict[str, Any] = {"huge_sent": None, "huge_started": 0, "cancelled": [], "answers": [], "gets": 0, "caught": 0,
                         "slow_tokens": [], "slow_cancelled": 0}
answered: dict[str, asyncio.Future[Any]] = {}


def build_fastmcp() -> FastMCP:
    server = FastMCP("leasehold-test-http-upstream", log_level="WARNING")

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> dict[str, Any]:
        return {"text": text}

    @server.tool(description="Register a tool at runtime and say the tool list changed.")
    async def add_tool(name: str, where: str, ctx: Context) -> dict[str, Any]:
        def added() -> dict[str, Any]:
            return {"added": name}

        server.add_tool(added, name=name, description=f"Added at runtime: {name}")
        if where == "answer":
            await ctx.session.send_notification(
                ServerNotification(ToolListChangedNotification()), related_request_id=ctx.request_context.request_id
            )
        else:
            await ctx.session.send_tool_list_changed()
        return {"added": name, "where": where}

    @server.tool(description="Sleep in steps, reporting progress after each; records its token and a cancellation.")
    async def slow(steps: int, seconds: float, ctx: Context) -> dict[str, Any]:
        meta = ctx.request_context.meta
        stats["slow_tokens"].append(getattr(meta, "progressToken", None) if meta else None)
        try:
            for i in range(1, steps + 1):
                await asyncio.sleep(seconds / steps)
                await ctx.report_progress(i, steps, f"step {i}/{steps}")
        except asyncio.CancelledError:
            stats["slow_cancelled"] += 1
            raise
        return {"done": steps}

    return server


RAW_TOOLS = [
    {"name": n, "description": f"raw {n}", "inputSchema": {"type": "object"}} for n in ("huge", "hang", "ask", "fine")
]


def sse(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n"


async def raw(request: Request) -> Response:
    if request.method == "GET":
        stats["gets"] += 1
        return Response(status_code=405)
    if request.method == "DELETE":
        return Response(status_code=405)
    message = json.loads(await request.body())
    if "method" not in message:  # an answer to one of our requests
        stats["answers"].append(message)
        future = answered.get(str(message.get("id")))
        if future is not None and not future.done():
            future.set_result(message)
        return Response(status_code=202)
    if "id" not in message:  # a notification
        if message["method"] == "notifications/cancelled":
            stats["cancelled"].append(message["params"])
        return Response(status_code=202)
    rid = message["id"]
    method = message["method"]
    if method == "initialize":
        result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                  "serverInfo": {"name": "raw", "version": "1"}}
        return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": result}, headers={"Mcp-Session-Id": "raw-session"})
    if method == "tools/list":
        return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": {"tools": RAW_TOOLS}})
    name = message["params"]["name"]
    if name == "fine":
        return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "fine"}]}})
    if name == "hang":
        await asyncio.sleep(3600)
    if name == "ask":
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answered["roots-1"] = future

        async def asking() -> Any:
            yield sse({"jsonrpc": "2.0", "id": "roots-1", "method": "roots/list"})
            got = await asyncio.wait_for(future, 20)
            yield sse({"jsonrpc": "2.0", "id": rid,
                       "result": {"content": [{"type": "text", "text": json.dumps(got)}], "structuredContent": got}})

        return StreamingResponse(asking(), media_type="text/event-stream")
    # huge: one event that never ends within the test's time.
    stats["huge_started"] += 1

    async def growing() -> Any:
        sent = 0
        try:
            head = b'event: message\ndata: {"jsonrpc":"2.0","id":' + json.dumps(rid).encode()
            yield head + b',"result":{"content":[{"type":"text","text":"'
            for _ in range(6000):
                yield b"x" * 10_000
                sent += 10_000
                await asyncio.sleep(0.01)
            yield b'"}]}}\n\n'
        finally:
            stats["huge_sent"] = sent

    return StreamingResponse(growing(), media_type="text/event-stream")


async def moved(request: Request) -> Response:
    return Response(status_code=307, headers={"Location": "/caught"})


async def caught(request: Request) -> Response:
    stats["caught"] += 1
    return Response(status_code=404)


async def stats_endpoint(request: Request) -> Response:
    return JSONResponse(stats)


async def serve(port: int) -> None:
    import uvicorn

    server = build_fastmcp()
    app = server.streamable_http_app()
    app.router.routes.append(Route("/raw", raw, methods=["GET", "POST", "DELETE"]))
    app.router.routes.append(Route("/stats", stats_endpoint, methods=["GET"]))
    app.router.routes.append(Route("/moved", moved, methods=["GET", "POST", "DELETE"]))
    app.router.routes.append(Route("/caught", caught, methods=["GET", "POST", "DELETE"]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    userver = uvicorn.Server(config)
    task = asyncio.create_task(userver.serve(sockets=[sock]))
    while not userver.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await task


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

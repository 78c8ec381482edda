"""The Python `mcp` client's 1.x and 2.x lines behind one set of names.

The interop tests import the MCP client only from here, so the same tests run against either line
(`Tests/Interop/requirements.txt` pins 1.x, `requirements-mcp2.txt` pins 2.x). What differs, read
from the SDK sources (1.30.0 and 2.3.0):

| need                                  | 1.x                                          | 2.x                                                    |
|---------------------------------------|----------------------------------------------|--------------------------------------------------------|
| exception for a JSON-RPC error        | `mcp.shared.exceptions.McpError`             | `mcp.shared.exceptions.MCPError`                       |
| Streamable HTTP transport             | `streamable_http_client(url, http_client=)`  | same name, but yields `(read, write)`: no session-id   |
|                                       | yields `(read, write, get_session_id)`       | getter, so a response hook reads `Mcp-Session-Id`      |
| its HTTP client                       | `httpx.AsyncClient`                          | `httpx2.AsyncClient` (a separate package)              |
| `streamablehttp_client(url, headers=)`| deprecated, still there                      | removed: headers go on the `httpx2.AsyncClient`        |
| a 4xx answer to a POST                | `httpx.HTTPStatusError` out of the transport | an `MCPError` for that request (the JSON-RPC error of  |
|                                       |                                              | the body if there is one); no exception carries the    |
|                                       |                                              | status, so a response hook records it                  |
| model attributes                      | camelCase (`isError`, `nextCursor`)          | snake_case (`is_error`, `next_cursor`); wire unchanged |
| request `params._meta`                | `types.RequestParams.Meta(**meta)`           | a plain dict (`RequestParamsMeta` is a TypedDict)      |
| what `message_handler` receives       | `ServerNotification` (a RootModel: `.root`), | the notification model itself (`ServerNotification`   |
|                                       | `RequestResponder`, or an `Exception`        | is a plain union), or an `Exception`                   |
| `types.LATEST_PROTOCOL_VERSION`       | `2025-11-25`, the newest `initialize` offers | `2026-07-28`, the stateless era without `initialize`;  |
|                                       |                                              | `LATEST_HANDSHAKE_VERSION` is `2025-11-25`             |

`ClientSession`, `stdio_client`, `StdioServerParameters` and `ClientSession.initialize()` (which
offers `2025-11-25` on both lines) keep their names and call shapes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version as _distribution_version
from typing import Any

import mcp.types as types
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

MCP_VERSION = _distribution_version("mcp")
MCP_MAJOR = int(MCP_VERSION.split(".")[0])

try:
    from mcp.shared.exceptions import MCPError  # 2.x
except ImportError:  # 1.x
    from mcp.shared.exceptions import McpError as MCPError  # type: ignore[assignment,no-redef]

if MCP_MAJOR >= 2:
    import httpx2 as _http  # the 2.x transport is built on httpx2, not httpx
    from mcp.client.streamable_http import streamable_http_client as _streamable_http_client
    from mcp.types.version import LATEST_HANDSHAKE_VERSION

    # `initialize` offers this on 2.x; LATEST_PROTOCOL_VERSION names the handshake-less era.
    HANDSHAKE_PROTOCOL_VERSION: str = LATEST_HANDSHAKE_VERSION
else:
    import httpx as _http
    from mcp.client.streamable_http import streamable_http_client as _streamable_http_client
    from mcp.client.streamable_http import streamablehttp_client as _legacy_streamablehttp_client

    HANDSHAKE_PROTOCOL_VERSION = types.LATEST_PROTOCOL_VERSION

__all__ = [
    "HANDSHAKE_PROTOCOL_VERSION",
    "MCP_MAJOR",
    "MCP_VERSION",
    "ClientSession",
    "HttpRefusal",
    "HttpTransport",
    "MCPError",
    "StdioServerParameters",
    "find_http_refusal",
    "is_tool_list_changed",
    "open_streamable_http",
    "paginated_params",
    "stdio_client",
    "streamablehttp_client",
    "types",
    "wire",
]

_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def wire(model: Any, name: str) -> Any:
    """A model's field by its wire (camelCase) name: `wire(result, "isError")`.

    1.x models name their attributes as the wire does; 2.x models use snake_case attributes with
    camelCase aliases, and pydantic does not read attributes by alias.
    """
    return getattr(model, name if MCP_MAJOR < 2 else _CAMEL_HUMP.sub("_", name).lower())


def paginated_params(cursor: str | None = None, meta: dict[str, Any] | None = None) -> types.PaginatedRequestParams:
    """tools/list params with an optional cursor and `params._meta` entries."""
    if not meta:
        return types.PaginatedRequestParams(cursor=cursor)
    request_meta: Any = dict(meta) if MCP_MAJOR >= 2 else types.RequestParams.Meta(**meta)
    return types.PaginatedRequestParams(cursor=cursor, _meta=request_meta)


def is_tool_list_changed(message: Any) -> bool:
    """Whether a `message_handler` item is `notifications/tools/list_changed`."""
    notification = getattr(message, "root", message)  # 1.x wraps it in ServerNotification
    return isinstance(notification, types.ToolListChangedNotification)


# --------------------------------------------------------------------------------------------
# Streamable HTTP
# --------------------------------------------------------------------------------------------

ResponseHook = Callable[[Any], Awaitable[None]]  # gets an httpx (1.x) or httpx2 (2.x) Response


@dataclass
class HttpRefusal:
    """The client's request was answered with HTTP `status_code` >= 400 and the client gave up.

    `error` is what the client raised: `httpx.HTTPStatusError` on 1.x, `MCPError` on 2.x.
    """

    status_code: int
    error: BaseException


def _exception_tree(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the members of exception groups and the causes, depth first."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        if current.__cause__ is not None:
            stack.append(current.__cause__)


def find_http_refusal(exc: BaseException) -> HttpRefusal | None:
    """The HTTP-level refusal inside a (possibly grouped, chained) exception from the client."""
    for inner in _exception_tree(exc):
        if MCP_MAJOR < 2 and isinstance(inner, _http.HTTPStatusError):
            return HttpRefusal(inner.response.status_code, inner)
        status = getattr(inner, "leasehold_http_status", None)
        if isinstance(inner, MCPError) and status is not None:
            return HttpRefusal(status, inner)
    return None


@dataclass
class HttpTransport:
    """An open Streamable HTTP transport: the streams for `ClientSession`, and what HTTP answered."""

    read: Any
    write: Any
    get_session_id: Callable[[], str | None]
    post_statuses: list[int]  # the HTTP status of each POST the client sent, in the order answered

    @property
    def last_post_status(self) -> int | None:
        return self.post_statuses[-1] if self.post_statuses else None


@asynccontextmanager
async def open_streamable_http(
    url: str, headers: dict[str, str], on_response: ResponseHook | None = None
) -> AsyncIterator[HttpTransport]:
    """The SDK's Streamable HTTP transport with `headers` on every request.

    `on_response` sees every HTTP response (POSTs, the GET stream, DELETE).
    """
    post_statuses: list[int] = []
    session_id: list[str] = []

    async def record(response: Any) -> None:
        if response.request.method == "POST":
            post_statuses.append(response.status_code)
            if response.status_code < 400 and (sid := response.headers.get("mcp-session-id")):
                session_id[:] = [sid]

    hooks = {"response": [record, *([on_response] if on_response is not None else [])]}
    timeout = _http.Timeout(30, read=300)
    if MCP_MAJOR < 2:
        async with _http.AsyncClient(headers=headers, timeout=timeout, follow_redirects=True, event_hooks=hooks) as http:
            async with _streamable_http_client(url, http_client=http) as (read, write, get_session_id):
                yield HttpTransport(read, write, get_session_id, post_statuses)
        return

    # 2.x ignores `follow_redirects` (it follows same-origin redirects itself).
    async with _http.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks) as http:
        try:
            async with _streamable_http_client(url, http_client=http) as (read, write):
                yield HttpTransport(read, write, lambda: session_id[0] if session_id else None, post_statuses)
        except BaseException as exc:
            # 2.x turns a 4xx answer into an MCPError for the request: tag it with the status.
            if post_statuses and post_statuses[-1] >= 400:
                for inner in _exception_tree(exc):
                    if isinstance(inner, MCPError):
                        inner.leasehold_http_status = post_statuses[-1]  # type: ignore[attr-defined]
            raise


@asynccontextmanager
async def _headers_transport(url: str, headers: dict[str, str]) -> AsyncIterator[tuple[Any, Any, Callable[[], str | None]]]:
    async with open_streamable_http(url, headers) as transport:
        yield transport.read, transport.write, transport.get_session_id


def streamablehttp_client(url: str, headers: dict[str, str]) -> Any:
    """The `streamablehttp_client(url, headers=...)` entry point: `(read, write, get_session_id)`.

    1.x: the SDK's own (deprecated) function. 2.x removed it; its replacement is
    `streamable_http_client` with the headers on the HTTP client, which is what this gives there.
    """
    if MCP_MAJOR < 2:
        return _legacy_streamablehttp_client(url, headers=headers)
    return _headers_transport(url, headers)

"""MCP client sessions bound to a Leasehold session (official Python SDK, ``mcp`` 1.x).

Needs the extra: ``pip install "./clients/python[mcp]"``::

    async with lh.mcp_session(created.id, message_handler=on_message) as mcp:
        tools = await mcp.list_tools()

A claim serves exactly one MCP connection (the runner binds it to the first connection that
presents it and refuses it on any other as ``claim_replayed``), so each ``connect`` mints a fresh
claim unless it is handed one. The claim travels in ``Authorization: Bearer``, never in tool
arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx

if TYPE_CHECKING:
    from mcp import ClientSession

    from .client import AsyncLeasehold, Leasehold

__all__ = ["connect", "connect_with_claim", "is_tool_list_changed", "refusal_code"]


def _sdk() -> Any:
    try:
        import mcp  # noqa: F401
        from mcp.client import streamable_http
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            'the MCP helper needs the official SDK: pip install "leasehold-client[mcp]" (mcp>=1.24,<2)'
        ) from error
    return streamable_http


@asynccontextmanager
async def connect_with_claim(
    url: str, claim: str, *, message_handler: Any = None, timeout: float = 30.0, sse_read_timeout: float = 300.0,
    **session_kwargs: Any,
) -> AsyncIterator[ClientSession]:
    """An initialized ``mcp.ClientSession`` over Streamable HTTP at ``url`` (``<base>/mcp`` or
    ``<base>/mcp/servers/<id>``), sending ``Authorization: Bearer <claim>`` on every request.

    ``message_handler`` receives server notifications such as ``notifications/tools/list_changed``
    (see ``is_tool_list_changed``); other keyword arguments go to ``ClientSession``.
    """
    streamable_http = _sdk()
    from mcp import ClientSession

    headers = {"Authorization": f"Bearer {claim}"}
    http_timeout = httpx.Timeout(timeout, read=sse_read_timeout)
    if hasattr(streamable_http, "streamable_http_client"):
        async with httpx.AsyncClient(headers=headers, timeout=http_timeout, follow_redirects=True) as http:
            async with streamable_http.streamable_http_client(url, http_client=http) as (read, write, _):
                async with ClientSession(read, write, message_handler=message_handler, **session_kwargs) as session:
                    await session.initialize()
                    yield session
        return
    # Older 1.x releases: the headers-taking transport.
    async with streamable_http.streamablehttp_client(  # pragma: no cover - depends on the installed SDK
        url, headers=headers, timeout=timeout, sse_read_timeout=sse_read_timeout
    ) as (read, write, _):
        async with ClientSession(read, write, message_handler=message_handler, **session_kwargs) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def connect(
    client: Leasehold | AsyncLeasehold, session_id: str, *, claim: str | None = None, server_id: str | None = None,
    allowed_tools: Sequence[str] | None = None, message_handler: Any = None, **session_kwargs: Any,
) -> AsyncIterator[ClientSession]:
    """An initialized ``mcp.ClientSession`` for Leasehold session ``session_id``.

    Mints a fresh claim through ``client`` (optionally narrowed to ``allowed_tools``) unless
    ``claim`` is given, and connects to ``client``'s MCP endpoint, or to the endpoint narrowed to
    ``server_id``.
    """
    from .client import AsyncLeasehold

    if claim is None:
        if isinstance(client, AsyncLeasehold):
            claim = (await client.claims.mint(session_id, allowed_tools=allowed_tools)).claim
        else:
            sync_client = client
            minted = await anyio.to_thread.run_sync(
                lambda: sync_client.claims.mint(session_id, allowed_tools=allowed_tools)
            )
            claim = minted.claim
    url = client.server_mcp_url(server_id) if server_id else client.mcp_url
    async with connect_with_claim(url, claim, message_handler=message_handler, **session_kwargs) as session:
        yield session


def is_tool_list_changed(message: Any) -> bool:
    """Whether a ``message_handler`` item is ``notifications/tools/list_changed``."""
    from mcp import types

    notification = getattr(message, "root", message)  # 1.x wraps notifications in ServerNotification
    return isinstance(notification, types.ToolListChangedNotification)


def refusal_code(outcome: Any) -> str | None:
    """Leasehold's refusal code in an MCP outcome, or None.

    ``outcome`` is a ``CallToolResult`` with ``isError`` (its ``structuredContent.error.code``:
    ``approval_required``, ``workspace_read_only``, a worker's ``not_found``...) or an exception
    from the SDK (``McpError`` whose message carries ``tool_not_in_scope: ...``, ``claim_expired: ...``).
    """
    import re

    if getattr(outcome, "isError", False):
        structured = getattr(outcome, "structuredContent", None)
        if isinstance(structured, dict) and isinstance(structured.get("error"), dict):
            code = structured["error"].get("code")
            return code if isinstance(code, str) else None
        return None
    if isinstance(outcome, BaseException):
        error = getattr(outcome, "error", None)
        message = getattr(error, "message", None) or str(outcome)
        found = re.search(r"\b([a-z]+(?:_[a-z]+)+):", message)
        return found.group(1) if found else None
    return None

"""Protocol-level isolation: identical JSON-RPC ids on concurrent connections of two tenants must
never get each other's responses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from interop_support import INITIALIZE_BODY, jsonrpc_messages, raw_headers

pytestmark = pytest.mark.anyio

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]


async def test_identical_request_ids_on_concurrent_connections_never_cross(server, tmp_path: Path) -> None:
    globex_root = server.workspace_dir("globex")
    server.register_workspace(globex_root, tenant="globex")
    _, acme_claim = server.create_session(denied_tool_names=["shell.*"])
    _, globex_claim = server.create_session(tenant_id="globex", actor_id="gina", allowed_tool_names=["shell.*"])

    async with httpx.AsyncClient(timeout=30) as client:
        async def connect(claim: str) -> str:
            response = await client.post(server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
            assert response.status_code == 200, response.text
            return response.headers["mcp-session-id"]

        connections = [("acme", acme_claim, await connect(acme_claim)), ("globex", globex_claim, await connect(globex_claim))]

        async def ask(tenant: str, claim: str, sid: str, method: str, request_id: int) -> tuple[str, str, set[str]]:
            params = {"name": "system.search_tools", "arguments": {"query": "shell repo run read", "limit": 50}}
            body = {"jsonrpc": "2.0", "id": request_id, "method": method, **({"params": params} if method == "tools/call" else {})}
            response = await client.post(server.mcp_url, json=body, headers=raw_headers(claim, sid, VERSION))
            assert response.status_code == 200, response.text
            message = jsonrpc_messages(response)[0]
            assert message["id"] == request_id
            result = message["result"]
            if method == "tools/list":
                names = {tool["name"] for tool in result["tools"]}
            else:
                names = {tool["name"] for tool in result["structuredContent"]["tools"]}
            return tenant, method, names

        # Every connection uses the same ids (unique within the connection, as JSON-RPC requires).
        jobs = [
            ask(tenant, claim, sid, method, 2 * round_number + offset)
            for round_number in range(25)
            for tenant, claim, sid in connections
            for offset, method in enumerate(("tools/list", "tools/call"))
        ]
        for tenant, method, names in await asyncio.gather(*jobs):
            if tenant == "acme":
                assert "shell.run" not in names and "repo.read_file" in names, (tenant, method, names)
            else:
                assert "shell.run" in names and "repo.read_file" not in names, (tenant, method, names)


async def test_a_duplicate_request_id_in_flight_is_refused_not_stranded(server) -> None:
    """JSON-RPC forbids two requests in flight with one id on a connection; the SDK routes responses
    by id, so a duplicate used to wait forever (and hold up SIGTERM). It is refused instead; every
    request finishes, and the fixture checks the server still shuts down cleanly."""
    _, claim = server.create_session()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
        sid = response.headers["mcp-session-id"]

        async def duplicate() -> int:
            body = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
            answer = await client.post(server.mcp_url, json=body, headers=raw_headers(claim, sid, VERSION))
            if answer.status_code == 200:
                assert jsonrpc_messages(answer)[0]["result"]["tools"]
            else:
                assert answer.json()["error"]["message"].startswith("invalid_request:"), answer.text
            return answer.status_code

        statuses = await asyncio.gather(*(duplicate() for _ in range(8)))
        assert 200 in statuses and set(statuses) <= {200, 409}, statuses
        # The id is free again once its response is done.
        assert await duplicate() == 200


async def test_a_patch_racing_calls_takes_effect_for_every_call_after_it(server) -> None:
    """Calls hammer a tool while a PATCH denies it: every call that starts after the PATCH has
    returned is refused; calls before it may run. No cache may serve the old scope."""
    session, claim = server.create_session()
    callers = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(4):
            fresh = server.mint_claim(session["id"])
            response = await client.post(server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(fresh))
            callers.append((fresh, response.headers["mcp-session-id"]))
        patched_at: list[float] = []
        loop = asyncio.get_running_loop()
        outcomes: list[tuple[float, str]] = []
        warmed_up = asyncio.Event()

        async def hammer(claim: str, sid: str) -> None:
            request_id = 0
            while not patched_at or loop.time() < patched_at[0] + 1.0:
                request_id += 1
                started = loop.time()
                body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                        "params": {"name": "repo.stat", "arguments": {"path": "."}}}
                answer = jsonrpc_messages(
                    await client.post(server.mcp_url, json=body, headers=raw_headers(claim, sid, VERSION))
                )[0]
                outcomes.append((started, "refused" if "error" in answer else answer["result"]["structuredContent"]["type"]))
                if len(outcomes) >= 20:
                    warmed_up.set()

        async def patch() -> None:
            await warmed_up.wait()  # calls are flowing before the PATCH lands
            await server.aadmin("PATCH", f"/sessions/{session['id']}", {"denied_tool_names": ["repo.stat"]}, expect=200)
            patched_at.append(loop.time())

        await asyncio.gather(patch(), *(hammer(c, s) for c, s in callers))
    after = [code for started, code in outcomes if started > patched_at[0]]
    before = [code for started, code in outcomes if started <= patched_at[0]]
    assert before and after, (len(before), len(after))
    assert set(after) == {"refused"}, {c: after.count(c) for c in set(after)}
    assert "dir" in before  # repo.stat really ran before the PATCH

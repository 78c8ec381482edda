"""Attacks on MCP 2026-07-28, the sessionless revision, through the real binary with raw JSON-RPC
over httpx (no mcp client, so the same bytes run under both SDK lines), two tenants:

- header/body mismatches (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, duplicates) are -32020;
- a claim bound sessionless cannot be replayed from another client address, on another endpoint,
  or on an `initialize`d connection of an older revision (and the other way round);
- the approval asked inside the call (`InputRequiredResult`): its signed `requestState` runs the
  call exactly once; tampered, replayed, moved to other arguments or to another tenant's session
  it is a typed refusal, audited.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from interop_support import (
    INITIALIZE_BODY,
    assert_refused,
    raw_headers,
    raw_post,
)

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
RAN = "unknown_tool"  # kb.publish has no upstream: a call that got past its approval answers this


def envelope(capabilities: dict | None = None) -> dict:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities if capabilities is not None else {},
    }


def modern_headers(claim: str | None, method: str, name: str | None = None, version: str = MODERN) -> dict[str, str]:
    headers = raw_headers(claim, None, version)
    headers["Mcp-Method"] = method
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def body(method: str, params: dict | None = None, request_id: int = 1, capabilities: dict | None = None) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method,
            "params": {**(params or {}), "_meta": envelope(capabilities)}}


async def modern_post(url: str, claim: str | None, method: str, params: dict | None = None, *, name: str | None = None,
                      capabilities: dict | None = None, local_address: str | None = None) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=local_address) if local_address else None
    async with httpx.AsyncClient(timeout=20, transport=transport) as client:
        return await client.post(url, json=body(method, params, capabilities=capabilities),
                                 headers=modern_headers(claim, method, name))


async def audit(server, session_id: str | None = None) -> list[dict]:
    query = f"session_id={session_id}&" if session_id else ""
    response = await server.aadmin("GET", f"/audit?{query}limit=10000", expect=200)
    return [r["event"] for r in response.json()["records"]]


def error_of(response: httpx.Response) -> dict:
    message = response.json()
    assert "error" in message and "result" not in message, message
    return message["error"]


# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------


async def test_headers_that_disagree_with_the_body_are_32020(server) -> None:
    _, claim = server.create_session()
    call = body("tools/call", {"name": "repo.read_file", "arguments": {"path": "README.md"}})
    cases = {
        "method header names another method": modern_headers(claim, "tools/list", "repo.read_file"),
        "name header names another tool": modern_headers(claim, "tools/call", "shell.run"),
        "name header missing": modern_headers(claim, "tools/call"),
        "version header differs from the envelope": modern_headers(claim, "tools/call", "repo.read_file", "2025-11-25"),
        "malformed base64 name": modern_headers(claim, "tools/call", "=?base64?cmVwby5yZWFkX2ZpbGU?="),
    }
    for label, headers in cases.items():
        response = await raw_post(server.mcp_url, call, headers)
        assert response.status_code == 400, (label, response.text)
        assert error_of(response)["code"] == -32020, (label, response.text)
    # A name the client wrapped (non-ASCII-safe form) matches when it decodes to the body's name.
    wrapped = "=?base64?" + base64.b64encode(b"repo.read_file").decode() + "?="
    response = await raw_post(server.mcp_url, call, modern_headers(claim, "tools/call", wrapped))
    assert response.status_code == 200, response.text
    # The version header missing entirely, while the body carries the envelope.
    headers = raw_headers(claim)
    headers["Mcp-Method"] = "tools/list"
    response = await raw_post(server.mcp_url, body("tools/list"), headers)
    assert response.status_code == 400 and error_of(response)["code"] == -32020, response.text


async def test_a_duplicated_routing_header_is_32020(server) -> None:
    _, claim = server.create_session()
    headers = [(k, v) for k, v in modern_headers(claim, "tools/list").items()] + [("Mcp-Method", "tools/list")]
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(server.mcp_url, content=json.dumps(body("tools/list")), headers=headers)
    assert response.status_code == 400 and error_of(response)["code"] == -32020, response.text


async def test_an_unsupported_version_is_32022_and_a_session_id_is_refused(server) -> None:
    _, claim = server.create_session()
    request = body("tools/list")
    request["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    response = await raw_post(server.mcp_url, request, modern_headers(claim, "tools/list", version="2099-01-01"))
    # The version header does not name the revision, but the body's envelope does: the sessionless
    # edge answers, and names what it serves.
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == -32022 and error["data"] == {"supported": [MODERN], "requested": "2099-01-01"}, error
    headers = modern_headers(claim, "tools/list")
    headers["Mcp-Session-Id"] = "mcp_whatever"
    response = await raw_post(server.mcp_url, body("tools/list"), headers)
    assert response.status_code == 400 and "has no Mcp-Session-Id" in response.text, response.text
    # GET (the old standalone stream) has no place in the revision.
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.get(server.mcp_url, headers=modern_headers(claim, "tools/list"))
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_no_claim_and_a_forged_claim_are_refused(server) -> None:
    response = await modern_post(server.mcp_url, None, "tools/list")
    assert_refused(response, "claim_missing")
    _, claim = server.create_session()
    head, payload, signature = claim.split(".")
    forged = ".".join([head, payload, signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")])
    assert_refused(await modern_post(server.mcp_url, forged, "tools/list"), "claim_invalid")


# --------------------------------------------------------------------------------------------
# The claim binding without a protocol session
# --------------------------------------------------------------------------------------------


async def test_a_sessionless_claim_cannot_be_replayed_from_another_client_or_endpoint(server) -> None:
    _, claim = server.create_session()
    first = await modern_post(server.mcp_url, claim, "tools/list")
    assert first.status_code == 200, first.text
    # The same client keeps using it.
    assert (await modern_post(server.mcp_url, claim, "tools/list")).status_code == 200
    # Another client (another loopback address) holding the stolen claim is refused.
    assert_refused(await modern_post(server.mcp_url, claim, "tools/list", local_address="127.0.0.2"), "claim_replayed")
    # So is the owner itself on a narrower endpoint (the binding names its endpoint).
    assert_refused(await modern_post(server.server_url("repo"), claim, "tools/list"), "claim_replayed")
    # And on a connection of an older revision.
    assert_refused(await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim)), "claim_replayed")
    # The rightful client is unaffected by the attempts.
    assert (await modern_post(server.mcp_url, claim, "tools/list")).status_code == 200
    events = [e for e in await audit(server) if e.get("code") == "claim_replayed"]
    assert len(events) >= 3, events


async def test_a_claim_of_an_initialized_connection_cannot_go_sessionless(server) -> None:
    _, claim = server.create_session()
    opened = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert opened.status_code == 200 and opened.headers.get("mcp-session-id"), opened.text
    assert_refused(await modern_post(server.mcp_url, claim, "tools/list"), "claim_replayed")


async def test_another_tenants_claim_sees_only_its_own_tools_and_workspace(server) -> None:
    globex_root = server.workspace_dir("globex")
    server.register_workspace(globex_root, tenant="globex")
    (globex_root / "GLOBEX.md").write_text("globex only\n")
    _, acme = server.create_session()
    _, globex = server.create_session(tenant_id="globex")
    read = {"name": "repo.read_file", "arguments": {"path": "GLOBEX.md"}}
    response = await modern_post(server.mcp_url, acme, "tools/call", read, name="repo.read_file")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["isError"] is True  # acme's workspace has no such file
    response = await modern_post(server.mcp_url, globex, "tools/call", read, name="repo.read_file")
    assert response.status_code == 200 and "globex only" in response.text, response.text


# --------------------------------------------------------------------------------------------
# Approvals inside the call
# --------------------------------------------------------------------------------------------


ASKS = {"elicitation": {"url": {}}}
PUBLISH = {"name": "kb.publish", "arguments": {"page": "q3-results", "visibility": "public"}}


async def publish(server, claim: str, params: dict = PUBLISH, capabilities: dict | None = ASKS) -> httpx.Response:
    return await modern_post(server.mcp_url, claim, "tools/call", params, name=params["name"], capabilities=capabilities)


async def ask(server, claim: str) -> dict:
    response = await publish(server, claim)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["resultType"] == "input_required", result
    return result


async def test_the_approval_round_trip_runs_the_call_exactly_once(approval_server) -> None:
    server = approval_server
    session, claim = server.create_session()
    asked = await ask(server, claim)
    request = asked["inputRequests"]["leasehold_approval"]
    assert request["method"] == "elicitation/create" and request["params"]["mode"] == "url", request
    approval_id = request["params"]["url"].rsplit("/", 1)[1]
    assert request["params"]["url"] == f"{server.mcp_url.rsplit('/mcp', 1)[0]}/ui#approvals/{approval_id}"
    assert "q3-results" in request["params"]["message"] and "sha256:" in request["params"]["message"]

    # Retried before anyone granted it: asked again, with a fresh state (the first one is spent).
    pending = await publish(server, claim, {**PUBLISH, "requestState": asked["requestState"]})
    again = pending.json()["result"]
    assert again["resultType"] == "input_required" and again["requestState"] != asked["requestState"], again
    spent = await publish(server, claim, {**PUBLISH, "requestState": asked["requestState"]})
    assert spent.status_code == 400 and error_of(spent)["message"].startswith("request_state_replayed:"), spent.text

    await server.aadmin("POST", f"/approvals/{approval_id}/grant", {"uses": 1}, expect=200)
    state = again["requestState"]
    ran = await publish(server, claim, {**PUBLISH, "requestState": state,
                                        "inputResponses": {"leasehold_approval": {"action": "accept"}}})
    result = ran.json()["result"]
    assert result["resultType"] == "complete", result
    assert result["structuredContent"]["error"]["code"] == RAN, result  # got past the gate and ran
    # The same state again: refused, and the call did not run a second time.
    replay = await publish(server, claim, {**PUBLISH, "requestState": state})
    assert replay.status_code == 400 and error_of(replay)["message"].startswith("request_state_replayed:"), replay.text
    records = await audit(server, session["id"])
    assert sum(1 for r in records if r.get("event") == "approval.used") == 1, records
    assert any(r.get("event") == "request_state.refused" and r.get("code") == "request_state_replayed" for r in records)


async def test_a_tampered_or_moved_request_state_is_refused_and_audited(approval_server) -> None:
    server = approval_server
    session, claim = server.create_session()
    state = (await ask(server, claim))["requestState"]
    payload, mac = state.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded["expires"] += 86400
    altered = base64.urlsafe_b64encode(json.dumps(decoded, sort_keys=True, separators=(",", ":")).encode()).decode().rstrip("=")
    for label, forged in {
        "payload altered, old signature": f"{altered}.{mac}",
        "signature flipped": f"{payload}.{mac[:-2]}{'AA' if not mac.endswith('AA') else 'BB'}",
        "no signature": payload,
        "garbage": "not-a-state",
    }.items():
        response = await publish(server, claim, {**PUBLISH, "requestState": forged})
        assert response.status_code == 400, (label, response.text)
        assert error_of(response)["message"].startswith("request_state_invalid:"), (label, response.text)
    # A genuine state moved to other arguments.
    other = {"name": "kb.publish", "arguments": {"page": "q3-results", "visibility": "internal"}, "requestState": state}
    response = await publish(server, claim, other)
    assert response.status_code == 400 and "arguments" in error_of(response)["message"], response.text
    records = await audit(server, session["id"])
    assert sum(1 for r in records if r.get("event") == "request_state.refused") >= 5, records


async def test_another_tenants_request_state_is_refused(approval_server) -> None:
    server = approval_server
    _, acme = server.create_session()
    _, globex = server.create_session(tenant_id="globex")
    state = (await ask(server, acme))["requestState"]
    response = await publish(server, globex, {**PUBLISH, "requestState": state})
    assert response.status_code == 400, response.text
    message = error_of(response)["message"]
    assert message.startswith("request_state_invalid:") and "session" in message, message


async def test_a_client_that_cannot_ask_its_user_gets_approval_required(approval_server) -> None:
    server = approval_server
    _, claim = server.create_session()
    response = await publish(server, claim, capabilities={})
    result = response.json()["result"]
    assert result["resultType"] == "complete" and result["isError"] is True, result
    assert result["structuredContent"]["error"]["code"] == "approval_required", result


async def test_a_method_the_revision_lacks_is_404_and_binds_nothing(server) -> None:
    _, claim = server.create_session()
    for method in ("initialize", "ping", "resources/list"):
        response = await modern_post(server.mcp_url, claim, method)
        assert response.status_code == 404 and error_of(response)["code"] == -32601, (method, response.text)
    # Nothing was bound: the claim still opens a connection of an older revision.
    opened = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert opened.status_code == 200 and opened.headers.get("mcp-session-id"), opened.text

"""What the client puts on the wire and how it reads answers, checked without a runner
(httpx.MockTransport): the merge-patch document, the token exchange form, and error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from leasehold_client import (
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_ADMIN_KEY,
    TOKEN_TYPE_JWT,
    AsyncLeasehold,
    ConflictError,
    Leasehold,
    LeaseholdError,
    OAuthError,
    TooManyRequestsError,
)

SESSION = {
    "id": "ses_1", "tenant_id": "acme", "actor_id": "alice", "workspace_id": "w1", "version": 2,
    "lease": {"id": "lse_1", "issued_at": "2026-12-05T10:00:00Z", "expires_at": "2026-12-05T11:00:00Z"},
    "created_at": "2026-12-05T10:00:00Z", "updated_at": "2026-12-05T10:00:01Z",
}


def _client(handler: Callable[[httpx.Request], httpx.Response], key: str | None = "op-key") -> Leasehold:
    return Leasehold("http://runner.test", key, http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def _recording(response: httpx.Response) -> tuple[list[httpx.Request], Callable[[httpx.Request], httpx.Response]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response

    return seen, handler


def test_patch_sends_a_merge_patch_document() -> None:
    seen, handler = _recording(httpx.Response(200, json={"session": SESSION}))
    session = _client(handler).sessions.patch(
        "ses_1", denied_tool_names=("kb.internal_*",), allowed_tool_names=None, server_id=None
    )
    request = seen[0]
    assert (request.method, request.url.path) == ("PATCH", "/api/v1/sessions/ses_1")
    assert request.headers["content-type"] == "application/merge-patch+json"
    assert request.headers["authorization"] == "Bearer op-key"
    # Omitted arguments are absent, None is null.
    assert json.loads(request.content) == {"denied_tool_names": ["kb.internal_*"], "allowed_tool_names": None, "server_id": None}
    assert session.id == "ses_1" and session.lease.id == "lse_1" and session.allowed_tool_names is None


def test_create_leaves_unset_optionals_out() -> None:
    seen, handler = _recording(httpx.Response(201, json={"session": SESSION, "claim": "a.b.c"}))
    created = _client(handler).sessions.create(
        tenant_id="acme", workspace_id="w1", actor_id="alice", allowed_tool_names=["vivi.kb_*"]
    )
    assert json.loads(seen[0].content) == {
        "tenant_id": "acme", "actor_id": "alice", "workspace_id": "w1", "allowed_tool_names": ["vivi.kb_*"],
    }
    assert created.claim == "a.b.c" and created.id == "ses_1"


def test_path_segments_are_escaped() -> None:
    seen, handler = _recording(httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}}))
    with pytest.raises(LeaseholdError):
        _client(handler).sessions.get("../workspaces")
    assert seen[0].url.raw_path == b"/api/v1/sessions/..%2Fworkspaces"


def test_claim_without_options_sends_no_body() -> None:
    seen, handler = _recording(httpx.Response(201, json={"session": SESSION, "claim": "x.y.z"}))
    _client(handler).claims.mint("ses_1")
    assert seen[0].content == b"" and "content-type" not in seen[0].headers


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (409, {"error": {"code": "session_revoked", "message": "session ses_1 was revoked"}}, ConflictError, "session_revoked"),
        (429, {"error": {"code": "tenant_at_limit", "message": "cap"}}, TooManyRequestsError, "tenant_at_limit"),
        (502, "<html>bad gateway</html>", LeaseholdError, "http_502"),
    ],
)
def test_errors_are_typed(status: int, body: Any, cls: type[LeaseholdError], code: str) -> None:
    response = httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)
    _, handler = _recording(response)
    with pytest.raises(cls) as raised:
        _client(handler).sessions.revoke("ses_1")
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message


def test_exchange_form_and_result() -> None:
    answer = {
        "access_token": "c.l.m", "issued_token_type": "urn:leasehold:params:oauth:token-type:session-claim",
        "token_type": "Bearer", "expires_in": 900, "scope": "session:ses_1",
    }
    seen, handler = _recording(httpx.Response(200, json=answer))
    exchanged = _client(handler, key=None).oauth.exchange(
        "jwt-text", "ses_1", resource="http://runner.test/mcp", audience="aud-1"
    )
    request = seen[0]
    assert (request.method, request.url.path) == ("POST", "/oauth2/token")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert {k: v[0] for k, v in parse_qs(request.content.decode()).items()} == {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE, "subject_token": "jwt-text", "subject_token_type": TOKEN_TYPE_JWT,
        "scope": "session:ses_1", "resource": "http://runner.test/mcp", "audience": "aud-1",
    }
    assert exchanged.claim == "c.l.m" and exchanged.session_id == "ses_1" and exchanged.expires_in == 900


def test_exchange_with_an_admin_key_and_its_refusal() -> None:
    seen, handler = _recording(
        httpx.Response(400, json={"error": "invalid_grant", "error_description": "not this tenant's key"})
    )
    with pytest.raises(OAuthError) as refused:
        _client(handler).oauth.exchange("lh_tk_x", "ses_1", subject_token_type="admin_key")
    assert parse_qs(seen[0].content.decode())["subject_token_type"] == [TOKEN_TYPE_ADMIN_KEY]
    assert (refused.value.error, refused.value.description, refused.value.status) == (
        "invalid_grant", "not this tenant's key", 400,
    )


@pytest.mark.anyio
async def test_async_client_sends_the_same() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"session": SESSION})

    async with AsyncLeasehold(
        "http://runner.test/api/v1", "k", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    ) as lh:
        await lh.sessions.patch("ses_1", bundle_id="support-desk", server_id=None)
    assert seen[0].url == "http://runner.test/api/v1/sessions/ses_1"
    assert json.loads(seen[0].content) == {"bundle_id": "support-desk", "server_id": None}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

"""Each API operation once: the request it sends and how its answer is read.

The sync and async clients both run these; they differ only in how the request is sent.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from .errors import error_from_response, oauth_error_from_response
from .models import (
    AdminKey,
    Approval,
    AuditRecord,
    CacheStatistics,
    ExchangedClaim,
    OAuthMetadata,
    PolicyStatus,
    ServerStatus,
    Session,
    SessionWithClaim,
    Workspace,
    WorkspaceDetail,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Literal[_Unset.UNSET] = _Unset.UNSET
"""A merge-patch field left out of the document: the session keeps its value (``None`` clears it)."""

Unset = Literal[_Unset.UNSET]

GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ADMIN_KEY = "urn:leasehold:params:oauth:token-type:admin-key"
TOKEN_TYPE_SESSION_CLAIM = "urn:leasehold:params:oauth:token-type:session-claim"
SUBJECT_TOKEN_TYPES = {"jwt": TOKEN_TYPE_JWT, "admin_key": TOKEN_TYPE_ADMIN_KEY}


def operation(method: str, path: str) -> Callable[[F], F]:
    """Marks a client method as the implementation of one documented operation (method, path as in
    docs/admin-api.yaml); the coverage test reads these marks."""

    def mark(function: F) -> F:
        function.__leasehold_operation__ = (method.upper(), path)  # type: ignore[attr-defined]
        return function

    return mark


@dataclass(frozen=True)
class Op(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] | None = None
    body: bytes | None = None
    content_type: str | None = None
    authenticated: bool = True

    def request_kwargs(self) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        kwargs: dict[str, Any] = {"headers": headers}
        if self.params:
            kwargs["params"] = dict(self.params)
        if self.body is not None:
            kwargs["content"] = self.body
        return kwargs


def _segment(value: str) -> str:
    return quote(value, safe="")


def _json_body(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


def _reader(build: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    def read(response: httpx.Response) -> T:
        return build(_checked(response).json())

    return read


def _nothing(response: httpx.Response) -> None:
    _checked(response)


def _json_op(method: str, path: str, body: Mapping[str, Any] | None, parse: Callable[[httpx.Response], T],
             content_type: str = "application/json", params: Mapping[str, str] | None = None) -> Op[T]:
    if body is None:
        return Op(method, path, parse, params=params)
    return Op(method, path, parse, params=params, body=_json_body(body), content_type=content_type)


def _compact(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _query(**fields: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            out[name] = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            out[name] = str(value)
    return out


def _list(value: Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("tool name patterns are a list of strings, not one string")
    return list(value)


# Health ------------------------------------------------------------------------------------------


def health() -> Op[dict[str, Any]]:
    return Op("GET", "/healthz", _reader(dict), authenticated=False)


def readiness() -> Op[bool]:
    def read(response: httpx.Response) -> bool:
        if response.status_code in (200, 503):
            return response.status_code == 200
        raise error_from_response(response)

    return Op("GET", "/readyz", read, authenticated=False)


# Workspaces --------------------------------------------------------------------------------------


def create_workspace(tenant_id: str, workspace_id: str, root: str | None, read_only: bool | None) -> Op[Workspace]:
    body = _compact(tenant_id=tenant_id, workspace_id=workspace_id, root=root, read_only=read_only)
    return _json_op("POST", "/api/v1/workspaces", body, _reader(Workspace.from_json))


def list_workspaces(tenant_id: str | None) -> Op[list[Workspace]]:
    return Op(
        "GET", "/api/v1/workspaces", _reader(lambda data: [Workspace.from_json(w) for w in data["workspaces"]]),
        params=_query(tenant_id=tenant_id),
    )


def get_workspace(tenant_id: str, workspace_id: str) -> Op[WorkspaceDetail]:
    path = f"/api/v1/workspaces/{_segment(tenant_id)}/{_segment(workspace_id)}"
    return Op("GET", path, _reader(WorkspaceDetail.from_json))


def delete_workspace(tenant_id: str, workspace_id: str, purge: bool) -> Op[None]:
    path = f"/api/v1/workspaces/{_segment(tenant_id)}/{_segment(workspace_id)}"
    return Op("DELETE", path, _nothing, params=_query(purge=True) if purge else None)


# Sessions ----------------------------------------------------------------------------------------


def _session(data: Any) -> Session:
    return Session.from_json(data["session"])


def create_session(
    *, tenant_id: str, workspace_id: str, actor_id: str, server_id: str | None, bundle_id: str | None,
    allowed_tool_names: Sequence[str] | None, denied_tool_names: Sequence[str] | None,
    lease_ttl_seconds: int | None, claim_ttl_seconds: int | None,
) -> Op[SessionWithClaim]:
    body = _compact(
        tenant_id=tenant_id, actor_id=actor_id, workspace_id=workspace_id, server_id=server_id, bundle_id=bundle_id,
        allowed_tool_names=_list(allowed_tool_names), denied_tool_names=_list(denied_tool_names),
        lease_ttl_seconds=lease_ttl_seconds, claim_ttl_seconds=claim_ttl_seconds,
    )
    return _json_op("POST", "/api/v1/sessions", body, _reader(SessionWithClaim.from_json))


def get_session(session_id: str) -> Op[Session]:
    return Op("GET", f"/api/v1/sessions/{_segment(session_id)}", _reader(_session))


def merge_patch(**fields: Any) -> dict[str, Any]:
    """The merge-patch document: UNSET fields are left out, None becomes null."""
    document: dict[str, Any] = {}
    for name, value in fields.items():
        if value is UNSET:
            continue
        if name in ("allowed_tool_names", "denied_tool_names") and value is not None:
            value = _list(value)
        document[name] = value
    return document


def patch_session(session_id: str, document: Mapping[str, Any]) -> Op[Session]:
    return _json_op(
        "PATCH", f"/api/v1/sessions/{_segment(session_id)}", document, _reader(_session),
        content_type="application/merge-patch+json",
    )


def revoke_session(session_id: str) -> Op[Session]:
    return Op("DELETE", f"/api/v1/sessions/{_segment(session_id)}", _reader(_session))


# Claims and leases -------------------------------------------------------------------------------


def mint_claim(
    session_id: str, ttl_seconds: int | None, allowed_tools: Sequence[str] | None, approval_fingerprint: str | None
) -> Op[SessionWithClaim]:
    body = _compact(ttl_seconds=ttl_seconds, allowed_tools=_list(allowed_tools), approval_fingerprint=approval_fingerprint)
    return _json_op(
        "POST", f"/api/v1/sessions/{_segment(session_id)}/claims", body or None, _reader(SessionWithClaim.from_json)
    )


def renew_lease(session_id: str, ttl_seconds: int | None) -> Op[SessionWithClaim]:
    body = _compact(ttl_seconds=ttl_seconds)
    return _json_op(
        "POST", f"/api/v1/sessions/{_segment(session_id)}/lease", body or None, _reader(SessionWithClaim.from_json)
    )


def revoke_lease(session_id: str) -> Op[Session]:
    return Op("DELETE", f"/api/v1/sessions/{_segment(session_id)}/lease", _reader(_session))


# Admin keys, policy, cache, servers --------------------------------------------------------------


def create_admin_key(tenant_id: str) -> Op[AdminKey]:
    return Op("POST", f"/api/v1/tenants/{_segment(tenant_id)}/admin-keys", _reader(AdminKey.from_json))


def policy_status() -> Op[PolicyStatus]:
    return Op("GET", "/api/v1/policy", _reader(PolicyStatus.from_json))


def cache_statistics() -> Op[CacheStatistics]:
    return Op("GET", "/api/v1/cache", _reader(CacheStatistics.from_json))


def list_servers() -> Op[list[ServerStatus]]:
    return Op("GET", "/api/v1/servers", _reader(lambda data: [ServerStatus.from_json(s) for s in data["servers"]]))


# Approvals ---------------------------------------------------------------------------------------


def list_approvals(
    session_id: str | None, status: str | None, tenant_id: str | None, limit: int | None
) -> Op[list[Approval]]:
    return Op(
        "GET", "/api/v1/approvals", _reader(lambda data: [Approval.from_json(a) for a in data["approvals"]]),
        params=_query(session_id=session_id, status=status, tenant_id=tenant_id, limit=limit),
    )


def _approval(data: Any) -> Approval:
    return Approval.from_json(data["approval"])


def get_approval(approval_id: str) -> Op[Approval]:
    return Op("GET", f"/api/v1/approvals/{_segment(approval_id)}", _reader(_approval))


def grant_approval(approval_id: str, ttl_seconds: int | None, uses: int | None) -> Op[Approval]:
    body = _compact(ttl_seconds=ttl_seconds, uses=uses)
    return _json_op("POST", f"/api/v1/approvals/{_segment(approval_id)}/grant", body or None, _reader(_approval))


def deny_approval(approval_id: str, reason: str | None = None) -> Op[Approval]:
    body = _compact(reason=reason)
    return _json_op("POST", f"/api/v1/approvals/{_segment(approval_id)}/deny", body or None, _reader(_approval))


# Audit -------------------------------------------------------------------------------------------


def audit_records(
    tenant_id: str | None, session_id: str | None, since: datetime | str | None, after_seq: int | None,
    limit: int | None,
) -> Op[list[AuditRecord]]:
    return Op(
        "GET", "/api/v1/audit", _reader(lambda data: [AuditRecord.from_json(r) for r in data["records"]]),
        params=_query(tenant_id=tenant_id, session_id=session_id, since=since, after_seq=after_seq, limit=limit),
    )


# OAuth token exchange ----------------------------------------------------------------------------


def _oauth_reader(build: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    def read(response: httpx.Response) -> T:
        if response.status_code >= 400:
            raise oauth_error_from_response(response)
        return build(response.json())

    return read


def token_exchange(
    subject_token: str, session_id: str, subject_token_type: str, resource: str | None, audience: str | None,
    requested_token_type: str | None, grant_type: str = GRANT_TYPE_TOKEN_EXCHANGE,
) -> Op[ExchangedClaim]:
    from urllib.parse import urlencode

    form = _compact(
        grant_type=grant_type, subject_token=subject_token,
        subject_token_type=SUBJECT_TOKEN_TYPES.get(subject_token_type, subject_token_type),
        scope=f"session:{session_id}", resource=resource, audience=audience,
        requested_token_type=requested_token_type,
    )
    return Op(
        "POST", "/oauth2/token", _oauth_reader(ExchangedClaim.from_json), body=urlencode(form).encode(),
        content_type="application/x-www-form-urlencoded", authenticated=False,
    )


def oauth_metadata() -> Op[OAuthMetadata]:
    return Op(
        "GET", "/.well-known/oauth-authorization-server", _oauth_reader(OAuthMetadata.from_json), authenticated=False
    )

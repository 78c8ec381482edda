"""``Leasehold`` (sync) and ``AsyncLeasehold`` (async): the admin API, the token exchange, and MCP
connections bound to a session.

Both take the runner's base URL (``http://127.0.0.1:8080``: the admin API is under ``/api/v1``,
MCP at ``/mcp``) and an admin key (the operator key, or a tenant admin key that manages only its
own tenant)::

    lh = Leasehold("http://127.0.0.1:8080", api_key)
    created = lh.sessions.create(tenant_id="acme", workspace_id="demo", actor_id="alice",
                                 allowed_tool_names=["vivi.kb_*"], denied_tool_names=["vivi.internal_*"])
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from . import _ops as ops
from ._ops import UNSET, Op, Unset, operation
from .models import (
    AdminKey,
    Approval,
    ApprovalStatus,
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

if TYPE_CHECKING:
    from mcp import ClientSession

__all__ = ["AsyncLeasehold", "Leasehold", "DEFAULT_BASE_URL"]

T = TypeVar("T")
_List = list  # the resources define `list` methods, which would shadow the builtin in annotations
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0


def _base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get("LEASEHOLD_URL") or DEFAULT_BASE_URL
    url = url.rstrip("/")
    # Accept the admin API's or the MCP endpoint's URL too: the client needs the listener's root.
    for suffix in ("/api/v1", "/mcp"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def _api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else os.environ.get("LEASEHOLD_API_KEY") or None


class _Base:
    base_url: str
    _api_key: str | None

    @property
    def mcp_url(self) -> str:
        """The MCP endpoint (``<base>/mcp``): what ``resource`` names in a token exchange."""
        return f"{self.base_url}/mcp"

    def server_mcp_url(self, server_id: str) -> str:
        """The endpoint narrowed to one server (``<base>/mcp/servers/<id>``)."""
        return f"{self.base_url}/mcp/servers/{ops._segment(server_id)}"

    def _request_args(self, op: Op[Any]) -> dict[str, Any]:
        kwargs = op.request_kwargs()
        if op.authenticated:
            if not self._api_key:
                raise ValueError("this operation needs an admin key: pass api_key= (or set LEASEHOLD_API_KEY)")
            kwargs["headers"]["Authorization"] = f"Bearer {self._api_key}"
        return kwargs


# =================================================================================================
# Sync
# =================================================================================================


class _Resource:
    def __init__(self, client: Leasehold) -> None:
        self._client = client

    def _run(self, op: Op[T]) -> T:
        return self._client._execute(op)


class Workspaces(_Resource):
    @operation("POST", "/api/v1/workspaces")
    def create(
        self, *, tenant_id: str, workspace_id: str, root: str | None = None, read_only: bool | None = None
    ) -> Workspace:
        """Registers a workspace; without ``root`` the runner allocates its directory (only the
        operator key may name an existing ``root`` inside ``<base>/<tenant>/``)."""
        return self._run(ops.create_workspace(tenant_id, workspace_id, root, read_only))

    @operation("GET", "/api/v1/workspaces")
    def list(self, *, tenant_id: str | None = None) -> _List[Workspace]:
        return self._run(ops.list_workspaces(tenant_id))

    @operation("GET", "/api/v1/workspaces/{tenant_id}/{workspace_id}")
    def get(self, tenant_id: str, workspace_id: str) -> WorkspaceDetail:
        return self._run(ops.get_workspace(tenant_id, workspace_id))

    @operation("DELETE", "/api/v1/workspaces/{tenant_id}/{workspace_id}")
    def delete(self, tenant_id: str, workspace_id: str, *, purge: bool = False) -> None:
        """Removes the registration; ``purge`` (operator only) also deletes the directory."""
        self._run(ops.delete_workspace(tenant_id, workspace_id, purge))


class Sessions(_Resource):
    @operation("POST", "/api/v1/sessions")
    def create(
        self, *, tenant_id: str, workspace_id: str, actor_id: str, server_id: str | None = None,
        bundle_id: str | None = None, allowed_tool_names: Sequence[str] | None = None,
        denied_tool_names: Sequence[str] | None = None, lease_ttl_seconds: int | None = None,
        claim_ttl_seconds: int | None = None,
    ) -> SessionWithClaim:
        """Creates a session (scope: at most one of ``server_id``/``bundle_id``, allow and deny
        patterns, deny wins) with a fresh lease, and returns it with a claim for that lease."""
        return self._run(ops.create_session(
            tenant_id=tenant_id, workspace_id=workspace_id, actor_id=actor_id, server_id=server_id,
            bundle_id=bundle_id, allowed_tool_names=allowed_tool_names, denied_tool_names=denied_tool_names,
            lease_ttl_seconds=lease_ttl_seconds, claim_ttl_seconds=claim_ttl_seconds,
        ))

    @operation("GET", "/api/v1/sessions/{id}")
    def get(self, session_id: str) -> Session:
        return self._run(ops.get_session(session_id))

    @operation("PATCH", "/api/v1/sessions/{id}")
    def patch(
        self, session_id: str, *, actor_id: str | Unset = UNSET, workspace_id: str | Unset = UNSET,
        server_id: str | None | Unset = UNSET, bundle_id: str | None | Unset = UNSET,
        allowed_tool_names: Sequence[str] | None | Unset = UNSET,
        denied_tool_names: Sequence[str] | None | Unset = UNSET, claim_ttl_seconds: int | None | Unset = UNSET,
    ) -> Session:
        """JSON merge-patch: an omitted argument leaves the field unchanged, ``None`` clears it.
        Connected clients whose visible tools change get ``notifications/tools/list_changed``; a
        new actor or workspace (a hand-off) closes the session's MCP connections."""
        document = ops.merge_patch(
            actor_id=actor_id, workspace_id=workspace_id, server_id=server_id, bundle_id=bundle_id,
            allowed_tool_names=allowed_tool_names, denied_tool_names=denied_tool_names,
            claim_ttl_seconds=claim_ttl_seconds,
        )
        return self._run(ops.patch_session(session_id, document))

    def patch_document(self, session_id: str, document: dict[str, Any]) -> Session:
        """Sends a merge-patch document as it is (for fields this client does not name yet)."""
        return self._run(ops.patch_session(session_id, document))

    @operation("DELETE", "/api/v1/sessions/{id}")
    def revoke(self, session_id: str) -> Session:
        """Revokes the session: every claim of it is refused and its connections close."""
        return self._run(ops.revoke_session(session_id))


class Claims(_Resource):
    @operation("POST", "/api/v1/sessions/{id}/claims")
    def mint(
        self, session_id: str, *, ttl_seconds: int | None = None, allowed_tools: Sequence[str] | None = None,
        approval_fingerprint: str | None = None,
    ) -> SessionWithClaim:
        """A fresh claim for the session's current lease (one per MCP connection);
        ``allowed_tools`` narrows it further, ``approval_fingerprint`` names a granted approval."""
        return self._run(ops.mint_claim(session_id, ttl_seconds, allowed_tools, approval_fingerprint))


class Leases(_Resource):
    @operation("POST", "/api/v1/sessions/{id}/lease")
    def renew(self, session_id: str, *, ttl_seconds: int | None = None) -> SessionWithClaim:
        """A new lease and a claim for it; the old lease's claims are refused from now on."""
        return self._run(ops.renew_lease(session_id, ttl_seconds))

    @operation("DELETE", "/api/v1/sessions/{id}/lease")
    def revoke(self, session_id: str) -> Session:
        """Ends the lease now; calls are refused until a renewal."""
        return self._run(ops.revoke_lease(session_id))


class Approvals(_Resource):
    @operation("GET", "/api/v1/approvals")
    def list(
        self, *, session_id: str | None = None, status: ApprovalStatus | None = None, tenant_id: str | None = None,
        limit: int | None = None,
    ) -> _List[Approval]:
        return self._run(ops.list_approvals(session_id, status, tenant_id, limit))

    @operation("GET", "/api/v1/approvals/{id}")
    def get(self, approval_id: str) -> Approval:
        return self._run(ops.get_approval(approval_id))

    @operation("POST", "/api/v1/approvals/{id}/grant")
    def grant(self, approval_id: str, *, ttl_seconds: int | None = None, uses: int | None = None) -> Approval:
        return self._run(ops.grant_approval(approval_id, ttl_seconds, uses))

    @operation("POST", "/api/v1/approvals/{id}/deny")
    def deny(self, approval_id: str, *, reason: str | None = None) -> Approval:
        return self._run(ops.deny_approval(approval_id, reason))


class Audit(_Resource):
    @operation("GET", "/api/v1/audit")
    def list(
        self, *, tenant_id: str | None = None, session_id: str | None = None, since: datetime | str | None = None,
        after_seq: int | None = None, limit: int | None = None,
    ) -> _List[AuditRecord]:
        """One page of records, oldest first (a tenant admin key sees only its own tenant)."""
        return self._run(ops.audit_records(tenant_id, session_id, since, after_seq, limit))

    def iter(
        self, *, tenant_id: str | None = None, session_id: str | None = None, since: datetime | str | None = None,
        after_seq: int | None = None, page_size: int = 1000,
    ) -> Iterator[AuditRecord]:
        """Every record from ``after_seq`` on, page by page."""
        after = after_seq
        while True:
            page = self.list(tenant_id=tenant_id, session_id=session_id, since=since, after_seq=after, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].seq


class AdminKeys(_Resource):
    @operation("POST", "/api/v1/tenants/{tenant_id}/admin-keys")
    def create(self, tenant_id: str) -> AdminKey:
        """A tenant admin key (operator only); its value is shown once."""
        return self._run(ops.create_admin_key(tenant_id))


class Policy(_Resource):
    @operation("GET", "/api/v1/policy")
    def get(self) -> PolicyStatus:
        return self._run(ops.policy_status())


class Cache(_Resource):
    @operation("GET", "/api/v1/cache")
    def statistics(self) -> CacheStatistics:
        return self._run(ops.cache_statistics())


class Servers(_Resource):
    @operation("GET", "/api/v1/servers")
    def list(self) -> _List[ServerStatus]:
        return self._run(ops.list_servers())


class OAuth(_Resource):
    @operation("POST", "/oauth2/token")
    def exchange(
        self, subject_token: str, session_id: str, *, subject_token_type: str = "jwt", resource: str | None = None,
        audience: str | None = None, requested_token_type: str | None = None,
    ) -> ExchangedClaim:
        """RFC 8693 token exchange: a JWT from a configured issuer (``subject_token_type="jwt"``)
        or a tenant admin key (``"admin_key"``), or any URN, for a claim of ``session_id``.
        Needs no admin key on the client. Refusals raise ``OAuthError``."""
        return self._run(ops.token_exchange(
            subject_token, session_id, subject_token_type, resource, audience, requested_token_type
        ))

    @operation("GET", "/.well-known/oauth-authorization-server")
    def metadata(self) -> OAuthMetadata:
        return self._run(ops.oauth_metadata())


class Leasehold(_Base):
    """Synchronous client. Use as a context manager, or call ``close()``."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = _base_url(base_url)
        self._api_key = _api_key(api_key)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self.workspaces = Workspaces(self)
        self.sessions = Sessions(self)
        self.claims = Claims(self)
        self.leases = Leases(self)
        self.approvals = Approvals(self)
        self.audit = Audit(self)
        self.admin_keys = AdminKeys(self)
        self.policy = Policy(self)
        self.cache = Cache(self)
        self.servers = Servers(self)
        self.oauth = OAuth(self)

    def _execute(self, op: Op[T]) -> T:
        response = self._http.request(op.method, self.base_url + op.path, **self._request_args(op))
        return op.parse(response)

    @operation("GET", "/healthz")
    def health(self) -> dict[str, Any]:
        """``{"status": "ok", "version": ...}`` (no key needed)."""
        return self._execute(ops.health())

    @operation("GET", "/readyz")
    def ready(self) -> bool:
        """True while the runner can run calls (False while its audit log refuses writes)."""
        return self._execute(ops.readiness())

    def mcp_session(
        self, session_id: str, *, claim: str | None = None, server_id: str | None = None,
        allowed_tools: Sequence[str] | None = None, message_handler: Any = None, **session_kwargs: Any,
    ) -> AbstractAsyncContextManager[ClientSession]:
        """An initialized official-SDK ``mcp.ClientSession`` for ``session_id`` (async context
        manager), on a freshly minted claim unless ``claim`` is given. Needs the ``mcp`` extra."""
        from .mcp import connect

        return connect(
            self, session_id, claim=claim, server_id=server_id, allowed_tools=allowed_tools,
            message_handler=message_handler, **session_kwargs,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Leasehold:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# =================================================================================================
# Async
# =================================================================================================


class _AsyncResource:
    def __init__(self, client: AsyncLeasehold) -> None:
        self._client = client

    async def _run(self, op: Op[T]) -> T:
        return await self._client._execute(op)


class AsyncWorkspaces(_AsyncResource):
    @operation("POST", "/api/v1/workspaces")
    async def create(
        self, *, tenant_id: str, workspace_id: str, root: str | None = None, read_only: bool | None = None
    ) -> Workspace:
        return await self._run(ops.create_workspace(tenant_id, workspace_id, root, read_only))

    @operation("GET", "/api/v1/workspaces")
    async def list(self, *, tenant_id: str | None = None) -> _List[Workspace]:
        return await self._run(ops.list_workspaces(tenant_id))

    @operation("GET", "/api/v1/workspaces/{tenant_id}/{workspace_id}")
    async def get(self, tenant_id: str, workspace_id: str) -> WorkspaceDetail:
        return await self._run(ops.get_workspace(tenant_id, workspace_id))

    @operation("DELETE", "/api/v1/workspaces/{tenant_id}/{workspace_id}")
    async def delete(self, tenant_id: str, workspace_id: str, *, purge: bool = False) -> None:
        await self._run(ops.delete_workspace(tenant_id, workspace_id, purge))


class AsyncSessions(_AsyncResource):
    @operation("POST", "/api/v1/sessions")
    async def create(
        self, *, tenant_id: str, workspace_id: str, actor_id: str, server_id: str | None = None,
        bundle_id: str | None = None, allowed_tool_names: Sequence[str] | None = None,
        denied_tool_names: Sequence[str] | None = None, lease_ttl_seconds: int | None = None,
        claim_ttl_seconds: int | None = None,
    ) -> SessionWithClaim:
        return await self._run(ops.create_session(
            tenant_id=tenant_id, workspace_id=workspace_id, actor_id=actor_id, server_id=server_id,
            bundle_id=bundle_id, allowed_tool_names=allowed_tool_names, denied_tool_names=denied_tool_names,
            lease_ttl_seconds=lease_ttl_seconds, claim_ttl_seconds=claim_ttl_seconds,
        ))

    @operation("GET", "/api/v1/sessions/{id}")
    async def get(self, session_id: str) -> Session:
        return await self._run(ops.get_session(session_id))

    @operation("PATCH", "/api/v1/sessions/{id}")
    async def patch(
        self, session_id: str, *, actor_id: str | Unset = UNSET, workspace_id: str | Unset = UNSET,
        server_id: str | None | Unset = UNSET, bundle_id: str | None | Unset = UNSET,
        allowed_tool_names: Sequence[str] | None | Unset = UNSET,
        denied_tool_names: Sequence[str] | None | Unset = UNSET, claim_ttl_seconds: int | None | Unset = UNSET,
    ) -> Session:
        document = ops.merge_patch(
            actor_id=actor_id, workspace_id=workspace_id, server_id=server_id, bundle_id=bundle_id,
            allowed_tool_names=allowed_tool_names, denied_tool_names=denied_tool_names,
            claim_ttl_seconds=claim_ttl_seconds,
        )
        return await self._run(ops.patch_session(session_id, document))

    async def patch_document(self, session_id: str, document: dict[str, Any]) -> Session:
        return await self._run(ops.patch_session(session_id, document))

    @operation("DELETE", "/api/v1/sessions/{id}")
    async def revoke(self, session_id: str) -> Session:
        return await self._run(ops.revoke_session(session_id))


class AsyncClaims(_AsyncResource):
    @operation("POST", "/api/v1/sessions/{id}/claims")
    async def mint(
        self, session_id: str, *, ttl_seconds: int | None = None, allowed_tools: Sequence[str] | None = None,
        approval_fingerprint: str | None = None,
    ) -> SessionWithClaim:
        return await self._run(ops.mint_claim(session_id, ttl_seconds, allowed_tools, approval_fingerprint))


class AsyncLeases(_AsyncResource):
    @operation("POST", "/api/v1/sessions/{id}/lease")
    async def renew(self, session_id: str, *, ttl_seconds: int | None = None) -> SessionWithClaim:
        return await self._run(ops.renew_lease(session_id, ttl_seconds))

    @operation("DELETE", "/api/v1/sessions/{id}/lease")
    async def revoke(self, session_id: str) -> Session:
        return await self._run(ops.revoke_lease(session_id))


class AsyncApprovals(_AsyncResource):
    @operation("GET", "/api/v1/approvals")
    async def list(
        self, *, session_id: str | None = None, status: ApprovalStatus | None = None, tenant_id: str | None = None,
        limit: int | None = None,
    ) -> _List[Approval]:
        return await self._run(ops.list_approvals(session_id, status, tenant_id, limit))

    @operation("GET", "/api/v1/approvals/{id}")
    async def get(self, approval_id: str) -> Approval:
        return await self._run(ops.get_approval(approval_id))

    @operation("POST", "/api/v1/approvals/{id}/grant")
    async def grant(self, approval_id: str, *, ttl_seconds: int | None = None, uses: int | None = None) -> Approval:
        return await self._run(ops.grant_approval(approval_id, ttl_seconds, uses))

    @operation("POST", "/api/v1/approvals/{id}/deny")
    async def deny(self, approval_id: str, *, reason: str | None = None) -> Approval:
        return await self._run(ops.deny_approval(approval_id, reason))


class AsyncAudit(_AsyncResource):
    @operation("GET", "/api/v1/audit")
    async def list(
        self, *, tenant_id: str | None = None, session_id: str | None = None, since: datetime | str | None = None,
        after_seq: int | None = None, limit: int | None = None,
    ) -> _List[AuditRecord]:
        return await self._run(ops.audit_records(tenant_id, session_id, since, after_seq, limit))

    async def iter(
        self, *, tenant_id: str | None = None, session_id: str | None = None, since: datetime | str | None = None,
        after_seq: int | None = None, page_size: int = 1000,
    ) -> AsyncIterator[AuditRecord]:
        after = after_seq
        while True:
            page = await self.list(
                tenant_id=tenant_id, session_id=session_id, since=since, after_seq=after, limit=page_size
            )
            for record in page:
                yield record
            if len(page) < page_size:
                return
            after = page[-1].seq


class AsyncAdminKeys(_AsyncResource):
    @operation("POST", "/api/v1/tenants/{tenant_id}/admin-keys")
    async def create(self, tenant_id: str) -> AdminKey:
        return await self._run(ops.create_admin_key(tenant_id))


class AsyncPolicy(_AsyncResource):
    @operation("GET", "/api/v1/policy")
    async def get(self) -> PolicyStatus:
        return await self._run(ops.policy_status())


class AsyncCache(_AsyncResource):
    @operation("GET", "/api/v1/cache")
    async def statistics(self) -> CacheStatistics:
        return await self._run(ops.cache_statistics())


class AsyncServers(_AsyncResource):
    @operation("GET", "/api/v1/servers")
    async def list(self) -> _List[ServerStatus]:
        return await self._run(ops.list_servers())


class AsyncOAuth(_AsyncResource):
    @operation("POST", "/oauth2/token")
    async def exchange(
        self, subject_token: str, session_id: str, *, subject_token_type: str = "jwt", resource: str | None = None,
        audience: str | None = None, requested_token_type: str | None = None,
    ) -> ExchangedClaim:
        return await self._run(ops.token_exchange(
            subject_token, session_id, subject_token_type, resource, audience, requested_token_type
        ))

    @operation("GET", "/.well-known/oauth-authorization-server")
    async def metadata(self) -> OAuthMetadata:
        return await self._run(ops.oauth_metadata())


class AsyncLeasehold(_Base):
    """Asynchronous client (``async with AsyncLeasehold(...) as lh``, or ``await lh.aclose()``)."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = _base_url(base_url)
        self._api_key = _api_key(api_key)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self.workspaces = AsyncWorkspaces(self)
        self.sessions = AsyncSessions(self)
        self.claims = AsyncClaims(self)
        self.leases = AsyncLeases(self)
        self.approvals = AsyncApprovals(self)
        self.audit = AsyncAudit(self)
        self.admin_keys = AsyncAdminKeys(self)
        self.policy = AsyncPolicy(self)
        self.cache = AsyncCache(self)
        self.servers = AsyncServers(self)
        self.oauth = AsyncOAuth(self)

    async def _execute(self, op: Op[T]) -> T:
        response = await self._http.request(op.method, self.base_url + op.path, **self._request_args(op))
        return op.parse(response)

    @operation("GET", "/healthz")
    async def health(self) -> dict[str, Any]:
        return await self._execute(ops.health())

    @operation("GET", "/readyz")
    async def ready(self) -> bool:
        return await self._execute(ops.readiness())

    def mcp_session(
        self, session_id: str, *, claim: str | None = None, server_id: str | None = None,
        allowed_tools: Sequence[str] | None = None, message_handler: Any = None, **session_kwargs: Any,
    ) -> AbstractAsyncContextManager[ClientSession]:
        """An initialized official-SDK ``mcp.ClientSession`` for ``session_id`` (async context
        manager), on a freshly minted claim unless ``claim`` is given. Needs the ``mcp`` extra."""
        from .mcp import connect

        return connect(
            self, session_id, claim=claim, server_id=server_id, allowed_tools=allowed_tools,
            message_handler=message_handler, **session_kwargs,
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncLeasehold:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

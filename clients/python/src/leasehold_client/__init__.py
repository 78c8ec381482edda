"""Leasehold's Python client: the admin API (sync ``Leasehold``, async ``AsyncLeasehold``), the
OAuth token exchange, and official-SDK MCP sessions bound to a Leasehold session
(``leasehold_client.mcp``, with the ``mcp`` extra).

    from leasehold_client import Leasehold

    with Leasehold("http://127.0.0.1:8080", api_key) as lh:
        created = lh.sessions.create(tenant_id="acme", workspace_id="demo", actor_id="alice",
                                     allowed_tool_names=["vivi.kb_*"], denied_tool_names=["vivi.internal_*"])
"""

from ._ops import (
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_ADMIN_KEY,
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_SESSION_CLAIM,
    UNSET,
)
from .client import DEFAULT_BASE_URL, AsyncLeasehold, Leasehold
from .errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    LeaseholdError,
    NotFoundError,
    OAuthError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from .models import (
    AdminKey,
    Approval,
    AuditRecord,
    CacheStatistics,
    ExchangedClaim,
    Lease,
    OAuthMetadata,
    PolicyStatus,
    ServerStatus,
    Session,
    SessionWithClaim,
    Workspace,
    WorkspaceDetail,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "GRANT_TYPE_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ADMIN_KEY",
    "TOKEN_TYPE_JWT",
    "TOKEN_TYPE_SESSION_CLAIM",
    "UNSET",
    "AdminKey",
    "Approval",
    "AsyncLeasehold",
    "AuditRecord",
    "BadRequestError",
    "CacheStatistics",
    "ConflictError",
    "ExchangedClaim",
    "ForbiddenError",
    "Lease",
    "Leasehold",
    "LeaseholdError",
    "NotFoundError",
    "OAuthError",
    "OAuthMetadata",
    "PolicyStatus",
    "ServerStatus",
    "ServiceUnavailableError",
    "Session",
    "SessionWithClaim",
    "TooManyRequestsError",
    "UnauthorizedError",
    "Workspace",
    "WorkspaceDetail",
]

"""What the admin API answers, as frozen dataclasses.

Field names are the wire's (snake_case). Times are timezone-aware ``datetime``s. Each model keeps
the JSON it was read from in ``raw``, so a field the runner adds later is readable before this
package names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "AdminKey",
    "Approval",
    "ApprovalStatus",
    "AuditRecord",
    "CacheStatistics",
    "ExchangedClaim",
    "Lease",
    "OAuthMetadata",
    "PolicyRejection",
    "PolicyStatus",
    "ServerStatus",
    "Session",
    "SessionWithClaim",
    "Workspace",
    "WorkspaceDetail",
]

ApprovalStatus = Literal["pending", "granted", "denied", "exhausted"]


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError("missing time")
    return parsed


def _strings(value: Any) -> list[str] | None:
    return None if value is None else [str(item) for item in value]


@dataclass(frozen=True)
class Workspace:
    tenant_id: str
    workspace_id: str
    root: str
    read_only: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workspace:
        return cls(
            tenant_id=data["tenant_id"], workspace_id=data["workspace_id"], root=data.get("root", ""),
            read_only=bool(data.get("read_only", False)), raw=data,
        )


@dataclass(frozen=True)
class WorkspaceDetail(Workspace):
    """``GET /api/v1/workspaces/{tenant}/{workspace}``: the registration and its disk usage
    (``bytes``, ``files``, ``quota_bytes``, ``frozen``, ... as the runner reports them)."""

    disk: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkspaceDetail:
        base = Workspace.from_json(data)
        return cls(
            tenant_id=base.tenant_id, workspace_id=base.workspace_id, root=base.root, read_only=base.read_only,
            raw=data, disk=dict(data.get("disk") or {}),
        )


@dataclass(frozen=True)
class Lease:
    id: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lease:
        return cls(
            id=data["id"], issued_at=_required_time(data["issued_at"]), expires_at=_required_time(data["expires_at"]),
            revoked_at=_time(data.get("revoked_at")), raw=data,
        )


@dataclass(frozen=True)
class Session:
    id: str
    tenant_id: str
    actor_id: str
    workspace_id: str
    lease: Lease
    version: int
    server_id: str | None = None
    bundle_id: str | None = None
    allowed_tool_names: list[str] | None = None
    denied_tool_names: list[str] | None = None
    claim_ttl_seconds: int | None = None
    lease_ttl_seconds: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    revoked_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        return cls(
            id=data["id"], tenant_id=data["tenant_id"], actor_id=data["actor_id"], workspace_id=data["workspace_id"],
            lease=Lease.from_json(data["lease"]), version=int(data.get("version", 0)),
            server_id=data.get("server_id"), bundle_id=data.get("bundle_id"),
            allowed_tool_names=_strings(data.get("allowed_tool_names")),
            denied_tool_names=_strings(data.get("denied_tool_names")),
            claim_ttl_seconds=data.get("claim_ttl_seconds"), lease_ttl_seconds=data.get("lease_ttl_seconds"),
            created_at=_time(data.get("created_at")), updated_at=_time(data.get("updated_at")),
            revoked_at=_time(data.get("revoked_at")), raw=data,
        )


@dataclass(frozen=True)
class SessionWithClaim:
    """A session and a claim (``session-claim+jwt``) for its current lease. A claim serves one MCP
    connection: mint another (``claims.mint``) for each further connection."""

    session: Session
    claim: str

    @property
    def id(self) -> str:
        return self.session.id

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionWithClaim:
        return cls(session=Session.from_json(data["session"]), claim=data["claim"])


@dataclass(frozen=True)
class Approval:
    """A human's decision about one exact call: decide on ``arguments`` (the whole call), not on
    ``summary`` (a one-line preview)."""

    id: str
    tenant_id: str
    session_id: str
    lease_id: str
    actor_id: str
    workspace_id: str
    tool: str
    arguments_digest: str
    summary: str
    status: ApprovalStatus
    created_at: datetime
    fingerprint: str
    arguments: str | None = None
    arguments_sha256: str | None = None
    summary_truncated: bool = False
    decided_by: str | None = None
    decided_at: datetime | None = None
    expires_at: datetime | None = None
    uses: int | None = None
    uses_left: int | None = None
    deny_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Approval:
        return cls(
            id=data["id"], tenant_id=data["tenant_id"], session_id=data["session_id"], lease_id=data["lease_id"],
            actor_id=data["actor_id"], workspace_id=data["workspace_id"], tool=data["tool"],
            arguments_digest=data["arguments_digest"], summary=data.get("summary", ""), status=data["status"],
            created_at=_required_time(data["created_at"]), fingerprint=data["fingerprint"],
            arguments=data.get("arguments"), arguments_sha256=data.get("arguments_sha256"),
            summary_truncated=bool(data.get("summary_truncated", False)), decided_by=data.get("decided_by"),
            decided_at=_time(data.get("decided_at")), expires_at=_time(data.get("expires_at")),
            uses=data.get("uses"), uses_left=data.get("uses_left"), deny_reason=data.get("deny_reason"), raw=data,
        )


@dataclass(frozen=True)
class AuditRecord:
    """One record of the hash-chained audit trail. ``event`` holds the event's fields (``event``,
    ``time``, ``tenant``, ``session``, ``tool``, ``decision``, ``code``, ``outcome``, ...)."""

    seq: int
    hash: str
    prev_hash: str
    event: dict[str, Any]
    outcome_status: Literal["recorded", "in_flight", "unknown"] | None = None
    outcome_seq: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str | None:
        """The event's name: ``session.created``, ``call.intent``, ``request.refused``, ..."""
        value = self.event.get("event") if isinstance(self.event, dict) else None
        return value if isinstance(value, str) else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditRecord:
        event = data.get("event")
        return cls(
            seq=int(data["seq"]), hash=data["hash"], prev_hash=data.get("prev_hash", ""),
            event=event if isinstance(event, dict) else {"body": event},
            outcome_status=data.get("outcome_status"), outcome_seq=data.get("outcome_seq"), raw=data,
        )


@dataclass(frozen=True)
class AdminKey:
    """A tenant admin key. ``key`` is shown once; the runner keeps only its SHA-256."""

    tenant_id: str
    key: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdminKey:
        return cls(tenant_id=data["tenant_id"], key=data["key"])


@dataclass(frozen=True)
class PolicyRejection:
    at: datetime
    errors: list[str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyRejection:
        return cls(at=_required_time(data["at"]), errors=[str(e) for e in data.get("errors", [])])


@dataclass(frozen=True)
class PolicyStatus:
    version: str
    loaded_at: datetime
    last_rejection: PolicyRejection | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyStatus:
        rejection = data.get("last_rejection")
        return cls(
            version=data["version"], loaded_at=_required_time(data["loaded_at"]),
            last_rejection=PolicyRejection.from_json(rejection) if rejection else None, raw=data,
        )


@dataclass(frozen=True)
class CacheStatistics:
    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheStatistics:
        return cls(**{name: int(data.get(name, 0)) for name in ("hits", "misses", "evictions", "entries", "bytes")})


@dataclass(frozen=True)
class ServerStatus:
    """An upstream MCP server as the runner sees it."""

    id: str
    isolation: str
    tools: int
    state: str
    last_error: str | None = None
    listed_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerStatus:
        return cls(
            id=data["id"], isolation=data.get("isolation", ""), tools=int(data.get("tools", 0)),
            state=data.get("state", ""), last_error=data.get("last_error"), listed_at=_time(data.get("listed_at")),
            raw=data,
        )


@dataclass(frozen=True)
class ExchangedClaim:
    """What ``POST /oauth2/token`` returns: a session claim (``access_token``) for ``scope``
    (``session:<id>``), valid for ``expires_in`` seconds, to be sent as ``Authorization: Bearer``."""

    access_token: str
    issued_token_type: str
    token_type: str
    expires_in: int
    scope: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def claim(self) -> str:
        return self.access_token

    @property
    def session_id(self) -> str | None:
        return self.scope.removeprefix("session:") if self.scope.startswith("session:") else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExchangedClaim:
        return cls(
            access_token=data["access_token"], issued_token_type=data.get("issued_token_type", ""),
            token_type=data.get("token_type", ""), expires_in=int(data.get("expires_in", 0)),
            scope=data.get("scope", ""), raw=data,
        )


@dataclass(frozen=True)
class OAuthMetadata:
    """RFC 8414 authorization server metadata (``/.well-known/oauth-authorization-server``)."""

    issuer: str
    token_endpoint: str
    grant_types_supported: list[str]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OAuthMetadata:
        return cls(
            issuer=data.get("issuer", ""), token_endpoint=data.get("token_endpoint", ""),
            grant_types_supported=[str(g) for g in data.get("grant_types_supported", [])], raw=data,
        )

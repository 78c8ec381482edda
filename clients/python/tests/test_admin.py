"""The sync client against the real binary: every admin resource, merge-patch semantics, and the
typed errors with Leasehold's refusal codes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from leasehold_client import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    Leasehold,
    LeaseholdError,
    NotFoundError,
    Session,
    UnauthorizedError,
)

from conftest import Runner


def _create(lh: Leasehold, tenant: str = "acme", **fields) -> Session:
    return lh.sessions.create(tenant_id=tenant, workspace_id="w1", actor_id="alice", **fields).session


def test_health_and_readiness(lh: Leasehold) -> None:
    assert lh.health()["status"] == "ok"
    assert lh.ready() is True
    # Neither needs a key.
    with Leasehold(lh.base_url, None) as anonymous:
        assert anonymous.health()["status"] == "ok"


def test_base_url_accepts_the_api_or_mcp_url(runner: Runner) -> None:
    for suffix in ("", "/", "/api/v1", "/mcp"):
        with Leasehold(runner.base_url + suffix, runner.operator_key) as client:
            assert client.base_url == runner.base_url
            assert client.mcp_url == runner.base_url + "/mcp"


def test_create_scoped_session_in_one_call(lh: Leasehold) -> None:
    created = lh.sessions.create(
        tenant_id="acme", workspace_id="w1", actor_id="alice",
        allowed_tool_names=["kb.*"], denied_tool_names=["kb.internal_*"],
    )
    session = created.session
    assert created.id == session.id and session.id.startswith("ses")
    assert created.claim.count(".") == 2  # a compact JWS
    assert (session.tenant_id, session.workspace_id, session.actor_id) == ("acme", "w1", "alice")
    assert session.allowed_tool_names == ["kb.*"] and session.denied_tool_names == ["kb.internal_*"]
    assert session.server_id is None and session.bundle_id is None
    assert session.version == 1 and not session.revoked
    assert session.lease.expires_at > datetime.now(timezone.utc)
    assert lh.sessions.get(session.id) == session


def test_server_and_bundle_scope(lh: Leasehold) -> None:
    assert _create(lh, server_id="kb").server_id == "kb"
    assert _create(lh, bundle_id="support-desk").bundle_id == "support-desk"
    with pytest.raises(BadRequestError) as refused:
        _create(lh, server_id="kb", bundle_id="support-desk")
    assert (refused.value.status, refused.value.code) == (400, "scope_conflict")
    with pytest.raises(BadRequestError) as unknown:
        _create(lh, server_id="nope")
    assert unknown.value.code == "invalid_request" and "nope" in unknown.value.message


def test_patch_is_a_merge_patch(lh: Leasehold) -> None:
    session = _create(lh, allowed_tool_names=["kb.*"], denied_tool_names=["kb.internal_*"], server_id="kb")

    # An omitted field is unchanged.
    patched = lh.sessions.patch(session.id, denied_tool_names=["kb.internal_*", "kb.finance"])
    assert patched.denied_tool_names == ["kb.internal_*", "kb.finance"]
    assert patched.allowed_tool_names == ["kb.*"] and patched.server_id == "kb"
    assert patched.version == session.version + 1

    # None clears a field; the others stay.
    cleared = lh.sessions.patch(session.id, allowed_tool_names=None, server_id=None)
    assert cleared.allowed_tool_names is None and cleared.server_id is None
    assert cleared.denied_tool_names == ["kb.internal_*", "kb.finance"]

    # Switching universes in one patch: clear one, set the other.
    switched = lh.sessions.patch(session.id, bundle_id="support-desk")
    assert switched.bundle_id == "support-desk"
    with pytest.raises(BadRequestError) as conflict:
        lh.sessions.patch(session.id, server_id="kb")
    assert conflict.value.code == "scope_conflict"
    assert lh.sessions.patch(session.id, server_id="kb", bundle_id=None).server_id == "kb"

    # A patch with nothing in it changes nothing but the version.
    unchanged = lh.sessions.patch(session.id)
    assert (unchanged.server_id, unchanged.denied_tool_names) == ("kb", ["kb.internal_*", "kb.finance"])

    # claim_ttl_seconds: set, then cleared back to the runner's maximum.
    assert lh.sessions.patch(session.id, claim_ttl_seconds=60).claim_ttl_seconds == 60
    assert lh.sessions.patch(session.id, claim_ttl_seconds=None).claim_ttl_seconds == 900

    # Immutable or uncleared fields are refused with the server's code.
    with pytest.raises(BadRequestError, match="actor_id cannot be cleared"):
        lh.sessions.patch_document(session.id, {"actor_id": None})
    with pytest.raises(BadRequestError, match="tenant_id"):
        lh.sessions.patch_document(session.id, {"tenant_id": "globex"})


def test_patch_refuses_a_single_string_for_patterns(lh: Leasehold) -> None:
    session = _create(lh)
    with pytest.raises(TypeError):
        lh.sessions.patch(session.id, allowed_tool_names="kb.*")  # type: ignore[arg-type]


def test_revoke_then_every_change_is_a_conflict(lh: Leasehold) -> None:
    session = _create(lh)
    revoked = lh.sessions.revoke(session.id)
    assert revoked.revoked and revoked.lease.revoked_at is not None
    for change in (
        lambda: lh.sessions.patch(session.id, denied_tool_names=["kb.*"]),
        lambda: lh.claims.mint(session.id),
        lambda: lh.leases.renew(session.id),
    ):
        with pytest.raises(ConflictError) as refused:
            change()
        assert (refused.value.status, refused.value.code) == (409, "session_revoked")


def test_claims_and_leases(lh: Leasehold) -> None:
    created = lh.sessions.create(tenant_id="acme", workspace_id="w1", actor_id="alice")
    minted = lh.claims.mint(created.id, ttl_seconds=30, allowed_tools=["repo.read_file"])
    assert minted.claim != created.claim and minted.session.lease.id == created.session.lease.id

    renewed = lh.leases.renew(created.id, ttl_seconds=120)
    assert renewed.session.lease.id != created.session.lease.id
    assert renewed.session.lease.expires_at - renewed.session.lease.issued_at == timedelta(seconds=120)

    ended = lh.leases.revoke(created.id)
    assert ended.lease.revoked_at is not None and not ended.revoked
    with pytest.raises(ConflictError) as refused:
        lh.claims.mint(created.id)
    assert refused.value.code == "lease_expired"
    assert lh.leases.renew(created.id).session.lease.revoked_at is None
    with pytest.raises(BadRequestError):
        lh.claims.mint(created.id, approval_fingerprint="short")


def test_not_found_and_unauthorized(runner: Runner, lh: Leasehold) -> None:
    with pytest.raises(NotFoundError) as missing:
        lh.sessions.get("ses_does_not_exist")
    error = missing.value
    assert isinstance(error, LeaseholdError)
    assert (error.status, error.code) == (404, "not_found") and "does not exist" in error.message

    with Leasehold(runner.base_url, "lh_op_wrong") as wrong:
        with pytest.raises(UnauthorizedError) as refused:
            wrong.sessions.get("ses_x")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    with Leasehold(runner.base_url, None) as anonymous:
        with pytest.raises(ValueError, match="admin key"):
            anonymous.sessions.get("ses_x")


def test_workspaces(runner: Runner, lh: Leasehold) -> None:
    created = lh.workspaces.create(tenant_id="acme", workspace_id="ws-admin", read_only=True)
    assert created.read_only and created.root.endswith("/acme/ws-admin")
    listed = {(w.tenant_id, w.workspace_id) for w in lh.workspaces.list(tenant_id="acme")}
    assert {("acme", "w1"), ("acme", "ws-admin")} <= listed
    assert all(w.tenant_id == "acme" for w in lh.workspaces.list(tenant_id="acme"))
    assert ("globex", "w1") in {(w.tenant_id, w.workspace_id) for w in lh.workspaces.list()}

    detail = lh.workspaces.get("acme", "ws-admin")
    assert detail.root == created.root and "bytes" in detail.disk

    with pytest.raises(ConflictError) as exists:
        lh.workspaces.create(tenant_id="acme", workspace_id="ws-admin")
    assert exists.value.code == "workspace_exists"
    with pytest.raises(BadRequestError) as bad:
        lh.workspaces.create(tenant_id="acme", workspace_id="../x")
    assert bad.value.status == 400

    lh.workspaces.delete("acme", "ws-admin", purge=True)
    with pytest.raises(NotFoundError):
        lh.workspaces.get("acme", "ws-admin")
    with pytest.raises(NotFoundError):
        lh.workspaces.delete("acme", "ws-admin")


def test_tenant_admin_key_sees_only_its_tenant(runner: Runner, lh: Leasehold) -> None:
    key = lh.admin_keys.create("acme")
    assert key.tenant_id == "acme" and key.key.startswith("lh_tk")
    with runner.client(key.key) as acme, runner.client(runner.tenant_keys["globex"]) as globex:
        session = acme.sessions.create(tenant_id="acme", workspace_id="w1", actor_id="bob").session
        assert acme.sessions.get(session.id).actor_id == "bob"
        # Another tenant's session is "not found", never "forbidden": ids cannot be probed.
        with pytest.raises(NotFoundError):
            globex.sessions.get(session.id)
        with pytest.raises(NotFoundError):
            globex.sessions.revoke(session.id)
        with pytest.raises(ForbiddenError) as forbidden:
            globex.sessions.create(tenant_id="acme", workspace_id="w1", actor_id="eve")
        assert forbidden.value.code == "forbidden"
        with pytest.raises(ForbiddenError) as root:
            acme.workspaces.create(tenant_id="acme", workspace_id="w9", root="/tmp")
        assert root.value.code == "root_not_allowed"
        assert {w.tenant_id for w in acme.workspaces.list()} == {"acme"}
        with pytest.raises(NotFoundError):
            globex.workspaces.get("acme", "w1")
        # Operator-only operations.
        for operator_only in (acme.policy.get, acme.cache.statistics, acme.servers.list,
                              lambda: acme.admin_keys.create("acme")):
            with pytest.raises(ForbiddenError):
                operator_only()
        # Its own audit records only.
        assert {r.event.get("tenant") for r in acme.audit.list(limit=200)} <= {"acme"}
        with pytest.raises(ForbiddenError):
            acme.audit.list(tenant_id="globex")


def test_operator_status(lh: Leasehold) -> None:
    policy = lh.policy.get()
    assert policy.version and policy.loaded_at <= datetime.now(timezone.utc) and policy.last_rejection is None
    stats = lh.cache.statistics()
    assert stats.hits >= 0 and stats.entries >= 0
    assert lh.servers.list() == []  # the test catalog has no upstream servers


def test_audit_records_and_paging(lh: Leasehold) -> None:
    start = datetime.now(timezone.utc) - timedelta(seconds=2)
    session = _create(lh)
    lh.sessions.patch(session.id, denied_tool_names=["kb.finance"])
    lh.sessions.revoke(session.id)
    records = lh.audit.list(session_id=session.id)
    kinds = [r.kind for r in records]
    assert kinds == ["session.created", "session.patched", "session.revoked"], kinds
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    assert all(r.event["session"] == session.id and r.hash for r in records)
    assert records[1].prev_hash  # hash-chained
    assert [r.seq for r in lh.audit.list(session_id=session.id, since=start)] == [r.seq for r in records]
    assert lh.audit.list(session_id=session.id, since=datetime.now(timezone.utc) + timedelta(hours=1)) == []
    # Paging: after_seq and limit, and the iterator that follows the pages.
    first = lh.audit.list(session_id=session.id, limit=1)
    assert [r.seq for r in first] == [records[0].seq]
    assert [r.seq for r in lh.audit.list(session_id=session.id, after_seq=records[0].seq)] == [
        r.seq for r in records[1:]
    ]
    assert [r.seq for r in lh.audit.iter(session_id=session.id, page_size=1)] == [r.seq for r in records]
    with pytest.raises(BadRequestError):
        lh.audit.list(since="yesterday")


def test_errors_keep_a_non_leasehold_body(runner: Runner) -> None:
    # A route the runner does not serve: the error still carries status and a code.
    with httpx.Client() as http:
        response = http.get(runner.base_url + "/api/v1/nowhere", headers={"Authorization": f"Bearer {runner.operator_key}"})
    from leasehold_client.errors import error_from_response

    error = error_from_response(response)
    assert error.status == response.status_code and error.code

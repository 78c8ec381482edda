"""The async client and the MCP helper against the real binary: a scoped session, an official-SDK
client session on a fresh claim per connection, PATCH mid-conversation with
notifications/tools/list_changed, approvals, and revoke."""

from __future__ import annotations

import anyio
import pytest

from leasehold_client import AsyncLeasehold, ConflictError, NotFoundError
from leasehold_client.mcp import connect, connect_with_claim, is_tool_list_changed, refusal_code

from conftest import FIXTURE_TEXT, Runner

pytestmark = pytest.mark.anyio

SYSTEM = {"system.search_tools", "system.execute_tool"}


class Watcher:
    """A message_handler counting notifications/tools/list_changed."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = anyio.Event()

    async def __call__(self, message: object) -> None:
        if is_tool_list_changed(message):
            self.count += 1
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while self.count < count:
                await self._changed.wait()


async def _names(session) -> set[str]:
    names: list[str] = []
    cursor = None
    while True:
        result = await session.list_tools(cursor=cursor) if cursor else await session.list_tools()
        names += [tool.name for tool in result.tools]
        cursor = result.nextCursor
        if not cursor:
            return set(names)


async def test_async_admin_round_trip(runner: Runner) -> None:
    async with AsyncLeasehold(runner.base_url, runner.operator_key) as lh:
        assert (await lh.health())["status"] == "ok" and await lh.ready()
        created = await lh.sessions.create(
            tenant_id="acme", workspace_id="w1", actor_id="alice", allowed_tool_names=["kb.*"],
            denied_tool_names=["kb.internal_*"],
        )
        assert (await lh.sessions.get(created.id)) == created.session
        patched = await lh.sessions.patch(created.id, allowed_tool_names=None)
        assert patched.allowed_tool_names is None and patched.denied_tool_names == ["kb.internal_*"]
        assert (await lh.claims.mint(created.id)).claim
        renewed = await lh.leases.renew(created.id)
        assert renewed.session.lease.id != created.session.lease.id
        assert (await lh.leases.revoke(created.id)).lease.revoked_at is not None
        assert [r.kind async for r in lh.audit.iter(session_id=created.id, page_size=2)][:2] == [
            "session.created", "session.patched",
        ]
        assert (await lh.sessions.revoke(created.id)).revoked
        with pytest.raises(ConflictError):
            await lh.sessions.patch(created.id, denied_tool_names=[])
        with pytest.raises(NotFoundError):
            await lh.sessions.get("ses_nope")
        workspace = await lh.workspaces.create(tenant_id="globex", workspace_id="w-async")
        assert (await lh.workspaces.get("globex", "w-async")).root == workspace.root
        assert "w-async" in {w.workspace_id for w in await lh.workspaces.list(tenant_id="globex")}
        await lh.workspaces.delete("globex", "w-async", purge=True)
        assert (await lh.policy.get()).version and (await lh.cache.statistics()).misses >= 0
        assert await lh.servers.list() == []
        assert (await lh.admin_keys.create("globex")).tenant_id == "globex"


async def test_mcp_session_sees_the_scope_and_follows_a_patch(runner: Runner) -> None:
    async with AsyncLeasehold(runner.base_url, runner.operator_key) as lh:
        created = await lh.sessions.create(
            tenant_id="acme", workspace_id="w1", actor_id="alice",
            allowed_tool_names=["kb.*", "repo.read_file"], denied_tool_names=["kb.internal_*", "kb.publish"],
        )
        watcher = Watcher()
        async with lh.mcp_session(created.id, message_handler=watcher) as mcp:
            assert await _names(mcp) == SYSTEM | {
                "kb.finance", "kb.support_faq", "kb.support_billing", "repo.read_file",
            }
            result = await mcp.call_tool("repo.read_file", {"path": "README.md"})
            assert not result.isError and result.structuredContent["content"] == FIXTURE_TEXT

            # Narrow mid-conversation: the connected client is told, and sees the new scope.
            await lh.sessions.patch(created.id, denied_tool_names=["kb.internal_*", "kb.publish", "kb.support_*"])
            await watcher.wait_for(1)
            assert await _names(mcp) == SYSTEM | {"kb.finance", "repo.read_file"}
            try:
                refused = await mcp.call_tool("kb.support_faq", {})
            except Exception as error:  # the SDK raises McpError for a JSON-RPC error
                assert refusal_code(error) == "tool_not_in_scope", error
            else:
                raise AssertionError(f"kb.support_faq should be out of scope: {refused}")

            # Widen again with a merge-patch that clears the deny list.
            await lh.sessions.patch(created.id, denied_tool_names=None)
            await watcher.wait_for(2)
            assert "kb.internal_notes" in await _names(mcp)
        await lh.sessions.revoke(created.id)


async def test_each_connection_gets_its_own_claim(runner: Runner) -> None:
    """Two live connections of one session at once: each has its own freshly minted claim (one
    claim would be refused as claim_replayed on the second connection)."""
    async with AsyncLeasehold(runner.base_url, runner.operator_key) as lh:
        created = await lh.sessions.create(tenant_id="acme", workspace_id="w1", actor_id="alice", server_id="kb")
        async with lh.mcp_session(created.id) as first, lh.mcp_session(created.id) as second:
            assert await _names(first) == await _names(second) == SYSTEM | {
                "kb.finance", "kb.support_faq", "kb.support_billing", "kb.internal_notes", "kb.publish",
            }
        # A claim narrowed at minting, on the endpoint narrowed to one server.
        async with lh.mcp_session(created.id, allowed_tools=["kb.finance"], server_id="kb") as narrowed:
            assert await _names(narrowed) == SYSTEM | {"kb.finance"}
        # The claim that came with the session serves one connection, given explicitly.
        async with connect_with_claim(lh.mcp_url, created.claim) as explicit:
            assert "kb.finance" in await _names(explicit)
        await lh.sessions.revoke(created.id)


async def test_sync_client_helper_mints_off_the_event_loop(runner: Runner) -> None:
    with runner.client() as lh:
        created = lh.sessions.create(tenant_id="globex", workspace_id="w1", actor_id="gina", bundle_id="support-desk")
        async with connect(lh, created.id) as mcp:
            assert await _names(mcp) == SYSTEM | {"kb.support_faq", "kb.support_billing", "repo.read_file"}
        lh.sessions.revoke(created.id)


async def test_approvals_flow(runner: Runner) -> None:
    """kb.publish needs a human's approval: the call is refused with an approval id, which the
    client lists, reads, grants (or denies); the granted call then runs."""
    async with AsyncLeasehold(runner.base_url, runner.operator_key) as lh:
        created = await lh.sessions.create(tenant_id="acme", workspace_id="w1", actor_id="alice", server_id="kb")
        async with lh.mcp_session(created.id) as mcp:
            first = await mcp.call_tool("kb.publish", {"page": "q3"})
            assert refusal_code(first) == "approval_required", first
            approval_id = first.structuredContent["error"]["approval_id"]
            second = await mcp.call_tool("kb.publish", {"page": "q4"})
            assert refusal_code(second) == "approval_required", second
            other_id = second.structuredContent["error"]["approval_id"]

            pending = await lh.approvals.list(session_id=created.id, status="pending")
            assert [a.id for a in pending] == [other_id, approval_id]  # newest first
            assert [a.id for a in await lh.approvals.list(session_id=created.id, limit=1)] == [other_id]
            approval = await lh.approvals.get(approval_id)
            assert approval.tool == "kb.publish" and approval.status == "pending"
            assert approval.arguments == '{"page":"q3"}' and approval.session_id == created.id

            granted = await lh.approvals.grant(approval_id, ttl_seconds=60, uses=1)
            assert granted.status == "granted" and granted.uses_left == 1 and granted.decided_by == "operator"
            denied = await lh.approvals.deny(other_id, reason="q4 is not public yet")
            assert denied.status == "denied" and denied.deny_reason == "q4 is not public yet"
            with pytest.raises(ConflictError) as decided:
                await lh.approvals.deny(approval_id)
            assert decided.value.code == "approval_decided"

            # The granted call runs (no upstream serves the catalog tool, so its worker answers
            # unknown_tool: past every gateway check); the denied one stays refused.
            ran = await mcp.call_tool("kb.publish", {"page": "q3"})
            assert refusal_code(ran) == "unknown_tool", ran
            again = await mcp.call_tool("kb.publish", {"page": "q4"})
            assert refusal_code(again) == "approval_denied", again
        assert [a.id for a in await lh.approvals.list(session_id=created.id, status="denied")] == [other_id]
        with runner.client(runner.tenant_keys["globex"]) as globex:
            with pytest.raises(NotFoundError):
                globex.approvals.get(approval_id)
            assert globex.approvals.list(session_id=created.id) == []
        await lh.sessions.revoke(created.id)


async def test_revoke_closes_the_connection(runner: Runner) -> None:
    async with AsyncLeasehold(runner.base_url, runner.operator_key) as lh:
        created = await lh.sessions.create(tenant_id="acme", workspace_id="w1", actor_id="alice")
        with pytest.raises(BaseException) as ended:  # noqa: PT011 - the SDK's error type varies
            async with lh.mcp_session(created.id) as mcp:
                assert "repo.read_file" in await _names(mcp)
                await lh.sessions.revoke(created.id)
                with anyio.fail_after(15):
                    await mcp.list_tools()
        assert not isinstance(ended.value, TimeoutError), "the revoked connection kept answering"

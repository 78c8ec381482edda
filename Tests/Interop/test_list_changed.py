"""PATCH mid-conversation: notifications/tools/list_changed reaches the Python client, and every
surface follows the narrowed, then widened, scope."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from interop_support import (
    BUILTIN_SYSTEM_TOOLS,
    BUILTIN_WORKSPACE_TOOLS,
    ListChangedWatcher,
    assert_ok,
    assert_ran,
    assert_not_in_scope,
    copy_policies,
    http_mcp,
    search_names,
    write_catalog_config,
)

pytestmark = pytest.mark.anyio

ALL = set(BUILTIN_SYSTEM_TOOLS) | set(BUILTIN_WORKSPACE_TOOLS) | {"kb.finance", "kb.support_faq", "kb.support_billing"}


@pytest.fixture
def kb_server(tmp_path: Path, start_server):
    policies = copy_policies(tmp_path / "policies", [("kb.*", "read")])
    config = write_catalog_config(
        tmp_path / "leasehold.yaml",
        {"kb": [("kb.finance", "Finance knowledge base"), ("kb.support_faq", "Support FAQ"),
                ("kb.support_billing", "Support billing answers")]},
        {"support-desk": ["kb.support_*", "repo.read_file"]},
    )
    return start_server(policies=policies, config=config)


async def _names(conn) -> set[str]:
    names = await conn.tool_names()
    assert len(names) == len(set(names))
    return set(names)


async def test_patch_narrows_then_widens_with_list_changed(kb_server) -> None:
    server = kb_server
    record, claim = server.create_session()
    path = f"/sessions/{record['id']}"
    watcher = ListChangedWatcher()
    async with http_mcp(server.mcp_url, claim, message_handler=watcher) as conn:
        await conn.wait_for_notification_stream()
        assert await _names(conn) == ALL
        ran = assert_ok(await conn.session.call_tool("shell.run", {"command": "true"}), "shell.run")
        assert ran["exit_code"] == 0, ran

        # 1. Narrow: deny shell.* and repo.write*, allow only repo.* and kb.support_*.
        expected = watcher.count + 1
        await server.aadmin(
            "PATCH", path, {"denied_tool_names": ["shell.*", "repo.write*"], "allowed_tool_names": ["repo.*", "kb.support_*"]},
            expect=200,
        )
        await watcher.wait_count(expected)
        narrowed = set(BUILTIN_SYSTEM_TOOLS) | {
            "repo.read_file", "repo.list_dir", "repo.search", "repo.stat", "repo.apply_patch", "kb.support_faq",
            "kb.support_billing",
        }
        assert await _names(conn) == narrowed
        await assert_not_in_scope(conn.session, "shell.run", {"command": "true"})
        await assert_not_in_scope(conn.session, "repo.write_file", {"path": "a", "content": "b"})
        await assert_not_in_scope(conn.session, "kb.finance")
        await assert_not_in_scope(conn.session, "system.execute_tool", {"name": "kb.finance"})
        assert search_names(await conn.session.call_tool("system.search_tools", {"query": "finance"})) == []
        assert_ran(await conn.session.call_tool("kb.support_faq", {}), "kb.support_faq")

        # 2. Narrow further: switch the universe to a bundle (merge-patch: other fields unchanged).
        expected = watcher.count + 1
        await server.aadmin("PATCH", path, {"bundle_id": "support-desk"}, expect=200)
        await watcher.wait_count(expected)
        assert await _names(conn) == set(BUILTIN_SYSTEM_TOOLS) | {"repo.read_file", "kb.support_faq", "kb.support_billing"}
        await assert_not_in_scope(conn.session, "repo.list_dir", {"path": "."})

        # 3. Widen: null clears the allow list and the bundle; the deny list is left as it was.
        expected = watcher.count + 1
        await server.aadmin("PATCH", path, {"allowed_tool_names": None, "bundle_id": None}, expect=200)
        await watcher.wait_count(expected)
        assert await _names(conn) == ALL - {"shell.run", "repo.write_file"}
        assert_ran(await conn.session.call_tool("kb.finance", {}), "kb.finance")
        assert search_names(await conn.session.call_tool("system.search_tools", {"query": "finance"})) == ["kb.finance"]
        await assert_not_in_scope(conn.session, "shell.run", {"command": "true"})

        # 4. Widen fully: clear the deny list.
        expected = watcher.count + 1
        await server.aadmin("PATCH", path, {"denied_tool_names": None}, expect=200)
        await watcher.wait_count(expected)
        assert await _names(conn) == ALL
        ran = assert_ok(await conn.session.call_tool("shell.run", {"command": "true"}), "shell.run")
        assert ran["exit_code"] == 0, ran

        # 5. A PATCH that leaves the visible set unchanged sends no notification. Ordering barrier:
        #    both PATCHes notify (if at all) on the same ordered SSE stream, so once the second,
        #    changing PATCH has been notified, a spurious first notification would already be here
        #    or right behind it; a short bounded window catches it without a readiness sleep.
        before = watcher.count
        await server.aadmin("PATCH", path, {"denied_tool_names": ["nosuch.*"]}, expect=200)
        await server.aadmin("PATCH", path, {"denied_tool_names": ["kb.finance"]}, expect=200)
        await watcher.wait_count(before + 1)
        with anyio.move_on_after(0.5):
            await watcher.wait_count(before + 2)
        assert watcher.count == before + 1, f"expected one list_changed, got {watcher.count - before}"
        assert await _names(conn) == ALL - {"kb.finance"}

        stored = (await server.aadmin("GET", path, expect=200)).json()["session"]
        assert stored.get("denied_tool_names") == ["kb.finance"] and stored.get("allowed_tool_names") is None
    assert not watcher.other, watcher.other


async def test_list_changed_reaches_every_connection_of_the_session(kb_server) -> None:
    server = kb_server
    record, claim = server.create_session()
    second_claim = server.mint_claim(record["id"])
    first, second = ListChangedWatcher(), ListChangedWatcher()
    async with http_mcp(server.mcp_url, claim, message_handler=first) as a:
        async with http_mcp(server.server_url("kb"), second_claim, message_handler=second) as b:
            await a.wait_for_notification_stream()
            await b.wait_for_notification_stream()
            assert await _names(a) == ALL
            assert await _names(b) == set(BUILTIN_SYSTEM_TOOLS) | {"kb.finance", "kb.support_faq", "kb.support_billing"}
            await server.aadmin("PATCH", f"/sessions/{record['id']}", {"denied_tool_names": ["kb.support_*"]}, expect=200)
            await first.wait_count(1)
            await second.wait_count(1)
            assert await _names(a) == ALL - {"kb.support_faq", "kb.support_billing"}
            assert await _names(b) == set(BUILTIN_SYSTEM_TOOLS) | {"kb.finance"}
            await assert_not_in_scope(b.session, "kb.support_faq")

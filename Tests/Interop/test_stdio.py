"""MCP over stdio with the official Python client: claim bound at start (env LEASEHOLD_CLAIM) or
carried per request in params._meta["dev.leasehold/claim"]; never taken from tool arguments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from interop_support import (
    ACTOR,
    BUILTIN_SYSTEM_TOOLS,
    BUILTIN_WORKSPACE_TOOLS,
    META_CLAIM_KEY,
    POLICIES_DIR,
    TENANT,
    WORKSPACE,
    assert_ok,
    assert_read_fixture,
    assert_not_in_scope,
    list_all_tools,
    run_cli,
    search_names,
)
from mcp_compat import ClientSession, MCPError, StdioServerParameters, paginated_params, stdio_client, wire

pytestmark = pytest.mark.anyio

UNAUTHENTICATED = -32001  # the server's JSON-RPC code for claim/session refusals


@pytest.fixture
def stdio_state(binary: Path, state_dir: Path, workspace_root: Path) -> dict[str, Any]:
    """A state directory prepared offline with the CLI: workspace acme/w1 registered."""
    run_cli(
        binary, "workspace", "add", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR),
        "--tenant", TENANT, "--workspace", WORKSPACE, "--root", str(workspace_root),
    )
    return {"binary": binary, "state_dir": state_dir}


def cli_session(state: dict[str, Any], *args: str, actor: str = ACTOR) -> tuple[dict[str, Any], str]:
    out = run_cli(
        state["binary"], "session", "create", "--state-dir", str(state["state_dir"]), "--policies", str(POLICIES_DIR),
        "--tenant", TENANT, "--actor", actor, "--workspace", WORKSPACE, *args,
    )
    data = json.loads(out)
    return data["session"], data["claim"]


@asynccontextmanager
async def stdio_mcp(state: dict[str, Any], tmp_path: Path, claim: str | None) -> AsyncIterator[ClientSession]:
    env = {"LOG_LEVEL": "info"}
    if claim is not None:
        env["LEASEHOLD_CLAIM"] = claim
    params = StdioServerParameters(
        command=str(state["binary"]),
        args=["serve", "--stdio", "--state-dir", str(state["state_dir"]), "--policies", str(POLICIES_DIR)],
        env=env,
    )
    with open(tmp_path / "stdio-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert wire(init, "serverInfo").name == "leasehold"
                yield session


def meta(claim: str) -> dict[str, Any]:
    return {META_CLAIM_KEY: claim}


async def expect_unauthenticated(awaitable: Any, code: str) -> None:
    try:
        result = await awaitable
    except MCPError as error:
        assert error.error.code == UNAUTHENTICATED, f"{error.error.code}: {error.error.message}"
        # Over stdio the refusal is raised inside the MCP handler, and swift-sdk's
        # MCPError.serverError prefixes "Server error: " (over HTTP the code leads the message).
        message = error.error.message.removeprefix("Server error: ")
        assert message.startswith(f"{code}:"), error.error.message
        return
    raise AssertionError(f"expected a {code} refusal, got {result}")


async def test_stdio_claim_bound_at_start(stdio_state, tmp_path: Path) -> None:
    record, claim = cli_session(stdio_state, "--deny", "shell.*", "--deny", "repo.*_file")
    expected = set(BUILTIN_SYSTEM_TOOLS) | set(BUILTIN_WORKSPACE_TOOLS) - {"shell.run", "repo.read_file", "repo.write_file"}
    _, other_claim = cli_session(stdio_state, actor="bob")

    async with stdio_mcp(stdio_state, tmp_path, claim) as session:
        names = [t.name for t in await list_all_tools(session)]
        assert len(names) == len(set(names)) and set(names) == expected
        listing = assert_ok(await session.call_tool("repo.list_dir", {"path": "."}), "repo.list_dir")
        assert [e["path"] for e in listing["entries"]] == ["README.md"], listing
        await assert_not_in_scope(session, "shell.run", {"command": "id"})
        await assert_not_in_scope(session, "repo.read_file", {"path": "README.md"})
        await assert_not_in_scope(session, "system.execute_tool", {"name": "repo.write_file", "arguments": {}})
        found = search_names(await session.call_tool("system.search_tools", {"query": "workspace", "limit": 100}))
        assert found and set(found) <= expected, found
        # A per-request claim of another session cannot take over this connection.
        await expect_unauthenticated(session.list_tools(params=_meta_params(other_claim)), "boundary_mismatch")
        assert set(t.name for t in await list_all_tools(session)) == expected

    # The binding is persisted in the state directory: a second stdio process presenting the same
    # claim is a replay.
    async with stdio_mcp(stdio_state, tmp_path, claim) as session:
        await expect_unauthenticated(session.list_tools(), "claim_replayed")
        await expect_unauthenticated(session.call_tool("repo.list_dir", {"path": "."}), "claim_replayed")

    # Revoked offline with the CLI: refused even with a fresh process.
    run_cli(
        stdio_state["binary"], "session", "revoke", "--state-dir", str(stdio_state["state_dir"]),
        "--policies", str(POLICIES_DIR), record["id"],
    )
    async with stdio_mcp(stdio_state, tmp_path, claim) as session:
        await expect_unauthenticated(session.list_tools(), "session_revoked")


def _meta_params(claim: str):
    return paginated_params(meta=meta(claim))


async def test_stdio_claim_per_request_in_meta(stdio_state, tmp_path: Path) -> None:
    _, claim = cli_session(stdio_state, "--allow", "repo.*", "--allow", "shell.run", "--deny", "repo.write_file")
    expected = set(BUILTIN_SYSTEM_TOOLS) | set(BUILTIN_WORKSPACE_TOOLS) - {"repo.write_file"}

    async with stdio_mcp(stdio_state, tmp_path, None) as session:
        # Without a claim anywhere: refused.
        await expect_unauthenticated(session.list_tools(), "claim_missing")
        await expect_unauthenticated(session.call_tool("repo.stat", {"path": "."}), "claim_missing")

        # A claim inside tool arguments is ignored: still no claim.
        smuggled = {"path": "README.md", META_CLAIM_KEY: claim, "_meta": meta(claim), "claim": claim,
                    "authorization": f"Bearer {claim}"}
        await expect_unauthenticated(session.call_tool("repo.read_file", smuggled), "claim_missing")
        await expect_unauthenticated(
            session.call_tool("system.execute_tool", {"name": "repo.read_file", "arguments": smuggled, "_meta": meta(claim)}),
            "claim_missing",
        )
        await expect_unauthenticated(session.call_tool("system.search_tools", {"query": "repo", **smuggled}), "claim_missing")

        # The claim in params._meta: tools/list and tools/call work.
        names = [t.name for t in await list_all_tools(session, meta=meta(claim))]
        assert len(names) == len(set(names)) and set(names) == expected
        assert_read_fixture(await session.call_tool("repo.read_file", {"path": "README.md"}, meta=meta(claim)))
        ran = assert_ok(await session.call_tool("shell.run", {"command": "cat README.md"}, meta=meta(claim)), "shell.run")
        assert ran["exit_code"] == 0 and ran["stdout"] == "interop fixture\n", ran
        await assert_not_in_scope(session, "repo.write_file", {"path": "a", "content": "b"}, meta=meta(claim))
        await assert_not_in_scope(session, "nosuch.tool", {}, meta=meta(claim))
        await assert_not_in_scope(
            session, "system.execute_tool", {"name": "repo.write_file", "arguments": {"path": "a", "content": "b"}},
            meta=meta(claim),
        )


async def test_stdio_meta_claim_search_and_execute(stdio_state, tmp_path: Path) -> None:
    _, claim = cli_session(stdio_state, "--deny", "shell.*")
    expected = set(BUILTIN_SYSTEM_TOOLS) | set(BUILTIN_WORKSPACE_TOOLS) - {"shell.run"}
    async with stdio_mcp(stdio_state, tmp_path, None) as session:
        # Note: ClientSession.call_tool re-lists tools (without _meta) to validate a successful
        # result's structured content when the tool's output schema is not cached yet, so list first.
        names = {t.name for t in await list_all_tools(session, meta=meta(claim))}
        assert names == expected
        found = search_names(await session.call_tool("system.search_tools", {"query": "run command shell workspace"}, meta=meta(claim)))
        assert found and "shell.run" not in found and set(found) <= expected, found
        result = await session.call_tool("system.execute_tool", {"name": "repo.stat", "arguments": {"path": "."}}, meta=meta(claim))
        assert assert_ok(result, "system.execute_tool(repo.stat)")["type"] == "dir"
        await assert_not_in_scope(session, "system.execute_tool", {"name": "shell.run", "arguments": {}}, meta=meta(claim))
        # Dropping the claim on a later request is refused again: the claim is per request.
        await expect_unauthenticated(session.call_tool("repo.stat", {"path": "."}), "claim_missing")

"""No byte of a tool's arguments or results changes between the client and the worker.

Found on 5850a2b: the MCP SDK's `Value` decoding turned every string that looks like a data URL
into binary data, re-encoded as base64: a file holding `data: [1, 2]` came back in
`structuredContent` as `data: [1;base64,IDJd`, `repo.write_file` of `data:,abc` wrote
`data:text/plain;base64,YWJj` to disk, a path `data:,x` reached the worker as
`data:text/plain;base64,eA==`, and the arguments digest (approvals, audit) was computed over the
mangled form. Checked over Streamable HTTP and stdio with the official client.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from interop_support import OPERATOR_KEY, POLICIES_DIR, TENANT, WORKSPACE, assert_ok, http_mcp, run_cli
from mcp_compat import ClientSession, StdioServerParameters, stdio_client

pytestmark = pytest.mark.anyio

# Strings the SDK took for data URLs, and neighbours that must stay text too.
TRICKY = ["data: [1, 2]", "data:,abc", "data:text/plain;base64,YWJj", "data:;base64,", "data:,", "DATA:,x"]


def canonical_digest(arguments: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON Leasehold hashes (sorted keys, no whitespace, ASCII here)."""
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def exercise(session: ClientSession, root: Path) -> list[dict[str, Any]]:
    """Writes, reads and names files with every tricky string; returns the arguments it sent."""
    sent: list[dict[str, Any]] = []
    for index, text in enumerate(TRICKY):
        # Content written through the tool lands on disk byte for byte...
        arguments = {"path": f"w{index}.txt", "content": text}
        assert_ok(await session.call_tool("repo.write_file", arguments), "repo.write_file")
        sent.append(arguments)
        assert (root / f"w{index}.txt").read_text() == text
        # ...and content planted on disk comes back byte for byte, structured and as text.
        (root / f"r{index}.txt").write_text(text)
        arguments = {"path": f"r{index}.txt"}
        result = await session.call_tool("repo.read_file", arguments)
        sent.append(arguments)
        assert assert_ok(result, "repo.read_file")["content"] == text
        assert json.loads(result.content[0].text)["content"] == text
    # A path that looks like a data URL names exactly that file.
    arguments = {"path": "data:,x", "content": "named"}
    assert_ok(await session.call_tool("repo.write_file", arguments), "repo.write_file")
    sent.append(arguments)
    assert (root / "data:,x").read_text() == "named"
    return sent


async def test_strings_survive_unchanged_over_http(server, workspace_root: Path) -> None:
    session_record, claim = server.create_session()
    async with http_mcp(server.mcp_url, claim) as conn:
        sent = await exercise(conn.session, workspace_root)
    records = server.admin("GET", f"/audit?session_id={session_record['id']}&limit=1000", expect=200).json()["records"]
    digests = [r["event"]["arguments_digest"] for r in records if r["event"]["event"] == "call.intent"]
    # The audit trail (and every approval) hashes what the client sent, not a rewritten form.
    assert digests == [canonical_digest(arguments) for arguments in sent]


async def test_strings_survive_unchanged_over_stdio(binary: Path, state_dir: Path, workspace_root: Path,
                                                    tmp_path: Path) -> None:
    run_cli(binary, "workspace", "add", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR),
            "--tenant", TENANT, "--workspace", WORKSPACE, "--root", str(workspace_root))
    created = json.loads(run_cli(binary, "session", "create", "--state-dir", str(state_dir), "--policies",
                                 str(POLICIES_DIR), "--tenant", TENANT, "--actor", "alice", "--workspace", WORKSPACE))
    params = StdioServerParameters(
        command=str(binary),
        args=["serve", "--stdio", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR)],
        env={"LEASEHOLD_CLAIM": created["claim"], "LEASEHOLD_OPERATOR_KEY": OPERATOR_KEY},
    )
    with open(tmp_path / "stdio-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                sent = await exercise(session, workspace_root)
    tail = run_cli(binary, "audit", "tail", "-n", "1000", "--state-dir", str(state_dir))
    records = [json.loads(line)["event"] for line in tail.splitlines() if line.strip()]
    digests = [r["arguments_digest"] for r in records if r.get("event") == "call.intent"
               and r.get("session") == created["session"]["id"]]
    assert digests == [canonical_digest(arguments) for arguments in sent]

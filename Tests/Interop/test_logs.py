"""`serve --log-format json`: every log line is one JSON object; each MCP request leaves one
`mcp.request` line at info carrying the ids its audit records carry (request id, session, lease,
claim fingerprint), and no line ever holds a claim or a file's content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interop_support import (
    POLICIES_DIR,
    LeaseholdServer,
    assert_read_fixture,
    http_mcp,
    raw_headers,
    raw_post,
)

pytestmark = pytest.mark.anyio

SECRET_CONTENT = "content-that-must-never-be-logged-5f1c"


def json_lines(server: LeaseholdServer) -> list[dict]:
    """Every stderr line but the CLI's own `leasehold:` banner lines, each parsed as JSON."""
    parsed = []
    for line in server.log:
        if line.startswith("leasehold:") or line.startswith("  ") or not line.strip():
            continue  # the banner printed for the operator, not a log line
        parsed.append(json.loads(line))
    return parsed


async def test_one_json_line_per_request_joins_its_audit_records(
    binary: Path, state_dir: Path, workspace_root: Path
) -> None:
    (workspace_root / "secret.txt").write_text(SECRET_CONTENT)
    server = LeaseholdServer(binary, state_dir, POLICIES_DIR, extra_args=["--log-format", "json"]).start()
    try:
        server.register_workspace(workspace_root)
        session, claim = server.create_session(denied_tool_names=["shell.*"])
        async with http_mcp(server.mcp_url, claim) as conn:
            assert_read_fixture(await conn.session.call_tool("repo.read_file", {"path": "README.md"}))
            headers = raw_headers(claim, conn.mcp_session_id, conn.protocol_version)
            call = {
                "jsonrpc": "2.0", "id": "log-req-1", "method": "tools/call",
                "params": {"name": "repo.read_file", "arguments": {"path": "secret.txt"}},
            }
            response = await raw_post(server.mcp_url, call, headers)
            assert SECRET_CONTENT in response.text
            refused = {
                "jsonrpc": "2.0", "id": "log-req-2", "method": "tools/call",
                "params": {"name": "shell.run", "arguments": {"command": "id"}},
            }
            await raw_post(server.mcp_url, refused, headers)
            await raw_post(server.mcp_url, {"jsonrpc": "2.0", "id": "log-req-3", "method": "tools/list"}, headers)
        line = server.wait_for_log('"request_id":"log-req-3"')
        assert line is not None, "no mcp.request line for tools/list"
        audit = server.admin("GET", f"/audit?session_id={session['id']}", expect=200).json()["records"]
    finally:
        server.stop()

    lines = json_lines(server)
    assert lines, "no JSON log lines"
    for entry in lines:
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
    requests = {e.get("request_id"): e for e in lines if e["msg"] == "mcp.request"}

    ok = requests["log-req-1"]
    assert ok["level"] == "info" and ok["mcp.method.name"] == "tools/call"
    assert ok["gen_ai.tool.name"] == "repo.read_file" and ok["tier"] == "read" and ok["outcome"] == "ok"
    assert float(ok["duration_ms"]) >= 0
    # The same ids as the audit record of that call.
    intent = next(r["event"] for r in audit if r["event"].get("request_id") == "log-req-1")
    for log_key, audit_key in (("session", "session"), ("lease", "lease"), ("claim_fingerprint", "claim_fingerprint"),
                               ("tenant", "tenant"), ("actor", "actor"), ("workspace", "workspace")):
        assert ok[log_key] == intent[audit_key], (log_key, ok, intent)
    assert ok["session"] == session["id"]

    denied = requests["log-req-2"]
    assert denied["outcome"] == "refused" and denied["code"] == "tool_not_in_scope"
    assert requests["log-req-3"]["mcp.method.name"] == "tools/list"

    everything = "\n".join(server.log)
    assert claim not in everything, "a claim was logged"
    assert claim.split(".")[1] not in everything, "a claim's payload was logged"
    assert SECRET_CONTENT not in everything, "a file's content was logged"
    assert "interop fixture" not in everything

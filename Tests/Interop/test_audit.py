"""The audit trail through the real binary: what is recorded, tenant isolation of the API,
tamper detection, durability across kill -9, and refusal when records cannot be written."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from interop_support import (
    INITIALIZE_BODY,
    OPERATOR_KEY,
    LeaseholdServer,
    POLICIES_DIR,
    assert_read_fixture,
    http_mcp,
    jsonrpc_messages,
    raw_headers,
    raw_post,
)

pytestmark = pytest.mark.anyio


def audit_cli(binary: Path, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "audit", *args, "--state-dir", str(state_dir)], capture_output=True, text=True, timeout=60
    )


def exported(binary: Path, state_dir: Path) -> list[dict]:
    result = audit_cli(binary, state_dir, "export", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def open_connection(server, claim: str) -> str:
    response = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert response.status_code == 200, response.text
    sid = response.headers["mcp-session-id"]
    version = INITIALIZE_BODY["params"]["protocolVersion"]
    await raw_post(server.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, raw_headers(claim, sid, version))
    return sid


async def call_tool(server, claim: str, sid: str, name: str, arguments: dict, request_id: int) -> dict:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    response = await raw_post(server.mcp_url, body, raw_headers(claim, sid, INITIALIZE_BODY["params"]["protocolVersion"]))
    assert response.status_code == 200, response.text
    return jsonrpc_messages(response)[0]


async def test_calls_refusals_and_admin_changes_are_recorded_per_tenant(server, binary: Path, tmp_path: Path) -> None:
    globex_root = server.workspace_dir("globex")
    server.register_workspace(globex_root, tenant="globex")
    acme, acme_claim = server.create_session(denied_tool_names=["shell.*"])
    globex, globex_claim = server.create_session(tenant_id="globex", actor_id="gina")
    async with http_mcp(server.mcp_url, acme_claim) as conn:
        assert_read_fixture(await conn.session.call_tool("repo.read_file", {"path": "README.md"}))
    sid = await open_connection(server, globex_claim)
    refused = await call_tool(server, globex_claim, sid, "kb.secret", {}, 41)
    assert refused["error"]["code"] == -32602
    await server.aadmin("PATCH", f"/sessions/{acme['id']}", {"denied_tool_names": None}, expect=200)
    await server.aadmin("DELETE", f"/sessions/{acme['id']}", expect=200)
    bad = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(acme_claim))
    assert bad.status_code == 401

    records = exported(binary, server.state_dir)
    events = [(r["event"]["event"], r["event"].get("session"), r["event"].get("tool"), r["event"].get("code")) for r in records]
    assert ("session.created", acme["id"], None, None) in events
    assert ("call.intent", acme["id"], "repo.read_file", None) in events
    assert ("call.outcome", acme["id"], "repo.read_file", None) in events
    assert ("worker.spawned", acme["id"], None, None) in events
    assert ("call.refused", globex["id"], "kb.secret", "tool_not_in_scope") in events
    assert ("session.patched", acme["id"], None, None) in events
    assert ("session.revoked", acme["id"], None, None) in events
    assert any(e[0] == "request.refused" and e[3] == "session_revoked" and e[1] == acme["id"] for e in events), events
    intent = next(r["event"] for r in records if r["event"]["event"] == "call.intent")
    assert intent["tenant"] == "acme" and intent["actor"] == "alice" and intent["workspace"] == "w1"
    assert len(intent["arguments_digest"]) == 64 and len(intent["claim_fingerprint"]) == 64
    assert intent["tier"] == "read" and intent["isolation"] == "session" and intent["policy_version"]
    # The outcome names the warm read-tier worker that served the call, spawned for this session.
    outcome = next(r["event"] for r in records if r["event"]["event"] == "call.outcome")
    assert outcome["outcome"] == "completed" and outcome["isolation"] == "session", outcome
    assert outcome["worker_id"].startswith("wkr_") and outcome["duration_ms"] >= 0, outcome
    spawned = next(r["event"] for r in records if r["event"]["event"] == "worker.spawned")
    assert spawned["worker_id"] == outcome["worker_id"] and spawned["tier"] == "read", spawned
    assert (spawned["tenant"], spawned["session"], spawned["lease"]) == ("acme", acme["id"], acme["lease"]["id"]), spawned
    # Revoking the session destroyed its warm worker, with the reason as the record's code.
    destroyed = [r["event"] for r in records if r["event"]["event"] == "worker.destroyed"]
    assert [(d["worker_id"], d["code"]) for d in destroyed] == [(outcome["worker_id"], "session_revoked")], destroyed
    refusal = next(r["event"] for r in records if r["event"]["event"] == "call.refused")
    assert refusal["request_id"] == "41", refusal
    # The trail holds fingerprints, never a token.
    raw = b"".join(p.read_bytes() for p in server.state_dir.glob("audit.sqlite*"))
    assert acme_claim.encode() not in raw and globex_claim.encode() not in raw
    assert audit_cli(binary, server.state_dir, "verify").stdout.startswith(f"ok: {len(records)} records")

    # A tenant admin key reads only its tenant; asking for another is refused.
    key = (await server.aadmin("POST", "/tenants/globex/admin-keys", expect=201)).json()["key"]
    async with httpx.AsyncClient(timeout=20) as client:
        mine = await client.get(server.api_url + "/audit", headers={"Authorization": f"Bearer {key}"})
        assert mine.status_code == 200
        tenants = {r["event"].get("tenant") for r in mine.json()["records"]}
        assert tenants == {"globex"}, tenants
        other = await client.get(server.api_url + "/audit?tenant_id=acme", headers={"Authorization": f"Bearer {key}"})
        assert other.status_code == 403
        by_session = await client.get(
            server.api_url + f"/audit?session_id={acme['id']}", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}
        )
        assert {r["event"]["session"] for r in by_session.json()["records"]} == {acme["id"]}


@pytest.mark.parametrize(
    "tamper, expected",
    [
        ("UPDATE audit SET body = replace(body, 'alice', 'mallory') WHERE seq = 3", "bad record 3: contents do not match"),
        ("DELETE FROM audit WHERE seq = 2", "bad record 3: expected record 2 here"),
        ("UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 100",
         "bad record 2: prev_hash does not match"),
        ("INSERT INTO audit (seq, time, tenant, session, event, body, prev_hash, hash)"
         " SELECT 1000, time, tenant, session, event, body, prev_hash, hash FROM audit WHERE seq = 1;"
         " UPDATE audit SET seq = -seq WHERE seq >= 2 AND seq < 1000; UPDATE audit SET seq = 1 - seq WHERE seq < 0;"
         " UPDATE audit SET seq = 2 WHERE seq = 1000",
         "bad record 2: prev_hash does not match"),
    ],
    ids=["edit", "delete", "reorder", "insert"],
)
async def test_verify_detects_tampering(server, binary: Path, tamper: str, expected: str) -> None:
    for _ in range(3):
        server.create_session()
    server.stop()
    assert audit_cli(binary, server.state_dir, "verify").returncode == 0
    db = sqlite3.connect(server.state_dir / "audit.sqlite")
    db.executescript(tamper)
    db.commit()
    db.close()
    result = audit_cli(binary, server.state_dir, "verify")
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith(expected), result.stdout


async def test_acknowledged_records_survive_kill_9(server, binary: Path) -> None:
    _, claim = server.create_session()
    sid = await open_connection(server, claim)
    answered = 0
    for request_id in range(100, 140):
        response = await call_tool(server, claim, sid, "repo.stat", {"path": f"f{request_id}"}, request_id)
        assert response["result"]["isError"] is True
        answered += 1
    server._process.send_signal(signal.SIGKILL)  # no chance to flush or close anything
    server._process.wait(timeout=10)
    records = exported(binary, server.state_dir)
    intents = {r["event"]["request_id"] for r in records if r["event"]["event"] == "call.intent"}
    outcomes = {r["event"]["request_id"] for r in records if r["event"]["event"] == "call.outcome"}
    expected = {str(i) for i in range(100, 100 + answered)}
    assert expected <= intents
    verify = audit_cli(binary, server.state_dir, "verify")
    assert verify.stdout.startswith(f"ok: {len(records)} records"), verify.stdout
    # repo.stat is a `batched` tier: its outcome may be committed just after the response, so one
    # cut off by the kill is allowed, provided verify names the call as outcome unknown.
    unknown = {line.split(", request ")[1].split(",")[0] for line in verify.stdout.splitlines()
               if line.startswith("outcome unknown: ")}
    assert expected - outcomes <= unknown, (sorted(expected - outcomes), verify.stdout)
    assert verify.returncode == (2 if unknown else 0), verify.stdout


async def test_calls_are_refused_when_the_audit_log_cannot_be_written(tmp_path: Path, binary: Path, workspace_root: Path) -> None:
    """A file-size limit on the runner stands in for a full disk: the audit log's write-ahead log
    hits it, every further call is refused with audit_unavailable, and the runner stays up."""
    limit = 256 * 1024

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    server = LeaseholdServer(binary, tmp_path / "state", POLICIES_DIR, preexec=limit_file_size).start()
    try:
        server.register_workspace(workspace_root)
        ready = httpx.get(server.base_url + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}, ready.text
        _, claim = server.create_session()
        sid = await open_connection(server, claim)
        refused = None
        for request_id in range(1, 2000):
            response = await call_tool(server, claim, sid, "repo.stat", {"path": "x" * 200}, request_id)
            error = response["result"]["structuredContent"]["error"]
            if error["code"] != "not_found":  # the worker ran repo.stat on a name that does not exist
                refused = (request_id, error)
                break
        assert refused is not None and refused[1]["code"] == "audit_unavailable", refused
        again = await call_tool(server, claim, sid, "repo.read_file", {"path": "README.md"}, 5000)
        assert again["result"]["isError"] is True
        assert again["result"]["structuredContent"]["error"]["code"] == "audit_unavailable"
        assert "the call was not run" in again["result"]["structuredContent"]["error"]["message"]
        health = httpx.get(server.base_url + "/healthz", timeout=10)
        assert health.status_code == 200, "the runner must survive a full audit disk"
        # But it is not ready: a load balancer must send tenants elsewhere until it is restarted.
        ready = httpx.get(server.base_url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json() == {"status": "audit_unavailable"}, ready.text
    finally:
        server.stop()
    # Whatever was acknowledged is intact. A call that ran and whose outcome could not be written
    # is listed as outcome unknown (exit 2): the refused call when its message says so, or (a
    # `batched` outcome is committed after the response) the call just before it; no other.
    verify = audit_cli(binary, tmp_path / "state", "verify")
    assert verify.stdout.startswith("ok: "), verify.stdout
    unknown = {int(line.split(", request ")[1].split(",")[0]) for line in verify.stdout.splitlines()
               if line.startswith("outcome unknown: ")}
    assert unknown <= {refused[0] - 1, refused[0]}, verify.stdout
    if "the call ran but its outcome could not be recorded" in refused[1]["message"]:
        assert refused[0] in unknown, verify.stdout
    assert verify.returncode == (2 if unknown else 0), verify.stdout

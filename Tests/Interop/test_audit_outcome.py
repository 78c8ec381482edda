"""Outcome unknown (issue 13) through the real binary. A `shell.run` (exec tier: per-call worker,
`audit_sync: full`, no approval in the shipped policies) is left running while the runner is
killed with SIGKILL: `audit verify` lists its intent as "outcome unknown" and exits 2, and the audit
API of the restarted runner marks it `outcome_status: unknown`. While a runner serves the state
directory, a running call is "in flight" to both, not unknown, and a graceful stop still writes
its outcome."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from interop_support import (
    INITIALIZE_BODY,
    LeaseholdServer,
    POLICIES_DIR,
    jsonrpc_messages,
    raw_headers,
    raw_post,
)

pytestmark = pytest.mark.anyio

PROTOCOL = INITIALIZE_BODY["params"]["protocolVersion"]
# Under the exec tier's 30 s wall limit: the call is still running whenever the test acts on it.
LONG_CALL = {"command": "sleep 25"}
POLL_LIMIT_S = 20.0


def audit_verify(binary: Path, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "audit", "verify", "--state-dir", str(state_dir), *args], capture_output=True, text=True,
        timeout=60,
    )


async def open_connection(server: LeaseholdServer, claim: str) -> str:
    response = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert response.status_code == 200, response.text
    sid = response.headers["mcp-session-id"]
    await raw_post(server.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, raw_headers(claim, sid, PROTOCOL))
    return sid


def call_body(request_id: int, name: str, arguments: dict) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def post_long(server: LeaseholdServer, claim: str, sid: str, request_id: int) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(
            server.mcp_url, json=call_body(request_id, "shell.run", LONG_CALL), headers=raw_headers(claim, sid, PROTOCOL)
        )


def audit_page(server: LeaseholdServer, session_id: str) -> list[dict]:
    return server.admin("GET", f"/audit?session_id={session_id}", expect=200).json()["records"]


def intent_entry(records: list[dict], request_id: int) -> dict | None:
    return next(
        (r for r in records if r["event"]["event"] == "call.intent" and r["event"].get("request_id") == str(request_id)),
        None,
    )


async def wait_for_intent(server: LeaseholdServer, session_id: str, request_id: int) -> dict:
    """Polls the audit API (bounded) until the call's intent is committed; returns its entry."""
    deadline = time.monotonic() + POLL_LIMIT_S
    while time.monotonic() < deadline:
        entry = intent_entry(audit_page(server, session_id), request_id)
        if entry is not None:
            return entry
        await asyncio.sleep(0.05)
    pytest.fail(f"no call.intent for request {request_id} within {POLL_LIMIT_S}s")


async def test_a_call_cut_off_by_kill_9_is_outcome_unknown(server: LeaseholdServer, binary: Path) -> None:
    session, claim = server.create_session()
    sid = await open_connection(server, claim)
    done = await raw_post(
        server.mcp_url, call_body(1, "repo.read_file", {"path": "README.md"}), raw_headers(claim, sid, PROTOCOL)
    )
    assert jsonrpc_messages(done)[0]["result"]["isError"] is False, done.text
    running = asyncio.create_task(post_long(server, claim, sid, 2))
    try:
        intent = await wait_for_intent(server, session["id"], 2)
        assert intent["event"]["tool"] == "shell.run" and intent["event"]["tier"] == "exec", intent
        server.send_signal(signal.SIGKILL)
        assert server._process is not None
        server._process.wait(timeout=10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    seq = intent["seq"]

    result = audit_verify(binary, server.state_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok: "), result.stdout
    unknown = [line for line in lines if line.startswith("outcome unknown: ")]
    assert len(unknown) == 1, result.stdout
    assert unknown[0].startswith(f"outcome unknown: record {seq}: shell.run, tenant acme, session {session['id']}, request 2"), unknown
    assert "calls: 2 intents, 1 with outcome unknown, 0 in flight" in lines, result.stdout
    accepted = audit_verify(binary, server.state_dir, "--allow-unknown-outcomes")
    assert accepted.returncode == 0 and f"outcome unknown: record {seq}: " in accepted.stdout, accepted.stdout

    # A restarted runner's audit API says so too; the finished call's intent names its outcome.
    restarted = LeaseholdServer(binary, server.state_dir, POLICIES_DIR).start()
    try:
        records = audit_page(restarted, session["id"])
        killed = intent_entry(records, 2)
        assert killed is not None and killed["seq"] == seq
        assert killed["outcome_status"] == "unknown" and "outcome_seq" not in killed, killed
        finished = intent_entry(records, 1)
        assert finished is not None and finished["outcome_status"] == "recorded", finished
        outcome = next(r for r in records if r["seq"] == finished["outcome_seq"])
        assert outcome["event"]["event"] == "call.outcome" and outcome["event"]["request_id"] == "1", outcome
        assert all("outcome_status" not in r for r in records if r["event"]["event"] != "call.intent")
    finally:
        restarted.stop()


async def test_a_running_call_is_in_flight_and_a_graceful_stop_records_its_outcome(
    server: LeaseholdServer, binary: Path
) -> None:
    session, claim = server.create_session()
    sid = await open_connection(server, claim)
    running = asyncio.create_task(post_long(server, claim, sid, 7))
    try:
        intent = await wait_for_intent(server, session["id"], 7)
        assert intent["outcome_status"] == "in_flight", intent
        live = audit_verify(binary, server.state_dir)
        assert live.returncode == 0, live.stdout + live.stderr
        assert f"in flight: record {intent['seq']}: shell.run" in live.stdout, live.stdout
        assert "calls: 1 intents, 0 with outcome unknown, 1 in flight" in live.stdout, live.stdout
        assert not any(line.startswith("outcome unknown: ") for line in live.stdout.splitlines()), live.stdout
        # SIGTERM: the runner destroys its workers, so the call ends, and its outcome is written
        # before the process exits.
        server.stop()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    stopped = audit_verify(binary, server.state_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "calls: 1 intents, 0 with outcome unknown, 0 in flight" in stopped.stdout, stopped.stdout

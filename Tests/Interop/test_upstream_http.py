"""`transport: http` upstream servers through the real binary (issue 15): answers read as they
arrive, and the server's own `notifications/tools/list_changed`.

The upstream is Tests/Interop/http_upstream_server.py (from `.venv-examples`): the official SDK's
FastMCP at /mcp (stateful, with a standalone GET stream) and a hand-written endpoint at /raw for
answers no SDK server gives on purpose (one that grows for a minute, one that never comes).

- A tool added at runtime reaches connected clients: the server's list_changed, on its GET stream
  or inside a call's own SSE answer, makes Leasehold list it again; a session that may see the new
  tool gets `notifications/tools/list_changed` and finds it in tools/list, one whose scope hides it
  gets neither.
- An answer over the tier's output_bytes fails `limit_exceeded` as soon as it passes the cap: the
  call ends in well under the minute the server would take, and the server sees the client leave.
- No answer within the tier's wall_ms is `upstream_timeout`, and the server is sent
  `notifications/cancelled`.
- A request of the server's (roots/list) inside a call's answer is answered "not offered".
- SIGTERM while a call waits for its server's answer: the runner stops only once the call ended and
  its outcome is in the audit trail (nothing left in flight, nothing unknown).
- `GET /api/v1/servers` says how each server's GET stream is doing; a server that redirects is
  not followed (its configured headers would go with the redirect).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from interop_support import (
    INITIALIZE_BODY,
    REPO_ROOT,
    ListChangedWatcher,
    LeaseholdServer,
    assert_ok,
    assert_tool_error,
    copy_policies,
    http_mcp,
    raw_headers,
)
from mcp_compat import wire

pytestmark = pytest.mark.anyio

PYTHON = REPO_ROOT / ".venv-examples" / "bin" / "python"
UPSTREAM = Path(__file__).resolve().parent / "http_upstream_server.py"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The upstream server's base URL (one process for the module; tools added at runtime stay)."""
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run scripts/bootstrap.sh --python", pytrace=False)
    process = subprocess.Popen([str(PYTHON), str(UPSTREAM), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline() if process.stdout else ""
    assert line.startswith("listening on "), f"http_upstream_server did not start: {line!r}"
    yield line.split()[-1]
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def runner(upstream: str, tmp_path: Path, start_server) -> LeaseholdServer:
    # raw.huge gets a small output cap, raw.hang a short wall clock; the rest is `read`.
    policies = copy_policies(tmp_path / "policies", [("raw.huge", "http-small"), ("raw.hang", "http-quick")])
    tiers = policies / "tiers.yaml"
    text = tiers.read_text()
    read = text[text.index("  read:\n"):text.index("  write:\n")]
    small = read.replace("  read:\n", "  http-small:\n", 1).replace("output_bytes: 1048576", "output_bytes: 65536", 1)
    quick = read.replace("  read:\n", "  http-quick:\n", 1).replace("wall_ms: 10000", "wall_ms: 2500", 1)
    assert small != read.replace("  read:\n", "  http-small:\n", 1) and "wall_ms: 2500" in quick
    tiers.write_text(text.rstrip("\n") + "\n" + small + quick)
    config = tmp_path / "leasehold.yaml"
    config.write_text(
        "servers:\n"
        f"  - {{id: up, transport: http, url: '{upstream}/mcp', tier: read}}\n"
        f"  - {{id: raw, transport: http, url: '{upstream}/raw', tier: read}}\n"
        f"  - {{id: moved, transport: http, url: '{upstream}/moved', tier: read}}\n"
    )
    server = start_server(policies=policies, config=config)
    server.upstream = upstream  # type: ignore[attr-defined]
    return server


def servers(runner: LeaseholdServer) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in runner.admin("GET", "/servers", expect=200).json()["servers"]}


def wait_for(what: str, check: Any, timeout: float = 15.0) -> Any:
    """Polls `check` (a state another process changes, no event to wait on) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stats(upstream: str) -> dict[str, Any]:
    return httpx.get(upstream + "/stats", timeout=10).json()


@pytest.mark.parametrize("where", ["stream", "answer"])
async def test_a_tool_added_at_runtime_reaches_the_sessions_that_may_see_it(
    runner: LeaseholdServer, where: str
) -> None:
    # The FastMCP server's GET stream is open; the raw one offers none and its status says so.
    status = wait_for("up's GET stream", lambda: (s := servers(runner))["up"].get("stream") == "open" and s)
    assert status["up"]["state"] == "listed" and status["up"]["tools"] >= 2, status
    assert status["raw"]["stream"].startswith("not offered"), status
    assert {"id", "isolation", "tools", "state"} <= set(status["raw"]), status
    # A redirect is not followed (the configured headers would go with it): the server is not listed.
    assert status["moved"]["state"] == "failed" and "HTTP 307" in status["moved"]["last_error"], status["moved"]

    new = f"added_{where}_{os.getpid()}"
    _, claim = runner.create_session(actor_id="alice", allowed_tool_names=["up.*"])
    _, hidden_claim = runner.create_session(actor_id="bob", allowed_tool_names=["up.echo"])
    watcher, hidden_watcher = ListChangedWatcher(), ListChangedWatcher()
    async with http_mcp(runner.mcp_url, claim, message_handler=watcher) as conn, \
            http_mcp(runner.mcp_url, hidden_claim, message_handler=hidden_watcher) as hidden:
        await conn.wait_for_notification_stream()
        await hidden.wait_for_notification_stream()
        before = set(await conn.tool_names())
        assert {"up.echo", "up.add_tool"} <= before and f"up.{new}" not in before, before
        # What a connection was last shown is what a change is measured against.
        assert set(await hidden.tool_names()) & {"up.echo", "up.add_tool"} == {"up.echo"}
        hidden_before = hidden_watcher.count

        expected = watcher.count + 1
        added = assert_ok(await conn.session.call_tool("up.add_tool", {"name": new, "where": where}), "up.add_tool")
        assert added["added"] == new, added
        await watcher.wait_count(expected, timeout=20)
        after = set(await conn.tool_names())
        assert after == before | {f"up.{new}"}, after ^ before
        ran = assert_ok(await conn.session.call_tool(f"up.{new}", {}), f"up.{new}")
        assert ran["added"] == new, ran

        # The hidden session's view did not change: no notification, no new tool.
        assert set(await hidden.tool_names()) & {f"up.{new}", "up.add_tool"} == set()
        assert hidden_watcher.count == hidden_before
    assert servers(runner)["up"]["tools"] == len([n for n in after if n.startswith("up.")])
    assert stats(runner.upstream)["caught"] == 0  # type: ignore[attr-defined]


async def test_an_answer_over_the_cap_fails_as_soon_as_it_passes_it(runner: LeaseholdServer, upstream: str) -> None:
    _, claim = runner.create_session(allowed_tool_names=["raw.*"])
    begun = stats(upstream)["huge_started"]
    async with http_mcp(runner.mcp_url, claim) as conn:
        result = await conn.session.call_tool("raw.huge", {})
    error = assert_tool_error(result, "limit_exceeded", "raw.huge")
    # The server would take a minute to send its 60 MB; the cap (64 KiB + 64 KiB) passes early, which
    # the bytes it managed to send before the runner left (below) show, whatever the machine's speed.
    assert "65536" in json.dumps(error) or "131072" in json.dumps(error), error
    # The runner closed the connection: the server stopped sending long before the end.
    after = wait_for("the server to see the client leave", lambda: (s := stats(upstream))["huge_sent"] is not None
                     and s["huge_started"] > begun and s)
    assert after["huge_sent"] < 5_000_000, after


async def test_no_answer_in_time_is_upstream_timeout_and_the_server_is_told(
    runner: LeaseholdServer, upstream: str
) -> None:
    _, claim = runner.create_session(allowed_tool_names=["raw.*"])
    seen = len(stats(upstream)["cancelled"])
    async with http_mcp(runner.mcp_url, claim) as conn:
        started = time.monotonic()
        result = await conn.session.call_tool("raw.hang", {})
        elapsed = time.monotonic() - started
        assert_tool_error(result, "upstream_timeout", "raw.hang")
        # Not before the tier's wall clock (2.5 s; a hang would end at the test's own timeout).
        assert elapsed >= 2.0, elapsed
        # The server is still fine for the next call.
        assert_ok(await conn.session.call_tool("raw.ask", {}), "raw.ask")
    cancelled = wait_for("notifications/cancelled", lambda: stats(upstream)["cancelled"][seen:])
    assert cancelled[0]["reason"] == "timeout" and isinstance(cancelled[0]["requestId"], int), cancelled


async def test_a_request_of_the_server_is_answered_not_offered(runner: LeaseholdServer) -> None:
    _, claim = runner.create_session(allowed_tool_names=["raw.*"])
    async with http_mcp(runner.mcp_url, claim) as conn:
        with anyio.fail_after(30):
            answer = assert_ok(await conn.session.call_tool("raw.ask", {}), "raw.ask")
    assert answer["id"] == "roots-1", answer
    assert answer["error"] == {"code": -32601, "message": "Leasehold does not offer this to upstream servers"}, answer


async def test_progress_of_an_http_upstream_reaches_the_client(runner: LeaseholdServer, upstream: str) -> None:
    _, claim = runner.create_session()
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    before = len(stats(upstream)["slow_tokens"])
    async with http_mcp(runner.mcp_url, claim) as conn:
        result = await conn.session.call_tool("up.slow", {"steps": 3, "seconds": 0.3}, progress_callback=on_progress)
        assert not wire(result, "isError"), result
    assert reports == [(i, 3, f"step {i}/3") for i in range(1, 4)], reports
    tokens = stats(upstream)["slow_tokens"][before:]
    assert len(tokens) == 1 and str(tokens[0]).startswith("progress"), "the server got Leasehold's token, not the client's"


def test_a_cancelled_call_of_an_http_upstream_ends_and_the_server_is_told(runner: LeaseholdServer, upstream: str) -> None:
    claim = runner.create_session()[1]
    http = httpx.Client(timeout=60)
    opened = http.post(runner.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
    sid = opened.headers["mcp-session-id"]
    headers = raw_headers(claim, sid, INITIALIZE_BODY["params"]["protocolVersion"])
    http.post(runner.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    cancelled_before = stats(upstream)["slow_cancelled"]
    body = {"jsonrpc": "2.0", "id": 41, "method": "tools/call",
            "params": {"name": "up.slow", "arguments": {"steps": 40, "seconds": 40}, "_meta": {"progressToken": "t41"}}}
    with http.stream("POST", runner.mcp_url, json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(json.loads(line[5:]) for line in lines if line.startswith("data:"))
        assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == "t41", first
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 41}}
        assert http.post(runner.mcp_url, json=cancel, headers=headers).status_code == 202
        messages = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    final = messages[-1]
    assert final["id"] == 41 and final["result"]["isError"] is True, final
    assert final["result"]["structuredContent"]["error"]["code"] == "cancelled", final
    wait_for("the server to see the cancellation", lambda: stats(upstream)["slow_cancelled"] > cancelled_before)
    http.close()


def test_a_graceful_stop_with_a_call_in_flight_records_its_outcome(runner: LeaseholdServer, binary: Path) -> None:
    session, claim = runner.create_session(allowed_tool_names=["raw.*"])
    http = httpx.Client(timeout=60)
    opened = http.post(runner.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
    sid = opened.headers["mcp-session-id"]
    headers = raw_headers(claim, sid, INITIALIZE_BODY["params"]["protocolVersion"])
    http.post(runner.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    body = {"jsonrpc": "2.0", "id": 51, "method": "tools/call", "params": {"name": "raw.hang", "arguments": {}}}

    def intent() -> dict[str, Any] | None:
        records = runner.admin("GET", f"/audit?session_id={session['id']}", expect=200).json()["records"]
        return next((r for r in records if r["event"]["event"] == "call.intent"
                     and r["event"].get("request_id") == "51"), None)

    with ThreadPoolExecutor(max_workers=1) as pool:
        # The answer, if the client still gets one, is not the point: the trail is.
        pool.submit(lambda: http.post(runner.mcp_url, json=body, headers=headers))
        assert wait_for("the call's intent", intent)["outcome_status"] == "in_flight"
        runner.stop()  # SIGTERM; fails the test if the runner does not exit within its grace period
    http.close()
    verified = subprocess.run([str(binary), "audit", "verify", "--state-dir", str(runner.state_dir)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 with outcome unknown, 0 in flight" in verified.stdout, verified.stdout

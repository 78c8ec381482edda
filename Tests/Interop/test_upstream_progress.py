"""Progress and cancellation pass through to upstream servers (issue 15), through the real binary.

examples/kb_server.py's `beta_00` sleeps in steps and reports progress after each; `beta_13` says
what `beta_00` saw in its process (runs the client cancelled, progress tokens it was given).

- Progress: a client that asks for it (`_meta.progressToken`) gets the server's reports as its own
  `notifications/progress`, under its own token, in order, before the result: over Streamable HTTP
  (the official Python client; the response is an SSE stream) and over stdio. The server is given a
  token of Leasehold's, never the client's.
- Cancellation: the client's `notifications/cancelled` ends the call at once with `cancelled`
  (audited), the server is told (its handler is cancelled), and the same server process goes on
  serving the session. Only the connection the call came on can cancel it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import anyio
import httpx
import pytest

from attack_support import VERSION, Agent, World, jsonrpc_messages, raw_headers
from interop_support import (
    ACTOR,
    INITIALIZE_BODY,
    META_CLAIM_KEY,
    REPO_ROOT,
    TENANT,
    WORKSPACE,
    copy_policies,
    http_mcp,
    run_cli,
)
from mcp_compat import ClientSession, StdioServerParameters, stdio_client, wire

PYTHON = REPO_ROOT / ".venv-examples" / "bin" / "python"
KB_SERVER = REPO_ROOT / "examples" / "kb_server.py"


def servers_config(path: Path) -> Path:
    path.write_text(
        "servers:\n"
        f"  - {{id: vivi, transport: stdio, command: [{PYTHON}, {KB_SERVER}], "
        f"mounts: [{REPO_ROOT / 'examples'}, {REPO_ROOT / '.venv-examples'}], isolation: session, tier: upstream}}\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run scripts/bootstrap.sh --python", pytrace=False)
    base = Path(tmp_path_factory.mktemp("progress"))
    policies = copy_policies(base / "policies")
    world = World(base, policies=policies, config=servers_config(base / "leasehold.yaml"))
    yield world
    world.stop()


def session_claim(world: World, tenant: str = "acme", workspace: str = "w1") -> tuple[str, str]:
    data = world.server.admin("POST", "/sessions", {"tenant_id": tenant, "actor_id": "agent", "workspace_id": workspace},
                              expect=201).json()
    return data["session"]["id"], data["claim"]


def seen(agent: Agent) -> dict[str, Any]:
    """What beta_00 saw in the session's server process."""
    answer = agent.call("vivi.beta_13", {})
    assert not answer.is_error, answer.message
    return json.loads(answer.message["result"]["content"][0]["text"])


def sse_messages(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON-RPC messages of a streamed SSE response, as they arrive."""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []


def outcome_records(agent: Agent, request_id: int) -> list[dict[str, Any]]:
    return [r for r in agent.audit() if r.get("request_id") == str(request_id) and r["event"] == "call.outcome"]


@pytest.mark.anyio
async def test_progress_reaches_the_python_client_under_its_own_token(world: World) -> None:
    _, claim = session_claim(world)
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with http_mcp(world.server.mcp_url, claim) as conn:
        result = await conn.session.call_tool("vivi.beta_00", {"seconds": 0.4, "steps": 4}, progress_callback=on_progress)
        assert not wire(result, "isError"), result
        assert result.content[0].text == "done"
        assert reports == [(i, 4, f"step {i}/4") for i in range(1, 5)], reports
        # The server was given Leasehold's token, never the client's (its request id).
        probe = await conn.session.call_tool("vivi.beta_13", {})
        tokens = json.loads(probe.content[0].text)["progress_tokens"]
        assert len(tokens) == 1 and str(tokens[0]).startswith("progress"), tokens
        # A call without a token gets a plain answer and gives the server none.
        plain = await conn.session.call_tool("vivi.beta_00", {"seconds": 0, "steps": 1})
        assert plain.content[0].text == "done"
        probe = await conn.session.call_tool("vivi.beta_13", {})
        assert len(json.loads(probe.content[0].text)["progress_tokens"]) == 1


def test_a_cancelled_call_ends_at_once_and_the_server_is_told(world: World) -> None:
    agent = Agent(world, "acme", "w1")
    intruder = Agent(world, "globex", "g1")
    try:
        assert seen(agent)["cancelled"] == 0
        body = {"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                "params": {"name": "vivi.beta_00", "arguments": {"seconds": 40, "steps": 40}, "_meta": {"progressToken": "p77"}}}
        headers = raw_headers(agent.claim, agent.sid, VERSION)
        with agent.http.stream("POST", world.server.mcp_url, json=body, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            messages = sse_messages(response)
            first = next(messages)
            assert first["method"] == "notifications/progress", first
            assert first["params"]["progressToken"] == "p77" and first["params"]["progress"] == 1, first
            # Another tenant's connection naming the same request id cancels nothing.
            foreign = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77}}
            assert intruder.http.post(world.server.mcp_url, json=foreign,
                                      headers=raw_headers(intruder.claim, intruder.sid, VERSION)).status_code == 202
            second = next(messages)
            assert second.get("method") == "notifications/progress" and second["params"]["progress"] == 2, second
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77, "reason": "user"}}
            assert agent.http.post(world.server.mcp_url, json=cancel, headers=headers).status_code == 202
            rest = list(messages)
        final = rest[-1]
        assert final["id"] == 77, final
        result = final["result"]
        assert result["isError"] is True, final
        assert result["structuredContent"]["error"]["code"] == "cancelled", final
        assert all(m.get("method") == "notifications/progress" for m in rest[:-1]), rest
        assert len(rest) - 1 < 38, "the call ran to its end instead of being cancelled"

        # The server's handler was cancelled, and the same process goes on serving the session.
        for _ in range(50):
            if seen(agent)["cancelled"] == 1:
                break
        assert seen(agent)["cancelled"] == 1
        quick = agent.call("vivi.beta_00", {"seconds": 0, "steps": 1})
        assert quick.message["result"]["content"][0]["text"] == "done", quick.message
        records = agent.audit()
        outcome = [r for r in records if r.get("request_id") == "77" and r["event"] == "call.outcome"]
        assert outcome and outcome[-1].get("code") == "cancelled", outcome
        assert not [r for r in records if r["event"] == "worker.destroyed"], "cancelling destroyed the server's process"
    finally:
        agent.close()
        intruder.close()


MODERN = "2026-07-28"


def wait_for_outcome(world: World, session_id: str, request_id: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Bounded poll of the audit trail until request `request_id` has its `call.outcome` record."""
    key = world.admin_key("acme")
    deadline = time.monotonic() + timeout
    while True:
        records = httpx.get(world.server.api_url + f"/audit?session_id={session_id}&limit=10000",
                            headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["records"]
        outcome = [r["event"] for r in records
                   if r["event"].get("request_id") == request_id and r["event"]["event"] == "call.outcome"]
        if outcome or time.monotonic() > deadline:
            return outcome
        time.sleep(0.05)


def modern_call(request_id: str, arguments: dict[str, Any], token: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A sessionless (MCP 2026-07-28) `tools/call` of vivi.beta_00 asking for progress, and its headers."""
    envelope = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
                "progressToken": token}
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": "vivi.beta_00", "arguments": arguments, "_meta": envelope}}
    return body, {"Mcp-Method": "tools/call", "Mcp-Name": "vivi.beta_00"}


def test_progress_and_cancellation_on_the_sessionless_revision(world: World) -> None:
    """2026-07-28 has no sessions and no client notifications over HTTP: progress comes on the call's
    own SSE response, and closing that response cancels the call (audited `cancelled`)."""
    session_id, claim = session_claim(world)
    body, extra = modern_call("p26", {"seconds": 0.4, "steps": 4}, "tok-26")
    headers = {**raw_headers(claim, None, MODERN), **extra}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", world.server.mcp_url, json=body, headers=headers) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            messages = list(sse_messages(response))
        progress = [m["params"] for m in messages[:-1]]
        assert [(p["progressToken"], p["progress"]) for p in progress] == [("tok-26", i) for i in range(1, 5)], messages
        assert messages[-1]["id"] == "p26" and messages[-1]["result"]["resultType"] == "complete", messages[-1]
        assert messages[-1]["result"]["content"][0]["text"] == "done"

        body, _ = modern_call("c26", {"seconds": 40, "steps": 40}, "tok-c26")
        with http.stream("POST", world.server.mcp_url, json=body, headers=headers) as response:
            first = next(sse_messages(response))
            assert first["method"] == "notifications/progress" and first["params"]["progress"] == 1, first
    # Closed: the call is cancelled and its outcome recorded.
    outcome = wait_for_outcome(world, session_id, "c26")
    assert outcome and outcome[-1].get("code") == "cancelled", outcome


def test_cancelling_a_call_that_is_not_in_flight_changes_nothing(world: World) -> None:
    agent = Agent(world, "acme", "w1")
    try:
        headers = raw_headers(agent.claim, agent.sid, VERSION)
        for request_id in (12345, "nope", None):
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
            assert agent.http.post(world.server.mcp_url, json=cancel, headers=headers).status_code in (202, 400)
        done = agent.call("vivi.beta_00", {"seconds": 0, "steps": 1})
        assert done.message["result"]["content"][0]["text"] == "done", done.message
    finally:
        agent.close()


# ---------------------------------------------------------------------------------------------
# stdio: the same through `leasehold serve --stdio`
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def stdio_setup(binary: Path, state_dir: Path, workspace_root: Path, tmp_path: Path) -> dict[str, Any]:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run scripts/bootstrap.sh --python", pytrace=False)
    policies = copy_policies(tmp_path / "policies")
    config = servers_config(tmp_path / "leasehold.yaml")
    run_cli(binary, "workspace", "add", "--state-dir", str(state_dir), "--policies", str(policies),
            "--tenant", TENANT, "--workspace", WORKSPACE, "--root", str(workspace_root))
    out = run_cli(binary, "session", "create", "--state-dir", str(state_dir), "--policies", str(policies),
                  "--tenant", TENANT, "--actor", ACTOR, "--workspace", WORKSPACE)
    claim = json.loads(out)["claim"]
    args = ["serve", "--stdio", "--state-dir", str(state_dir), "--policies", str(policies), "--config", str(config)]
    return {"binary": binary, "args": args, "claim": claim, "stderr": tmp_path / "stdio-stderr.log"}


@pytest.mark.anyio
async def test_progress_over_stdio(stdio_setup: dict[str, Any]) -> None:
    params = StdioServerParameters(command=str(stdio_setup["binary"]), args=stdio_setup["args"],
                                   env={"LEASEHOLD_CLAIM": stdio_setup["claim"], "LOG_LEVEL": "info"})
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    with open(stdio_setup["stderr"], "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                with anyio.fail_after(45):
                    result = await session.call_tool("vivi.beta_00", {"seconds": 0.3, "steps": 3}, progress_callback=on_progress)
                assert result.content[0].text == "done", result
                assert reports == [(i, 3, f"step {i}/3") for i in range(1, 4)], reports


def test_cancel_over_stdio(stdio_setup: dict[str, Any]) -> None:
    """Raw JSON lines, so the cancellation names the call's id exactly."""
    process = subprocess.Popen([str(stdio_setup["binary"]), *stdio_setup["args"]],
                               env={"LEASEHOLD_CLAIM": stdio_setup["claim"], "PATH": "/usr/bin:/bin"},
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(stdio_setup["stderr"], "a"),
                               text=True, bufsize=1)
    assert process.stdin and process.stdout

    def send(message: dict[str, Any]) -> None:
        process.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]

    def receive() -> dict[str, Any]:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line, "leasehold closed its stdout"
        return json.loads(line)

    try:
        send(INITIALIZE_BODY)
        assert receive()["id"] == 1
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "vivi.beta_00", "arguments": {"seconds": 40, "steps": 40},
                         "_meta": {"progressToken": 9, META_CLAIM_KEY: stdio_setup["claim"]}}})
        first = receive()
        assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == 9, first
        send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2, "reason": "user"}})
        send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "vivi.beta_13", "arguments": {}}})
        # The cancelled call gets no response (the SDK's rule for stdio); the next call answers
        # from the same process, which saw the cancellation.
        while True:
            message = receive()
            assert message.get("id") != 2, f"the cancelled call answered: {message}"
            if message.get("id") == 3:
                break
        text = message["result"]["content"][0]["text"]
        assert json.loads(text)["cancelled"] in (0, 1), text
        for request_id in range(4, 54):
            send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "vivi.beta_13", "arguments": {}}})
            while (message := receive()).get("id") != request_id:
                pass
            if json.loads(message["result"]["content"][0]["text"])["cancelled"] == 1:
                break
        assert json.loads(message["result"]["content"][0]["text"])["cancelled"] == 1, message
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""Slow readers of SSE streams, through the real binary (issue 21): a client that opens an event
stream and then stops reading (a tiny receive buffer, never `recv`) while the runner has events
for it. The runner must not buffer for it without bound, must not stall other tenants, and must
end or bound the stuck stream the way docs/operations.md says:

- a GET (SSE) stream of an MCP connection, sent a `notifications/tools/list_changed` by each of
  600 PATCHes that change the session's visible tools: the PATCHes are answered, the events wait
  (in the socket, the HTTP writer and the stream's backlog of at most 256, past which the runner
  closes the stream: HTTPBoundsTests, since a loopback socket takes up to 4 MiB first) and none
  is lost when the client reads at last;
- a call's progress stream (`_meta.progressToken`) of 10,000 reports: at most 64 wait for the
  client beyond what the socket and writer hold (older ones are dropped), and the call runs to its
  end and is audited although its answer cannot be delivered yet.

Meanwhile globex's calls are answered, and the runner's open descriptors and resident memory
(/proc/PID/fd, /proc/PID/status) stay bounded.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from attack_support import VERSION, Agent, World, raw_headers
from interop_support import OPERATOR_KEY, REPO_ROOT, copy_policies, poll

PYTHON = REPO_ROOT / ".venv-examples" / "bin" / "python"
KB_SERVER = REPO_ROOT / "examples" / "kb_server.py"
# Each PATCH below changes acme's visible tools, so each sends one list_changed to the GET stream.
TOGGLES = 600
STEPS = 10_000
# Growth tolerated over the whole test: far below what the events sent would take if held.
RSS_SLACK_KB = 48 * 1024
FD_SLACK = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run scripts/bootstrap.sh --python", pytrace=False)
    base = Path(tmp_path_factory.mktemp("slow-sse"))
    config = base / "leasehold.yaml"
    config.write_text(
        "servers:\n"
        f"  - {{id: vivi, transport: stdio, command: [{PYTHON}, {KB_SERVER}], "
        f"mounts: [{REPO_ROOT / 'examples'}, {REPO_ROOT / '.venv-examples'}], isolation: session, tier: upstream}}\n")
    world = World(base, policies=copy_policies(base / "policies"), config=config)
    yield world
    world.stop()


def runner_pid(world: World) -> int:
    assert world.server._process is not None
    return world.server._process.pid


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def stuck_reader(world: World, head: bytes) -> socket.socket:
    """A connection with a tiny receive buffer that sends `head` and then reads nothing."""
    address = urlsplit(world.server.base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.settimeout(30)
    sock.connect((address.hostname, address.port))
    sock.sendall(head)
    return sock


def request_head(world: World, method: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    address = urlsplit(world.server.base_url)
    lines = [f"{method} /mcp HTTP/1.1", f"Host: {address.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def drain(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the server sent, and whether it closed the connection (False: it kept it open
    with nothing more to send for the socket's 30 s timeout)."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            return bytes(data), False
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk


def sse_messages(raw: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of the complete lines of an SSE body (chunked framing lines are not
    `data:` lines; each event is written as one chunk, so its lines are whole)."""
    out = []
    for line in raw.split(b"\n")[:-1]:
        line = line.rstrip(b"\r")
        if line.startswith(b"data:") and line[5:].strip().startswith(b"{"):
            out.append(json.loads(line[5:].strip()))
    return out


def test_a_get_stream_whose_client_stops_reading_stalls_nobody(world: World) -> None:
    acme = Agent(world, "acme", "w1")
    globex = Agent(world, "globex", "g1")
    pid = runner_pid(world)
    try:
        headers = {**raw_headers(acme.claim, acme.sid, VERSION), "Accept": "text/event-stream"}
        sock = stuck_reader(world, request_head(world, "GET", headers))
        # The stream is open (its head is sent) before the events start.
        assert sock.recv(12).startswith(b"HTTP/1.1 200"), "the GET stream was not opened"
        fds, rss = descriptors(pid), rss_kb(pid)
        path = f"/sessions/{acme.session_id}"
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as admin:
            for i in range(TOGGLES):
                body = {"denied_tool_names": ["shell.*"] if i % 2 == 0 else None}
                response = admin.patch(world.server.api_url + path, json=body)
                assert response.status_code == 200, response.text
                if i % 100 == 0:
                    # Another tenant is served while acme's stream is stuck.
                    assert globex.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.globex.notes
        assert descriptors(pid) <= fds + FD_SLACK, f"descriptors grew from {fds} to {descriptors(pid)}"
        assert rss_kb(pid) <= rss + RSS_SLACK_KB, f"RSS grew from {rss} kB to {rss_kb(pid)} kB"
        # Within what the socket and the backlog hold nothing is lost: read at last, every change
        # arrives (the closing past the backlog is shown by HTTPBoundsTests, since the kernel holds
        # up to 4 MiB of a loopback socket's events first).
        data = bytearray()
        while len(sse_messages(bytes(data))) < TOGGLES:
            chunk = sock.recv(1 << 16)
            assert chunk, f"the stream ended after {len(sse_messages(bytes(data)))} of {TOGGLES} events"
            data += chunk
        sock.close()
        notified = [m for m in sse_messages(bytes(data)) if m.get("method") == "notifications/tools/list_changed"]
        assert len(notified) == TOGGLES, f"{len(notified)} of {TOGGLES} list_changed delivered"
        assert globex.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.globex.notes
    finally:
        acme.close()
        globex.close()


def test_a_progress_stream_whose_client_stops_reading_drops_reports_not_the_call(world: World) -> None:
    acme = Agent(world, "acme", "w1")
    globex = Agent(world, "globex", "g1")
    pid = runner_pid(world)
    try:
        fds, rss = descriptors(pid), rss_kb(pid)
        body = json.dumps({"jsonrpc": "2.0", "id": 901, "method": "tools/call",
                           "params": {"name": "vivi.beta_00", "arguments": {"seconds": 0, "steps": STEPS},
                                      "_meta": {"progressToken": "slow"}}}).encode()
        headers = {**raw_headers(acme.claim, acme.sid, VERSION), "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}
        sock = stuck_reader(world, request_head(world, "POST", headers, body))
        # The call runs to its end and is audited though its client reads nothing.
        def outcome() -> list[dict[str, Any]]:
            return [r for r in acme.audit() if r.get("request_id") == "901" and r["event"] == "call.outcome"]
        done = poll("the call's outcome while its client does not read", outcome, limit=45)
        assert done[-1]["outcome"] == "completed", done[-1]
        assert globex.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.globex.notes
        assert descriptors(pid) <= fds + FD_SLACK + 4, f"descriptors grew from {fds} to {descriptors(pid)}"
        assert rss_kb(pid) <= rss + RSS_SLACK_KB, f"RSS grew from {rss} kB to {rss_kb(pid)} kB"
        # Read at last: the reports that fitted the socket, the newest 64 of the rest, then the answer.
        sock.settimeout(30)
        data = bytearray()
        while b'"id":901' not in data:
            chunk = sock.recv(1 << 16)
            assert chunk, "the stream ended without the call's answer"
            data += chunk
        sock.close()
        messages = sse_messages(bytes(data))
        progress = [m for m in messages if m.get("method") == "notifications/progress"]
        assert messages[-1]["id"] == 901 and messages[-1]["result"]["content"][0]["text"] == "done", messages[-1]
        # In order, the last report kept (how many the socket takes first is the kernel's: 9,028 of
        # the 10,000 here, 1.55 MB; of the rest only the 64 newest were kept).
        steps = [m["params"]["progress"] for m in progress]
        assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == STEPS, steps[-5:]
    finally:
        acme.close()
        globex.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

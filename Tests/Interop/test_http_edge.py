"""The HTTP edge under hostile framing, through the real binary (issue 21), beyond what
test_attacks_http_bounds.py covers (half-sent and slow heads and bodies, idle connections,
per-address caps, head size limits, SSE stream caps, descriptor exhaustion):

- malformed chunked request bodies (bad or overflowing sizes, a chunk longer than its size, huge
  chunk extensions and trailers, both Content-Length and Transfer-Encoding) are answered 4xx or
  closed, never run, never answered 5xx, never left hanging past the body timeout; a well-formed
  chunked body is served; the runner serves on;
- pipelined requests on one connection (MCP calls and a health check written in one send) are
  answered in order, each with its own answer.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from interop_support import INITIALIZE_BODY, POLICIES_DIR, LeaseholdServer, jsonrpc_messages, raw_headers

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
BODY_TIMEOUT_S = 3
# Every read below waits at most this long: past the body timeout, a hang shows as a timeout.
SOCKET_TIMEOUT_S = BODY_TIMEOUT_S + 12


@pytest.fixture
def edge_server(start_server: Any, tmp_path: Path) -> LeaseholdServer:
    config = tmp_path / "leasehold.yaml"
    config.write_text(json.dumps({"http": {"body_timeout_seconds": BODY_TIMEOUT_S}}))
    return start_server(POLICIES_DIR, config)


class McpSession:
    """An initialized MCP connection (over httpx) whose claim and id raw requests reuse."""

    def __init__(self, server: LeaseholdServer):
        self.server = server
        _, self.claim = server.create_session()
        response = httpx.post(server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(self.claim), timeout=30)
        assert response.status_code == 200, response.text
        self.sid = response.headers["mcp-session-id"]
        httpx.post(server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                   headers=raw_headers(self.claim, self.sid, VERSION), timeout=30)

    def head(self, path: str = "/mcp", extra: dict[str, str] | None = None) -> bytes:
        """A POST request head (no Content-Length: the caller frames the body)."""
        address = urlsplit(self.server.base_url)
        headers = {"Host": address.netloc, **raw_headers(self.claim, self.sid, VERSION), **(extra or {})}
        return (f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()

    def connect(self) -> socket.socket:
        address = urlsplit(self.server.base_url)
        sock = socket.create_connection((address.hostname, address.port), timeout=SOCKET_TIMEOUT_S)
        return sock


def call_body(request_id: int, name: str, arguments: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}}).encode()


class _Shared(io.BufferedReader):
    """One buffered reader for every response on a connection (so bytes of the next pipelined
    response are not lost between responses); a response's close() leaves it open."""

    def close(self) -> None:
        pass


class _File:
    """What http.client.HTTPResponse reads from: the connection's shared reader."""

    def __init__(self, reader: io.BufferedReader):
        self.reader = reader

    def makefile(self, mode: str) -> io.BufferedReader:
        return self.reader


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    reader = _Shared(socket.SocketIO(sock, "rb"))
    out = []
    for _ in range(count):
        response = http.client.HTTPResponse(_File(reader))  # type: ignore[arg-type]
        response.begin()
        out.append((response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()))
    return out


def first_bytes(sock: socket.socket) -> bytes:
    """What the server sends before it closes, or up to the first response's end (bounded)."""
    data = b""
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server neither answered nor closed within {SOCKET_TIMEOUT_S}s: {data[:200]!r}")
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
        if b"\r\n\r\n" in data and (b"content-length: 0" in data.lower() or data.endswith(b"}")):
            return data
    return data


MALFORMED_CHUNKED = {
    "non-hex size": b"zz\r\n{}\r\n0\r\n\r\n",
    "chunk longer than its size": b"3\r\n" + call_body(91, "repo.write_file", {"path": "smuggled.txt", "content": "x"}) + b"\r\n0\r\n\r\n",
    "size overflowing 64 bits": b"fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    "negative size": b"-5\r\n{}\r\n0\r\n\r\n",
    "huge chunk extension": b"2;ext=" + b"x" * 200_000 + b"\r\n{}\r\n0\r\n\r\n",
    "huge trailer": b"2\r\n{}\r\n0\r\nX-Trailer: " + b"y" * 200_000 + b"\r\n\r\n",
    "size line never ends": b"2" + b"0" * 100_000,
    "body ends mid-chunk": b"400\r\n" + b"{" * 100,
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CHUNKED))
def test_malformed_chunked_bodies_are_refused_and_nothing_runs(edge_server: LeaseholdServer, workspace_root: Path,
                                                              case: str) -> None:
    mcp = McpSession(edge_server)
    sock = mcp.connect()
    try:
        try:
            sock.sendall(mcp.head(extra={"Transfer-Encoding": "chunked"}) + MALFORMED_CHUNKED[case])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while it was still being sent
        answer = first_bytes(sock)
    finally:
        sock.close()
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, f"{case}: {answer[:300]!r}"
    assert not (workspace_root / "smuggled.txt").exists()
    # The runner serves on: a well-formed chunked body on a new connection is a call that runs.
    sock = mcp.connect()
    try:
        body = call_body(7, "repo.read_file", {"path": "README.md"})
        sock.sendall(mcp.head(extra={"Transfer-Encoding": "chunked"})
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        (status, headers, payload), = read_responses(sock, 1)
    finally:
        sock.close()
    assert status == 200, payload[:300]
    message = jsonrpc_messages(httpx.Response(200, headers=headers, content=payload))[0]
    assert message["id"] == 7 and message["result"]["structuredContent"]["content"] == "interop fixture\n", message


def test_both_content_length_and_chunked_is_not_a_smuggled_request(edge_server: LeaseholdServer,
                                                                  workspace_root: Path) -> None:
    """CL.TE: a Content-Length that covers only the chunked terminator, followed by a second
    request. Whatever framing the server picks, the hidden write must not run as part of the
    first request; if the server reads on, it is a request of its own, authenticated as any other."""
    mcp = McpSession(edge_server)
    hidden = call_body(92, "repo.write_file", {"path": "smuggled.txt", "content": "x"})
    sock = mcp.connect()
    try:
        sock.sendall(mcp.head(extra={"Transfer-Encoding": "chunked", "Content-Length": "5"})
                     + b"0\r\n\r\n" + b"POST /mcp HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(hidden) + hidden)
        answer = first_bytes(sock)
    finally:
        sock.close()
    assert answer, "no answer"
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert not (workspace_root / "smuggled.txt").exists()


def test_pipelined_requests_are_answered_in_order(edge_server: LeaseholdServer) -> None:
    mcp = McpSession(edge_server)
    address = urlsplit(edge_server.base_url)
    requests = []
    for request_id, name, arguments in ((21, "repo.read_file", {"path": "README.md"}),
                                        (22, "repo.list_dir", {"path": "."}),
                                        (23, "repo.stat", {"path": "README.md"})):
        body = call_body(request_id, name, arguments)
        requests.append(mcp.head(extra={"Content-Length": str(len(body))}) + body)
    health = f"GET /healthz HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode()
    sock = mcp.connect()
    try:
        sock.sendall(requests[0] + health + requests[1] + requests[2])
        answers = read_responses(sock, 4)
    finally:
        sock.close()
    assert [status for status, _, _ in answers] == [200, 200, 200, 200], answers
    ids = []
    for index in (0, 2, 3):
        _, headers, payload = answers[index]
        message = jsonrpc_messages(httpx.Response(200, headers=headers, content=payload))[0]
        assert message["result"]["isError"] is False, message
        ids.append(message["id"])
    assert ids == [21, 22, 23]
    # The health check's answer is its own, between the first and second call's.
    assert b"jsonrpc" not in answers[1][2], answers[1]


# A member given twice is kept first by the SDK's JSONDecoder and last by JSONSerialization (the
# edge's parse, the in-flight id guard and the SDK transport's routing): found by the hot_edge fuzz
# target. The SDK answered id 1 on a stream the transport had opened for id 2, so the request's
# stream never ended (and held graceful shutdown).
TWICE = {
    "id given twice": b'{"jsonrpc":"2.0","id":31,"method":"ping","id":32}',
    "method given twice": b'{"jsonrpc":"2.0","id":33,"method":"tools/call","params":{"name":"repo.read_file",'
                          b'"arguments":{"path":"README.md"}},"method":"ping"}',
}


@pytest.mark.parametrize("case", sorted(TWICE))
def test_a_member_given_twice_is_refused_not_left_hanging(edge_server: LeaseholdServer, case: str) -> None:
    mcp = McpSession(edge_server)
    headers = {**raw_headers(mcp.claim, mcp.sid, VERSION), "Content-Type": "application/json"}
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as http:
        try:
            response = http.post(edge_server.mcp_url, content=TWICE[case], headers=headers)
        except httpx.ReadTimeout:
            pytest.fail(f"{case}: no answer within {SOCKET_TIMEOUT_S}s")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == -32600, response.text
        # The connection serves on.
        ok = http.post(edge_server.mcp_url, content=call_body(34, "repo.read_file", {"path": "README.md"}), headers=headers)
        assert jsonrpc_messages(ok)[0]["result"]["isError"] is False, ok.text

"""OpenTelemetry traces of a real runner (`serve --otlp-endpoint`), received by an OTLP/HTTP
receiver here and decoded with the official `opentelemetry-proto` definitions: span names and
attributes of the MCP semantic conventions, parenting (the client's trace context from
`params._meta` and from HTTP headers; the stages as children), and no claim or file content."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from interop_support import (
    POLICIES_DIR,
    TENANT,
    LeaseholdServer,
    http_mcp,
    raw_headers,
    raw_post,
)

pytestmark = pytest.mark.anyio

SECRET_CONTENT = "traced-file-content-that-must-not-appear-9b2e"
META_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
META_PARENT = "00f067aa0ba902b7"
HEADER_TRACE = "0af7651916cd43dd8448eb211c80319c"
HEADER_PARENT = "b7ad6b7169203331"


class OTLPReceiver:
    """POST /v1/traces (OTLP/HTTP, protobuf): every span received, with its resource attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []
        self.bodies: list[bytes] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                assert self.path == "/v1/traces", self.path
                assert self.headers.get("Content-Type") == "application/x-protobuf", self.headers
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver._changed:
                    receiver.bodies.append(body)
                    for resource_spans in request.resource_spans:
                        resource = attributes(resource_spans.resource.attributes)
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans.extend((resource, span) for span in scope_spans.spans)
                    receiver._changed.notify_all()
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, *names: str, timeout: float = 20.0) -> None:
        """Waits (on the handler's notification) until a span of each name has arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not set(names) <= {span.name for _, span in self.spans}:
                left = deadline - time.monotonic()
                assert left > 0, f"spans {set(names) - {s.name for _, s in self.spans}} never arrived"
                self._changed.wait(left)

    def wait_until(self, predicate: Any, what: str, timeout: float = 20.0) -> None:
        """Waits (on the handler's notification) until `predicate(spans)` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate([span for _, span in self.spans]):
                left = deadline - time.monotonic()
                assert left > 0, f"{what} never arrived"
                self._changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        which = item.value.WhichOneof("value")
        out[item.key] = getattr(item.value, which) if which else None
    return out


def call(request_id: str, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def test_spans_follow_the_mcp_conventions_and_the_callers_trace(
    binary: Path, state_dir: Path, workspace_root: Path
) -> None:
    (workspace_root / "secret.txt").write_text(SECRET_CONTENT)
    receiver = OTLPReceiver()
    server = LeaseholdServer(
        binary, state_dir, POLICIES_DIR, extra_args=["--otlp-endpoint", receiver.endpoint, "--log-format", "json"]
    ).start()
    try:
        server.register_workspace(workspace_root)
        session, claim = server.create_session(denied_tool_names=["shell.*"])
        async with http_mcp(server.mcp_url, claim) as conn:
            headers = raw_headers(claim, conn.mcp_session_id, conn.protocol_version)
            sid = conn.mcp_session_id
            version = conn.protocol_version
            # Trace context in params._meta (the MCP conventions' carrier).
            read = await raw_post(
                server.mcp_url,
                call("tr-1", "repo.read_file", {"path": "secret.txt"},
                     {"traceparent": f"00-{META_TRACE}-{META_PARENT}-01"}),
                headers,
            )
            assert SECRET_CONTENT in read.text
            # Trace context in the HTTP headers.
            await raw_post(
                server.mcp_url, call("tr-2", "shell.run", {"command": "id"}),
                {**headers, "traceparent": f"00-{HEADER_TRACE}-{HEADER_PARENT}-01"},
            )
            await raw_post(server.mcp_url, {"jsonrpc": "2.0", "id": "tr-3", "method": "tools/list"}, headers)
            await raw_post(server.mcp_url, call("tr-4", "made.up_tool_7", {}), headers)
        receiver.wait_for("tools/call repo.read_file", "tools/call shell.run", "tools/list", "tools/call _unknown",
                          "execute_tool repo.read_file", "leasehold.worker.spawn", "leasehold.worker.acquire", "initialize",
                          "notifications/initialized")
        audit = server.admin("GET", f"/audit?session_id={session['id']}", expect=200).json()["records"]
    finally:
        server.stop()
        receiver.close()

    spans = [span for _, span in receiver.spans]
    by_id = {span.span_id: span for span in spans}
    resource = receiver.spans[0][0]
    assert resource.get("service.name") == "leasehold", resource

    # The server span of the read: named and attributed per the conventions, in the caller's trace.
    server_span = next(s for s in spans if s.name == "tools/call repo.read_file")
    assert server_span.kind == Span.SPAN_KIND_SERVER
    assert server_span.trace_id.hex() == META_TRACE and server_span.parent_span_id.hex() == META_PARENT
    attrs = attributes(server_span.attributes)
    assert attrs["mcp.method.name"] == "tools/call"
    assert attrs["gen_ai.tool.name"] == "repo.read_file"
    assert attrs["jsonrpc.request.id"] == "tr-1"
    assert attrs["mcp.protocol.version"] == version
    assert attrs["mcp.session.id"] == sid
    assert attrs["network.transport"] == "tcp"
    assert attrs["leasehold.tenant.id"] == TENANT and attrs["leasehold.session.id"] == session["id"]
    assert attrs["leasehold.tier"] == "read" and attrs["leasehold.isolation"]
    assert attrs["leasehold.worker.id"].startswith("wkr_")
    assert "error.type" not in attrs and server_span.status.code != Status.STATUS_CODE_ERROR
    # The trace joins the audit trail on the claim fingerprint and the request id.
    intent = next(r["event"] for r in audit if r["event"].get("request_id") == "tr-1")
    assert attrs["leasehold.claim.fingerprint"] == intent["claim_fingerprint"]
    assert attrs["leasehold.lease.id"] == intent["lease"]

    # Its stages are its children; the worker's spawn is a child of the tool's span.
    children = {s.name: s for s in spans if s.parent_span_id == server_span.span_id}
    for stage in ("leasehold.claim.verify", "leasehold.scope", "leasehold.audit.commit", "execute_tool repo.read_file"):
        assert stage in children, (stage, sorted(children))
        assert children[stage].trace_id == server_span.trace_id
    tool_span = children["execute_tool repo.read_file"]
    spawn = next(s for s in spans if s.name == "leasehold.worker.spawn")
    assert spawn.parent_span_id == tool_span.span_id, "the spawn is not a child of the tool's span"
    assert by_id[spawn.parent_span_id].name == "execute_tool repo.read_file"
    # Getting the worker is the first part of the tool's span.
    acquire = next(s for s in spans if s.name == "leasehold.worker.acquire" and s.parent_span_id == tool_span.span_id)
    assert tool_span.start_time_unix_nano <= acquire.start_time_unix_nano <= acquire.end_time_unix_nano <= tool_span.end_time_unix_nano

    # The refused call: in the trace its HTTP headers named, with the refusal code as error.type.
    refused = next(s for s in spans if s.name == "tools/call shell.run")
    assert refused.trace_id.hex() == HEADER_TRACE and refused.parent_span_id.hex() == HEADER_PARENT
    assert attributes(refused.attributes)["error.type"] == "tool_not_in_scope"
    assert refused.status.code == Status.STATUS_CODE_ERROR

    # A made-up name does not become a span name (names stay bounded); the attribute says what was asked.
    unknown = next(s for s in spans if s.name == "tools/call _unknown")
    assert attributes(unknown.attributes)["gen_ai.tool.name"] == "made.up_tool_7"
    assert not any("made.up" in s.name for s in spans)

    # The request's log line names its trace.
    logged = server.wait_for_log('"request_id":"tr-1"', timeout=1)
    assert logged is not None and f'"trace_id":"{META_TRACE}"' in logged, logged

    # Requests the SDK answers have server spans too, named by their method.
    initialize = next(s for s in spans if s.name == "initialize")
    assert initialize.kind == Span.SPAN_KIND_SERVER
    assert attributes(initialize.attributes)["mcp.method.name"] == "initialize"
    assert any(s.name == "notifications/initialized" for s in spans)

    listed = next(s for s in spans if s.name == "tools/list")
    assert attributes(listed.attributes)["jsonrpc.request.id"] == "tr-3"

    # Nothing of the claim or of the file read, anywhere in what was exported.
    exported = b"".join(receiver.bodies)
    assert claim.encode() not in exported
    assert claim.split(".")[1].encode() not in exported
    assert SECRET_CONTENT.encode() not in exported


async def test_no_span_is_sent_without_an_endpoint(server) -> None:
    """Tracing is off unless configured: the default runner starts no exporter (nothing to receive
    at all); its calls still work (covered everywhere else), and it logs no tracing line."""
    assert not any("tracing:" in line for line in server.log)


async def test_stdio_requests_are_traced_with_the_callers_meta_context(
    binary: Path, state_dir: Path, workspace_root: Path, tmp_path: Path
) -> None:
    """Over stdio the SDK's handlers answer: the same server span (transport `pipe`), its parent from
    `params._meta.traceparent`, claim verification and the stages as children."""
    import json

    from interop_support import WORKSPACE, ACTOR, assert_read_fixture, run_cli
    from mcp_compat import ClientSession, StdioServerParameters, stdio_client

    run_cli(binary, "workspace", "add", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR),
            "--tenant", TENANT, "--workspace", WORKSPACE, "--root", str(workspace_root))
    created = json.loads(run_cli(binary, "session", "create", "--state-dir", str(state_dir), "--policies",
                                 str(POLICIES_DIR), "--tenant", TENANT, "--actor", ACTOR, "--workspace", WORKSPACE))
    claim = created["claim"]
    receiver = OTLPReceiver()
    try:
        params = StdioServerParameters(
            command=str(binary),
            args=["serve", "--stdio", "--state-dir", str(state_dir), "--policies", str(POLICIES_DIR),
                  "--otlp-endpoint", receiver.endpoint],
            env={"LEASEHOLD_CLAIM": claim},
        )
        with open(tmp_path / "stdio-stderr.log", "a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    assert_read_fixture(await session.call_tool(
                        "repo.read_file", {"path": "README.md"},
                        meta={"traceparent": f"00-{META_TRACE}-{META_PARENT}-01"}))
                    await session.send_ping()
                    receiver.wait_for("tools/call repo.read_file", "execute_tool repo.read_file", "initialize",
                                      "notifications/initialized", "ping")
    finally:
        receiver.close()

    spans = [span for _, span in receiver.spans]
    server_span = next(s for s in spans if s.name == "tools/call repo.read_file")
    assert server_span.kind == Span.SPAN_KIND_SERVER
    assert server_span.trace_id.hex() == META_TRACE and server_span.parent_span_id.hex() == META_PARENT
    attrs = attributes(server_span.attributes)
    assert attrs["network.transport"] == "pipe" and attrs["mcp.method.name"] == "tools/call"
    assert attrs["leasehold.tenant.id"] == TENANT and attrs["leasehold.tier"] == "read"
    assert "mcp.session.id" not in attrs
    children = {s.name for s in spans if s.parent_span_id == server_span.span_id}
    assert {"leasehold.claim.verify", "leasehold.scope", "leasehold.audit.commit",
            "execute_tool repo.read_file"} <= children, children
    # The requests the SDK answers over stdio have server spans too.
    for name in ("initialize", "notifications/initialized", "ping"):
        span = next(s for s in spans if s.name == name)
        assert span.kind == Span.SPAN_KIND_SERVER and attributes(span.attributes)["network.transport"] == "pipe"
    assert claim.encode() not in b"".join(receiver.bodies)


async def test_sessionless_requests_are_traced(binary: Path, state_dir: Path, workspace_root: Path) -> None:
    """MCP 2026-07-28 requests (no protocol session) get the same server spans, with the revision
    named and no `mcp.session.id`; a refused one names its code."""
    receiver = OTLPReceiver()
    server = LeaseholdServer(binary, state_dir, POLICIES_DIR, extra_args=["--otlp-endpoint", receiver.endpoint]).start()
    modern = "2026-07-28"
    envelope = {"io.modelcontextprotocol/protocolVersion": modern, "io.modelcontextprotocol/clientCapabilities": {}}

    def headers(claim: str, method: str, name: str | None = None) -> dict[str, str]:
        out = {**raw_headers(claim, None, modern), "Mcp-Method": method}
        if name:
            out["Mcp-Name"] = name
        return out

    try:
        server.register_workspace(workspace_root)
        session, claim = server.create_session()
        discover = {"jsonrpc": "2.0", "id": "sl-1", "method": "server/discover", "params": {"_meta": envelope}}
        assert (await raw_post(server.mcp_url, discover, headers(claim, "server/discover"))).status_code == 200
        read = {"jsonrpc": "2.0", "id": "sl-2", "method": "tools/call", "params": {
            "name": "repo.read_file", "arguments": {"path": "README.md"},
            "_meta": {**envelope, "traceparent": f"00-{META_TRACE}-{META_PARENT}-01"}}}
        assert (await raw_post(server.mcp_url, read, headers(claim, "tools/call", "repo.read_file"))).status_code == 200
        refused = {**discover, "id": "sl-3"}
        response = await raw_post(server.mcp_url, refused, headers("not-a-claim", "server/discover"))
        assert response.status_code == 401
        receiver.wait_for("server/discover", "tools/call repo.read_file", "execute_tool repo.read_file")
        receiver.wait_until(
            lambda spans: any(attributes(s.attributes).get("jsonrpc.request.id") == "sl-3" for s in spans),
            "the refused request's span")
    finally:
        server.stop()
        receiver.close()
    spans = [span for _, span in receiver.spans]
    call_span = next(s for s in spans if s.name == "tools/call repo.read_file")
    assert call_span.trace_id.hex() == META_TRACE and call_span.parent_span_id.hex() == META_PARENT
    attrs = attributes(call_span.attributes)
    assert attrs["mcp.protocol.version"] == modern and "mcp.session.id" not in attrs, attrs
    assert attrs["leasehold.session.id"] == session["id"] and attrs["jsonrpc.request.id"] == "sl-2"
    children = {s.name for s in spans if s.parent_span_id == call_span.span_id}
    assert {"leasehold.claim.verify", "execute_tool repo.read_file"} <= children, children
    discovered = [attributes(s.attributes) for s in spans if s.name == "server/discover"]
    assert any(a["jsonrpc.request.id"] == "sl-1" and "error.type" not in a for a in discovered), discovered
    assert any(a["jsonrpc.request.id"] == "sl-3" and a.get("error.type") == "claim_invalid" for a in discovered), discovered

"""Helpers shared by the interoperability tests.

Everything here drives the real `leasehold` binary from the outside: a process started with
`leasehold serve`, its admin API over HTTP, and the official Python MCP client. Nothing imports or
reuses the runner's own code; the scope rules are recomputed independently in Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import yaml
from mcp_compat import (
    HANDSHAKE_PROTOCOL_VERSION,
    ClientSession,
    HttpRefusal,
    HttpTransport,
    MCPError,
    find_http_refusal,
    is_tool_list_changed,
    open_streamable_http,
    paginated_params,
    types,
    wire,
)

# The one harness that starts `leasehold serve` (shared with the benchmarks) lives in Tests/Harness.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Harness"))
import leasehold_harness as harness  # noqa: E402  (needs the path above)
from leasehold_harness import (  # noqa: E402,F401  (re-exported: the tests import them from here)
    LISTENING,
    OPERATOR_KEY,
    POLICIES_DIR,
    READY_TIMEOUT_S,
    REPO_ROOT,
    SHUTDOWN_GRACE_S,
    ShutdownError,
    canary_text,
    workspace_base_of,
)

TENANT = "acme"
ACTOR = "alice"
WORKSPACE = "w1"
META_CLAIM_KEY = "dev.leasehold/claim"
# MCP "Invalid params": what a hidden or unknown tool on tools/call must be refused with.
INVALID_PARAMS = -32602

BUILTIN_SYSTEM_TOOLS = ("system.search_tools", "system.execute_tool")
BUILTIN_WORKSPACE_TOOLS = (
    "repo.read_file",
    "repo.list_dir",
    "repo.search",
    "repo.stat",
    "repo.write_file",
    "repo.apply_patch",
    "shell.run",
)


def leasehold_binary() -> Path:
    """`$LEASEHOLD_BIN`, else `<repo>/.build/debug/leasehold`; fails the test clearly when missing."""
    import pytest

    path = harness.default_binary()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"leasehold binary not found or not executable at {path}; run `swift build` in {REPO_ROOT} "
            "or set LEASEHOLD_BIN",
            pytrace=False,
        )
    return path


# --------------------------------------------------------------------------------------------
# Independent scope model (deliberately not a port of the Swift matcher: regex based)
# --------------------------------------------------------------------------------------------


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """`*` = any run of characters (dots included); everything else literal; case-sensitive."""
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)), re.S)


class Patterns:
    def __init__(self, patterns: Iterable[str]):
        self.patterns = list(patterns)
        self._compiled = [glob_to_regex(p) for p in self.patterns]

    def matches(self, name: str) -> bool:
        return any(rx.fullmatch(name) for rx in self._compiled)

    def matching(self, names: Iterable[str]) -> set[str]:
        return {n for n in names if self.matches(n)}


def glob_match(pattern: str, name: str) -> bool:
    return glob_to_regex(pattern).fullmatch(name) is not None


@dataclass
class ScopeModel:
    """What a session should see, per DESIGN.md §2/§3.4, computed from first principles."""

    catalog: dict[str, str]  # tool name -> server (system tools excluded)
    tier_patterns: list[str]  # every pattern of policies/tools.yaml (a tool matching none is denied)
    bundles: dict[str, list[str]] = field(default_factory=dict)

    def visible(
        self,
        *,
        server_id: str | None = None,
        bundle_id: str | None = None,
        allowed: list[str] | None = None,
        denied: list[str] | None = None,
        claim_allowed: list[str] | None = None,
        endpoint_server: str | None = None,
    ) -> set[str]:
        tiers = Patterns(self.tier_patterns)
        bundle = Patterns(self.bundles[bundle_id]) if bundle_id else None
        allow = Patterns(allowed) if allowed is not None else None
        deny = Patterns(denied or [])
        claim = Patterns(claim_allowed) if claim_allowed is not None else None
        result = set(BUILTIN_SYSTEM_TOOLS)
        for name, server in self.catalog.items():
            if endpoint_server is not None and server != endpoint_server:
                continue
            if server_id is not None and server != server_id:
                continue
            if bundle is not None and not bundle.matches(name):
                continue
            if claim is not None and not claim.matches(name):
                continue
            if deny.matches(name):
                continue
            if allow is not None and not allow.matches(name):
                continue
            if not tiers.matches(name):
                continue
            result.add(name)
        return result


def policy_patterns(policies_dir: Path) -> list[str]:
    data = yaml.safe_load((policies_dir / "tools.yaml").read_text())
    return [entry["pattern"] for entry in data["tools"]]


def copy_policies(dest: Path, extra_rules: Iterable[tuple[str, str]] = ()) -> Path:
    """Copies the repo's policies/ to `dest` and appends `(pattern, tier)` rules to tools.yaml."""
    shutil.copytree(POLICIES_DIR, dest)
    rules = list(extra_rules)
    if rules:
        tools = dest / "tools.yaml"
        text = tools.read_text()
        if not text.endswith("\n"):
            text += "\n"
        text += "".join(f'  - {{pattern: "{pattern}", tier: {tier}}}\n' for pattern, tier in rules)
        tools.write_text(text)
    return dest


def write_catalog_config(path: Path, servers: dict[str, list[tuple[str, str]]], bundles: dict[str, list[str]]) -> Path:
    """Writes a leasehold.yaml with `catalog: {servers, bundles}` (JSON is valid YAML)."""
    config = {
        "catalog": {
            "servers": [
                {"id": server, "tools": [{"name": n, "description": d} for n, d in tools]}
                for server, tools in servers.items()
            ],
            "bundles": bundles,
        }
    }
    path.write_text(json.dumps(config, indent=1))
    return path


# --------------------------------------------------------------------------------------------
# The server process and its admin API
# --------------------------------------------------------------------------------------------


class LeaseholdServer(harness.LeaseholdServer):
    """The harness's server (Tests/Harness/leasehold_harness.py) with a start-up failure reported
    as a test failure (the harness itself never imports pytest: the benchmarks share it)."""

    def start(self) -> LeaseholdServer:
        import pytest

        try:
            super().start()
        except harness.StartError as error:
            pytest.fail(str(error), pytrace=False)
        return self


# --------------------------------------------------------------------------------------------
# The official MCP client
# --------------------------------------------------------------------------------------------


@dataclass
class Connection:
    session: ClientSession
    transport: HttpTransport
    init: types.InitializeResult
    get_stream_open: anyio.Event

    async def wait_for_notification_stream(self, timeout: float = 10.0) -> None:
        """Waits until the server accepted the client's GET SSE stream (no sleep)."""
        with anyio.fail_after(timeout):
            await self.get_stream_open.wait()

    @property
    def protocol_version(self) -> str:
        """The version `initialize` negotiated (what `MCP-Protocol-Version` must carry)."""
        return str(wire(self.init, "protocolVersion"))

    @property
    def mcp_session_id(self) -> str:
        sid = self.transport.get_session_id()
        assert sid, "the server did not assign an Mcp-Session-Id"
        return sid

    async def tool_names(self, **kwargs: Any) -> list[str]:
        return [t.name for t in await list_all_tools(self.session, **kwargs)]


async def list_all_tools(session: ClientSession, meta: dict[str, Any] | None = None) -> list[types.Tool]:
    """tools/list following nextCursor, optionally carrying params._meta."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(1000):
        params = None
        if meta is not None or cursor is not None:
            params = paginated_params(cursor, meta)
        result = await session.list_tools(params=params)
        tools.extend(result.tools)
        cursor = wire(result, "nextCursor")
        if not cursor:
            return tools
    raise AssertionError("tools/list pagination did not terminate")


@asynccontextmanager
async def http_mcp(url: str, claim: str | None, message_handler: Any = None) -> AsyncIterator[Connection]:
    """An initialized ClientSession over Streamable HTTP with `Authorization: Bearer <claim>` on every request.

    `Connection.get_stream_open` is set once the server answered the client's standalone GET (SSE)
    stream, i.e. once server-initiated notifications can reach this client.
    """
    headers = {"Authorization": f"Bearer {claim}"} if claim is not None else {}
    get_stream_open = anyio.Event()

    async def on_response(response: Any) -> None:  # an httpx (mcp 1.x) or httpx2 (mcp 2.x) Response
        if response.request.method == "GET" and response.status_code == 200:
            get_stream_open.set()

    async with open_streamable_http(url, headers, on_response) as transport:
        async with ClientSession(transport.read, transport.write, message_handler=message_handler) as session:
            init = await session.initialize()
            yield Connection(session, transport, init, get_stream_open)


async def expect_client_http_refusal(url: str, claim: str | None, status: int = 401) -> HttpRefusal:
    """Opens a Python MCP client with `claim` and asserts the client fails on an HTTP `status` answer."""
    try:
        with anyio.fail_after(20):
            async with http_mcp(url, claim) as conn:
                await conn.session.list_tools()
    except BaseException as exc:  # noqa: BLE001 - exception groups from the client's task group
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        found = find_http_refusal(exc)
        assert found is not None, f"expected an HTTP {status} from the server, got {exc!r}"
        assert found.status_code == status, f"expected HTTP {status}, got {found.status_code}: {found.error!r}"
        return found
    raise AssertionError(f"the client connected and listed tools although HTTP {status} was expected")


class ListChangedWatcher:
    """A ClientSession message_handler that counts notifications/tools/list_changed."""

    def __init__(self) -> None:
        self.count = 0
        self.other: list[Any] = []
        self._changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if is_tool_list_changed(message):
            self.count += 1
            self._changed.set()
            self._changed = anyio.Event()
        elif isinstance(message, Exception):
            self.other.append(message)

    async def wait_count(self, n: int, timeout: float = 10.0) -> None:
        """Waits (event-driven, bounded) until at least `n` notifications have arrived."""
        with anyio.fail_after(timeout):
            while self.count < n:
                await self._changed.wait()

    async def expect_one_more(self, timeout: float = 10.0) -> None:
        await self.wait_count(self.count + 1, timeout)


# --------------------------------------------------------------------------------------------
# Raw HTTP, for what the Python client cannot express (requests without a header, etc.)
# --------------------------------------------------------------------------------------------


def raw_headers(claim: str | None, mcp_session_id: str | None = None, protocol_version: str | None = None) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if claim is not None:
        headers["Authorization"] = f"Bearer {claim}"
    if mcp_session_id is not None:
        headers["Mcp-Session-Id"] = mcp_session_id
    if protocol_version is not None:
        headers["MCP-Protocol-Version"] = protocol_version
    return headers


INITIALIZE_BODY = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": HANDSHAKE_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "leasehold-interop-raw", "version": "0"},
    },
}


async def raw_post(url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as client:
        return await client.post(url, json=body, headers=headers)


def jsonrpc_messages(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a JSON or SSE (`event: message`) response body."""
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        return [response.json()]
    messages = []
    for event in response.text.split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.splitlines() if line.startswith("data:"))
        if data.strip():
            messages.append(json.loads(data))
    return messages


# The version the raw attack suites initialize with (test_attacks_forged_claims.py, test_attacks_transport.py).
RAW_PROTOCOL_VERSION = "2025-06-18"


def raw_initialize(url: str, claim: str | None, extra_headers: dict[str, str] | None = None,
                   version: str = RAW_PROTOCOL_VERSION) -> tuple[httpx.Response, str | None]:
    """A raw `initialize` POST presenting `claim`; the response and the Mcp-Session-Id it assigned."""
    body = {**INITIALIZE_BODY, "params": {**INITIALIZE_BODY["params"], "protocolVersion": version}}
    response = httpx.post(url, json=body, headers={**raw_headers(claim), **(extra_headers or {})}, timeout=20)
    return response, response.headers.get("mcp-session-id")


def raw_call(url: str, method: str, claim: str | None, mcp_session_id: str, params: Any = None,
             request_id: int = 2) -> httpx.Response:
    """One raw JSON-RPC request on an initialized MCP connection."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    return httpx.post(url, json=body, headers=raw_headers(claim, mcp_session_id), timeout=20)


def first_message(response: httpx.Response) -> dict[str, Any]:
    """The first JSON-RPC message of a JSON or SSE body; {} when there is none (e.g. an HTML 403)."""
    try:
        messages = jsonrpc_messages(response)
    except ValueError:
        return {}
    return messages[0] if messages and isinstance(messages[0], dict) else {}


def error_message(response: httpx.Response) -> str:
    """The JSON-RPC error message of a response, "" when it has none."""
    error = first_message(response).get("error")
    return error.get("message", "") if isinstance(error, dict) else ""


def assert_refused(response: httpx.Response, code: str) -> None:
    """HTTP 401 + WWW-Authenticate + a JSON-RPC error whose message starts with `code:`."""
    assert response.status_code == 401, f"expected 401 {code}, got {response.status_code}: {response.text}"
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), f"missing Bearer WWW-Authenticate challenge: {challenge!r}"
    assert f'error_code="{code}"' in challenge, f"WWW-Authenticate does not name {code}: {challenge!r}"
    body = response.json()
    assert "error" in body and "result" not in body, body
    assert body["error"]["message"].startswith(f"{code}:"), body


# The fixture's README.md (see conftest.workspace_root): a real read returns exactly this.
FIXTURE_TEXT = "interop fixture\n"

# Codes the gateway answers with when it refuses a call before any worker runs it.
GATEWAY_REFUSAL_CODES = frozenset({
    "claim_missing", "claim_invalid", "claim_expired", "claim_not_yet_valid", "claim_lifetime_exceeded",
    "claim_replayed", "session_not_found", "session_revoked", "lease_expired", "lease_replaced",
    "boundary_mismatch", "tool_not_in_scope", "workspace_not_found", "workspace_read_only",
    "approval_required", "approval_invalid", "approval_denied", "tier_unavailable", "audit_unavailable",
    "execution_unavailable",
})


def tool_error(result: types.CallToolResult) -> dict[str, Any] | None:
    """The `{"code", "message", ...}` of an isError result, None for a successful one."""
    if wire(result, "isError") is not True:
        return None
    structured = wire(result, "structuredContent")
    assert isinstance(structured, dict), f"isError result without structuredContent: {result}"
    error = structured.get("error")
    assert isinstance(error, dict) and isinstance(error.get("code"), str), f"malformed error result: {result}"
    return error


def tool_error_code(result: types.CallToolResult) -> str | None:
    error = tool_error(result)
    return None if error is None else error["code"]


def assert_ok(result: types.CallToolResult, tool: str) -> dict[str, Any]:
    """A successful tool result; its structured content."""
    assert wire(result, "isError") is not True, f"{tool}: expected a result, got {result}"
    structured = wire(result, "structuredContent")
    assert isinstance(structured, dict), f"{tool}: no structuredContent: {result}"
    return structured


def assert_tool_error(result: types.CallToolResult, code: str, tool: str = "") -> dict[str, Any]:
    error = tool_error(result)
    assert error is not None, f"{tool}: expected an isError {code} result, got {result}"
    assert error["code"] == code, f"{tool}: expected {code}, got {error}"
    return error


def assert_read_fixture(result: types.CallToolResult, tool: str = "repo.read_file") -> None:
    """`repo.read_file {"path": "README.md"}` really ran in a worker: the fixture's bytes came back."""
    content = assert_ok(result, tool)
    assert content.get("content") == FIXTURE_TEXT and content.get("truncated") is False, f"{tool}: {content}"


def assert_ran(result: types.CallToolResult, tool: str, label: str = "") -> None:
    """The call passed every gateway check and ran in a confined worker.

    Workspace tools (`repo.*`, `shell.run`) return their result, or a worker's own error (for
    example `invalid_arguments` or `not_found`). A catalog tool has no upstream server to proxy to
    yet, so the worker that receives it answers `unknown_tool`. Either way the code is never one
    of the gateway's refusals.
    """
    code = tool_error_code(result)
    where = f"{label}: {tool}" if label else tool
    if tool in BUILTIN_WORKSPACE_TOOLS:
        assert code is None or code not in GATEWAY_REFUSAL_CODES, f"{where}: refused by the gateway: {result}"
    else:
        assert code == "unknown_tool", f"{where}: expected the worker's unknown_tool answer, got {result}"


async def assert_not_in_scope(session: ClientSession, tool: str, arguments: dict[str, Any] | None = None, **kw: Any) -> MCPError:
    try:
        result = await session.call_tool(tool, arguments or {}, **kw)
    except MCPError as error:
        assert error.error.code == INVALID_PARAMS, f"{tool}: code {error.error.code}: {error.error.message}"
        assert "tool_not_in_scope" in error.error.message, f"{tool}: {error.error.message}"
        return error
    raise AssertionError(f"{tool} should be refused with tool_not_in_scope, got a result: {result}")


def search_names(result: types.CallToolResult) -> list[str]:
    assert wire(result, "isError") is not True, f"system.search_tools failed: {result}"
    structured = wire(result, "structuredContent")
    assert structured is not None and isinstance(structured.get("tools"), list), result
    names = []
    for item in structured["tools"]:
        assert set(item) >= {"name", "description"}, item
        names.append(item["name"])
    return names


def run_cli(binary: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 0, f"leasehold {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def poll(what: str, check: Any, limit: float = 30.0) -> Any:
    """A bounded poll, never a bare sleep: calls `check` every 50 ms until it returns something
    truthy (returned) or `limit` seconds pass (the test fails, naming `what`)."""
    import pytest

    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {limit}s")
        time.sleep(0.05)

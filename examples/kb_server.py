#!/usr/bin/env python3
"""kb_server.py - a 500-tool knowledge-base MCP server over stdio (example upstream for Leasehold).

Run:  python3 examples/kb_server.py        (speaks MCP over stdio; FastMCP, mcp 1.x; 2.x best effort)

Leasehold mounts it as an upstream server (e.g. id `vivi`) and prefixes every tool with `vivi.`;
the names below carry no prefix.

Tool breakdown - exactly 500 tools at startup:

    kb_finance, kb_hr, kb_legal, kb_pricing, kb_catalog      5   per-tenant knowledge base
    kb_support_000 ... kb_support_479                      480   per-tenant support articles
    internal_debug                                           1   isolation probe (files, processes, env, _meta)
    beta_00 ... beta_13                                     14   protocol test hooks (see below)
                                                           ---
                                                           500

Exception: calling `beta_04` registers one more tool, `beta_extra`, and sends
`notifications/tools/list_changed`; from then on tools/list returns 501 tools (until the process exits).

kb_* tools - arguments `{"query": string}` (optional, default ""):
    data dir = $KB_DATA_DIR, else $LEASEHOLD_WORKSPACE, else the current directory;
    reads `<data>/kb/<tool name>.txt` (e.g. `kb/kb_finance.txt`) and answers with a text content
    (the entry plus the echoed query, or a "no entry" text) and `structuredContent`
    `{"tool": name, "entry": text-or-null, "query": q, "tenant": $LEASEHOLD_TENANT or null}`.

internal_debug - `{"action": "read_file"|"list_processes"|"env"|"whoami", "path"?: string}`:
    read_file       first 4096 bytes of `path` (or the error text; never raises)
    list_processes  pid + /proc/<pid>/comm of every process visible to this process
    env             os.environ
    whoami          the `_meta` of the current request as JSON, plus uid/gid/pid

beta_* test hooks:
    beta_00 {"seconds": number, "steps": int}  sleeps in `steps` steps, one progress notification per step, then "done"
    beta_01                                    crashes the server process (os._exit(3))
    beta_02                                    writes a non-JSON line ("garbage") to stdout, then answers normally
    beta_03 {"bytes": int}                     returns a text of that many "x"
    beta_04                                    adds tool `beta_extra` at runtime and sends notifications/tools/list_changed
    beta_05 ... beta_12                        trivial: return their own name
    beta_13                                    what beta_00 saw in this process (JSON): {"cancelled": runs the client cancelled, "progress_tokens": [...]}

Startup: the 485 kb_* tools share one argument schema, so the schema is built once and the
Tool objects are cloned (FastMCP's per-tool schema generation costs ~1.5 ms/tool, ~0.75 s for 500).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Literal

try:  # mcp 1.x
    from mcp.server.fastmcp import Context, FastMCP as _Server

    _SDK_MAJOR = 1
except ImportError:  # mcp 2.x renamed FastMCP to MCPServer
    from mcp.server.mcpserver import Context, MCPServer as _Server  # type: ignore[no-redef]

    _SDK_MAJOR = 2

from mcp.types import CallToolResult, TextContent, ToolAnnotations

SERVER_NAME = "leasehold-example-kb"

KB_TOPICS: dict[str, str] = {
    "kb_finance": "Knowledge base: finance policies and figures for this tenant (budgets, expense rules, invoicing, quarterly numbers).",
    "kb_hr": "Knowledge base: HR policies for this tenant (leave, benefits, onboarding, code of conduct).",
    "kb_legal": "Knowledge base: legal guidance for this tenant (contract templates, compliance notes, data-retention rules).",
    "kb_pricing": "Knowledge base: pricing for this tenant (price lists, discount rules, plan tiers, currency notes).",
    "kb_catalog": "Knowledge base: product catalog for this tenant (products, SKUs, specifications, availability).",
}

SUPPORT_AREAS = [
    "login and single sign-on",
    "password resets",
    "billing disputes",
    "refunds",
    "shipping delays",
    "returns",
    "account deletion",
    "data export",
    "API rate limits",
    "webhooks",
    "mobile app crashes",
    "email notifications",
    "two-factor authentication",
    "invoices",
    "plan upgrades",
    "integrations",
]
SUPPORT_COUNT = 480
BETA_COUNT = 14
READ_CHUNK = 4096
MAX_BETA_BYTES = 64 * 1024 * 1024

KB_ANNOTATIONS = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)


# --------------------------------------------------------------------------- helpers


def _result(text: str, structured: dict[str, Any] | None = None, is_error: bool = False) -> CallToolResult:
    """A CallToolResult with one text content and (optionally) structuredContent.

    Built from camelCase keys through model_validate so it works with the 1.x and 2.x type models.
    """
    payload: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        payload["structuredContent"] = structured
    return CallToolResult.model_validate(payload)


def data_dir() -> str:
    return os.environ.get("KB_DATA_DIR") or os.environ.get("LEASEHOLD_WORKSPACE") or os.getcwd()


def request_meta(ctx: Context | None) -> dict[str, Any] | None:
    """The `_meta` object of the current request, as plain JSON (None if the request had none)."""
    if ctx is None:
        return None
    try:
        meta = ctx.request_context.meta
    except Exception:
        return None
    if meta is None:
        return None
    if isinstance(meta, dict):
        return json.loads(json.dumps(meta, default=str))
    dump = getattr(meta, "model_dump", None)
    if dump is not None:
        return dump(mode="json", by_alias=True, exclude_none=True)
    return {"repr": repr(meta)}


def kb_answer(name: str, query: str) -> CallToolResult:
    path = os.path.join(data_dir(), "kb", name + ".txt")
    tenant = os.environ.get("LEASEHOLD_TENANT")
    entry: str | None
    try:
        with open(path, "rb") as f:
            entry = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        entry = None
    except OSError as e:  # permission denied, is a directory, ...
        err = f"{type(e).__name__}: {e.strerror or e}"
        return _result(
            f"[{name}] error reading knowledge base entry: {err}",
            {"tool": name, "entry": None, "query": query, "tenant": tenant, "error": err},
            is_error=True,
        )
    if entry is None:
        text = f"[{name}] no entry: this tenant has no knowledge base entry for {name} (query: {query!r})"
    else:
        text = f"[{name}] {entry.rstrip()}\n\n(query: {query!r})"
    return _result(text, {"tool": name, "entry": entry, "query": query, "tenant": tenant})


def _make_kb_fn(name: str):
    def kb_tool(query: str = "") -> CallToolResult:
        return kb_answer(name, query)

    kb_tool.__name__ = name
    return kb_tool


# --------------------------------------------------------------------------- internal_debug


def _read_file(path: str | None) -> tuple[str, dict[str, Any]]:
    if not path:
        return "error: read_file needs a 'path'", {"action": "read_file", "path": path, "error": "missing path"}
    try:
        with open(path, "rb") as f:
            data = f.read(READ_CHUNK)
    except Exception as e:  # noqa: BLE001 - every failure is an answer, never a crash
        err = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
        return f"error: {err}", {"action": "read_file", "path": path, "error": err}
    text = data.decode("utf-8", errors="replace")
    return text, {"action": "read_file", "path": path, "bytes": len(data), "content": text}


def _list_processes() -> tuple[str, dict[str, Any]]:
    procs: list[dict[str, Any]] = []
    try:
        entries = os.listdir("/proc")
    except OSError as e:
        return f"error: {e}", {"action": "list_processes", "error": str(e), "processes": []}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                comm = f.read().decode("utf-8", errors="replace").strip()
        except OSError:
            continue  # gone, or not ours to read
        procs.append({"pid": int(entry), "comm": comm})
    procs.sort(key=lambda p: p["pid"])
    text = "\n".join(f"{p['pid']}\t{p['comm']}" for p in procs)
    return text, {"action": "list_processes", "count": len(procs), "processes": procs}


def internal_debug(
    action: Literal["read_file", "list_processes", "env", "whoami"],
    path: str | None = None,
    ctx: Context = None,  # type: ignore[assignment]
) -> CallToolResult:
    """Diagnostics probe for isolation tests."""
    if action == "read_file":
        text, data = _read_file(path)
        return _result(text, data, is_error="error" in data)
    if action == "list_processes":
        text, data = _list_processes()
        return _result(text, data)
    if action == "env":
        env = dict(os.environ)
        return _result(json.dumps(env, indent=2, sort_keys=True), {"action": "env", "env": env})
    if action == "whoami":
        data = {
            "action": "whoami",
            "meta": request_meta(ctx),
            "uid": os.getuid(),
            "gid": os.getgid(),
            "euid": os.geteuid(),
            "egid": os.getegid(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "cwd": os.getcwd(),
            "tenant": os.environ.get("LEASEHOLD_TENANT"),
        }
        return _result(json.dumps(data, indent=2, sort_keys=True), data)
    return _result(
        f"error: unknown action {action!r}; use read_file, list_processes, env or whoami",
        {"action": action, "error": "unknown action"},
        is_error=True,
    )


# --------------------------------------------------------------------------- beta_* hooks


# What beta_00 saw in this process: runs cancelled by the client (notifications/cancelled) and
# the progress tokens it was given; beta_13 reports them.
BETA_00_SEEN: dict[str, Any] = {"cancelled": 0, "progress_tokens": []}


async def beta_00(seconds: float = 1.0, steps: int = 5, ctx: Context = None) -> str:  # type: ignore[assignment]
    steps = max(1, int(steps))
    delay = max(0.0, float(seconds)) / steps
    meta = request_meta(ctx)
    if meta and "progressToken" in meta:
        BETA_00_SEEN["progress_tokens"].append(meta["progressToken"])
    try:
        for i in range(1, steps + 1):
            await asyncio.sleep(delay)
            if ctx is not None:
                await ctx.report_progress(i, steps, f"step {i}/{steps}")
    except asyncio.CancelledError:
        BETA_00_SEEN["cancelled"] += 1
        raise
    return "done"


def beta_13() -> str:
    return json.dumps(BETA_00_SEEN)


def beta_01() -> str:
    sys.stderr.write("beta_01: crashing on purpose (exit 3)\n")
    sys.stderr.flush()
    os._exit(3)


def beta_02() -> str:
    sys.stdout.buffer.write(b"garbage\n")
    sys.stdout.buffer.flush()
    return "beta_02: wrote a non-JSON line to stdout, then answered normally"


def beta_03(bytes: int = 0) -> str:  # noqa: A002 - the argument is called "bytes" on the wire
    n = max(0, min(int(bytes), MAX_BETA_BYTES))
    return "x" * n


def beta_extra() -> str:
    return "beta_extra"


def _make_beta_04(server: Any):
    async def beta_04(ctx: Context) -> str:
        added = False
        if "beta_extra" not in {t.name for t in server._tool_manager.list_tools()}:
            server.add_tool(
                beta_extra,
                name="beta_extra",
                description="Beta: a tool added at runtime by beta_04 (federation refresh test); returns its own name.",
                annotations=ToolAnnotations(readOnlyHint=True),
                structured_output=False,
            )
            added = True
        await ctx.session.send_tool_list_changed()
        count = len(server._tool_manager.list_tools())
        return f"beta_04: {'added' if added else 'already had'} beta_extra; {count} tools; sent notifications/tools/list_changed"

    return beta_04


def _make_trivial(name: str):
    def trivial() -> str:
        return name

    trivial.__name__ = name
    return trivial


BETA_DESCRIPTIONS = {
    "beta_00": "Beta: long-running job. Sleeps `seconds` in `steps` steps, sending a progress notification per step, then returns 'done' (progress, cancellation and timeout tests).",
    "beta_01": "Beta: crashes the server process with exit code 3 (upstream crash handling tests).",
    "beta_02": "Beta: writes a non-JSON line to stdout, then answers normally (protocol garbage handling tests).",
    "beta_03": "Beta: returns a text of `bytes` 'x' characters (output size cap tests).",
    "beta_04": "Beta: adds the tool beta_extra at runtime and sends notifications/tools/list_changed (federation refresh tests).",
    "beta_13": "Beta: what beta_00 saw in this process, as JSON: runs cancelled by the client and the progress tokens it was given (progress and cancellation tests).",
}


# --------------------------------------------------------------------------- server


def build_server() -> Any:
    kwargs: dict[str, Any] = {"log_level": "WARNING"}
    server = _Server(
        SERVER_NAME,
        instructions="Example knowledge-base upstream for Leasehold: per-tenant kb_* lookups plus test hooks.",
        **kwargs,
    )

    # kb_*: one schema, cloned (see module docstring). Falls back to add_tool if cloning is unavailable.
    kb_specs: list[tuple[str, str, str]] = [(n, n.replace("_", " ").title(), d) for n, d in KB_TOPICS.items()]
    for i in range(SUPPORT_COUNT):
        area = SUPPORT_AREAS[i % len(SUPPORT_AREAS)]
        kb_specs.append(
            (
                f"kb_support_{i:03d}",
                f"Support article {i:03d}",
                f"Knowledge base: support article {i:03d} for this tenant - troubleshooting {area} (article set {i // len(SUPPORT_AREAS)}).",
            )
        )
    _add_kb_tools(server, kb_specs)

    server.add_tool(
        internal_debug,
        name="internal_debug",
        description=(
            "Internal diagnostics: action=read_file (first 4096 bytes of `path`), list_processes "
            "(visible /proc entries), env (environment variables) or whoami (request _meta, uid/gid/pid). "
            "Used by isolation tests."
        ),
    )
    server.add_tool(beta_00, name="beta_00", description=BETA_DESCRIPTIONS["beta_00"], structured_output=False)
    server.add_tool(beta_01, name="beta_01", description=BETA_DESCRIPTIONS["beta_01"], structured_output=False)
    server.add_tool(beta_02, name="beta_02", description=BETA_DESCRIPTIONS["beta_02"], structured_output=False)
    server.add_tool(beta_03, name="beta_03", description=BETA_DESCRIPTIONS["beta_03"], structured_output=False)
    server.add_tool(_make_beta_04(server), name="beta_04", description=BETA_DESCRIPTIONS["beta_04"], structured_output=False)
    server.add_tool(beta_13, name="beta_13", description=BETA_DESCRIPTIONS["beta_13"], structured_output=False)
    for i in range(5, BETA_COUNT - 1):
        name = f"beta_{i:02d}"
        server.add_tool(
            _make_trivial(name), name=name, description=f"Beta: trivial test tool {name}; returns its own name.", structured_output=False
        )
    return server


def _add_kb_tools(server: Any, specs: list[tuple[str, str, str]]) -> None:
    manager = getattr(server, "_tool_manager", None)
    tools = getattr(manager, "_tools", None)
    first_name, first_title, first_desc = specs[0]
    server.add_tool(_make_kb_fn(first_name), name=first_name, title=first_title, description=first_desc, annotations=KB_ANNOTATIONS)
    template = manager.get_tool(first_name) if manager is not None else None
    if template is None or not isinstance(tools, dict) or not hasattr(template, "model_copy"):
        for name, title, desc in specs[1:]:  # slow path: full schema generation per tool
            server.add_tool(_make_kb_fn(name), name=name, title=title, description=desc, annotations=KB_ANNOTATIONS)
        return
    for name, title, desc in specs[1:]:
        tools[name] = template.model_copy(
            update={
                "fn": _make_kb_fn(name),
                "name": name,
                "title": title,
                "description": desc,
                "parameters": {**template.parameters, "title": f"{name}Arguments"},
            }
        )


def _advertise_list_changed(server: Any) -> None:
    """FastMCP advertises `tools.listChanged: false` by default; we do send it (beta_04), so say so.

    Wraps the low-level server's get_capabilities (1.x `_mcp_server`, 2.x `_lowlevel_server`) to force
    NotificationOptions.tools_changed=True. Best effort: does nothing if the SDK internals differ.
    """
    low = getattr(server, "_mcp_server", None) or getattr(server, "_lowlevel_server", None)
    original = getattr(low, "get_capabilities", None)
    if original is None:
        return
    try:
        from mcp.server.lowlevel.server import NotificationOptions
    except ImportError:
        return

    def get_capabilities(notification_options=None, *args, **kwargs):
        base = notification_options or NotificationOptions()
        forced = NotificationOptions(
            prompts_changed=base.prompts_changed, resources_changed=base.resources_changed, tools_changed=True
        )
        return original(forced, *args, **kwargs)

    low.get_capabilities = get_capabilities


mcp = build_server()
_advertise_list_changed(mcp)

if __name__ == "__main__":
    mcp.run()

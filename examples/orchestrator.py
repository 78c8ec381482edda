#!/usr/bin/env python3
"""orchestrator.py - what an orchestrator does with Leasehold, start to end (copy it).

1. create a scoped session (one call: tenant, workspace, actor, allow and deny patterns);
2. connect an agent with the official MCP SDK on a freshly minted claim, list its tools, call one;
3. narrow the session's scope mid-conversation (PATCH, merge-patch) and see the agent's client get
   `notifications/tools/list_changed` and the narrower tool list;
4. revoke the session at the end (also when something failed).

Against `make run` (http://127.0.0.1:8080, demo tenants acme and globex with workspace `demo`, the
500-tool knowledge base as upstream `vivi`) it needs no arguments:

    pip install "./clients/python[mcp]"        # or: .venv/bin/pip install ... after make test
    python3 examples/orchestrator.py

The admin key comes from --key, else $LEASEHOLD_API_KEY, else $LEASEHOLD_OPERATOR_KEY, else the file
--key-file (default: .leasehold/operator.key, the key `make run` generates, looked up in the current
directory and then in this repository). The URL comes from --url, else $LEASEHOLD_URL. Exit status 0
when every step behaved as described, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import sys
from pathlib import Path
from typing import Any

from leasehold_client import DEFAULT_BASE_URL, AsyncLeasehold, LeaseholdError
from leasehold_client.mcp import is_tool_list_changed, refusal_code

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("LEASEHOLD_URL", DEFAULT_BASE_URL), help="runner base URL (default %(default)s)")
    parser.add_argument("--key", default=None, help="operator or tenant admin key")
    parser.add_argument("--key-file", default=".leasehold/operator.key", help="file holding the key (default %(default)s)")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--workspace", default="demo")
    parser.add_argument("--actor", default="agent-1")
    parser.add_argument("--allow", action="append", help="allowed tool pattern (repeatable; default vivi.kb_*)")
    parser.add_argument("--deny", action="append", help="denied tool pattern (repeatable; default vivi.internal_*)")
    parser.add_argument("--narrow-deny", action="append",
                        help="patterns added to the deny list mid-conversation (default vivi.kb_support_*)")
    parser.add_argument("--call", default="vivi.kb_finance", help="the tool the agent calls (default %(default)s)")
    parser.add_argument("--arguments", default='{"query": "revenue"}', help="its JSON arguments")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for list_changed")
    args = parser.parse_args(argv)
    args.allow = args.allow or ["vivi.kb_*"]
    args.deny = args.deny or ["vivi.internal_*"]
    args.narrow_deny = args.narrow_deny or ["vivi.kb_support_*"]
    return args


def admin_key(args: argparse.Namespace) -> str:
    for value in (args.key, os.environ.get("LEASEHOLD_API_KEY"), os.environ.get("LEASEHOLD_OPERATOR_KEY")):
        if value:
            return value
    for candidate in (Path(args.key_file), REPO_ROOT / args.key_file):
        if candidate.is_file():
            return candidate.read_text().strip()
    sys.exit(f"no admin key: pass --key, set LEASEHOLD_API_KEY, or run `make run` (it writes {args.key_file})")


async def tool_names(mcp: Any) -> list[str]:
    """Every page of tools/list."""
    names: list[str] = []
    result = await mcp.list_tools()
    while True:
        names += [tool.name for tool in result.tools]
        if not result.nextCursor:
            return names
        result = await mcp.list_tools(cursor=result.nextCursor)


def summary(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:6])
    return f"{len(names)} tools ({shown}{', ...' if len(names) > 6 else ''})"


async def run(args: argparse.Namespace) -> bool:
    ok = True
    async with AsyncLeasehold(args.url, admin_key(args)) as lh:
        # 1. One call creates the scoped session (and a first claim, unused here: the helper
        #    mints a fresh claim for each MCP connection).
        created = await lh.sessions.create(
            tenant_id=args.tenant, workspace_id=args.workspace, actor_id=args.actor,
            allowed_tool_names=args.allow, denied_tool_names=args.deny,
        )
        print(f"session {created.id} for {args.tenant}/{args.actor} in workspace {args.workspace}: "
              f"allow {args.allow}, deny {args.deny}")
        changed = asyncio.Event()

        async def on_message(message: Any) -> None:
            if is_tool_list_changed(message):
                changed.set()

        try:
            # 2. The agent's MCP client session (official SDK) on its own claim.
            async with lh.mcp_session(created.id, message_handler=on_message) as mcp:
                before = await tool_names(mcp)
                print(f"agent sees {summary(before)}")
                try:
                    result = await mcp.call_tool(args.call, json.loads(args.arguments))
                except Exception as error:  # the SDK raises McpError for a JSON-RPC error
                    print(f"agent calls {args.call}: refused {refusal_code(error) or error}")
                else:
                    code = refusal_code(result)
                    text = " ".join(" ".join(getattr(part, "text", "").split()) for part in result.content)
                    print(f"agent calls {args.call}: " + (f"refused {code}" if code else text[:200]))

                # 3. Mid-conversation the orchestrator narrows the scope (merge-patch: only the
                #    deny list changes; the allow list stays as it is).
                await lh.sessions.patch(created.id, denied_tool_names=[*args.deny, *args.narrow_deny])
                print(f"orchestrator denies {args.narrow_deny} as well")
                try:
                    await asyncio.wait_for(changed.wait(), args.timeout)
                    print("agent got notifications/tools/list_changed")
                except TimeoutError:
                    print(f"FAIL: no notifications/tools/list_changed within {args.timeout:.0f} s")
                    ok = False
                after = await tool_names(mcp)
                print(f"agent now sees {summary(after)}")
                leaked = [n for n in after if any(fnmatch.fnmatchcase(n, p) for p in args.narrow_deny)]
                if leaked or len(after) >= len(before):
                    print(f"FAIL: the narrowed scope still shows {leaked or 'as many tools'}")
                    ok = False
        finally:
            # 4. Revoke at the end: every claim of the session is refused from now on.
            revoked = await lh.sessions.revoke(created.id)
            print(f"session {revoked.id} revoked at {revoked.revoked_at:%H:%M:%S}")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return 0 if asyncio.run(run(args)) else 1
    except LeaseholdError as error:
        print(f"Leasehold refused: {error.status} {error.code}: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Upstream MCP servers through Leasehold (issue 15), in the same run as the peer.

The upstream is examples/kb_server.py (500 tools, the official Python SDK's FastMCP) in
`.venv-examples`. Three figures:

- tools/list of the 500-tool upstream through Leasehold (a session scoped to `server_id: vivi`:
  500 tools plus `system.*`), against tools/list asked of the same server directly over stdio;
- one call (`kb_finance`) through Leasehold to the tenant's warm process, against the same call
  made directly to the same server over stdio: the difference is what Leasehold adds (claim,
  scope, audit intent and outcome, the worker relay, the signed identity assertion);
- cold start of a per-session upstream: a new session's first call, which starts and
  initializes the server inside a fresh confined worker, against starting the same server
  directly and making the same first call.

Both sides are driven alike (e2e_bench.MCPSession and e2e_bench.StdioPeer: one write per request,
64 KiB reads, no SDK client on either side).

    upstream_bench.py measure --leasehold BIN --policies DIR --repo DIR --json OUT [--samples N]
    upstream_bench.py render --json IN --out OUT.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_bench import (  # noqa: E402  (the harness both benches share)
    TENANT, BenchError, Leasehold, MCPSession, StdioPeer, expect_ok, summarize, time_calls, us,
)


def upstream_server(binary, state_dir, policies, repo):
    """`leasehold serve` with the knowledge base as upstream `vivi` (tenant) and `vivs` (session)."""
    python = os.path.join(repo, ".venv-examples", "bin", "python")
    server = os.path.join(repo, "examples", "kb_server.py")
    mounts = [os.path.join(repo, "examples"), os.path.join(repo, ".venv-examples")]
    entry = {"transport": "stdio", "command": [python, server], "mounts": mounts, "tier": "upstream"}
    servers = [dict(entry, id="vivi", isolation="tenant"), dict(entry, id="vivs", isolation="session")]
    return Leasehold(binary, state_dir, policies, extra={"servers": servers})


def direct_peer(repo):
    python = os.path.join(repo, ".venv-examples", "bin", "python")
    server = os.path.join(repo, "examples", "kb_server.py")
    # StdioPeer appends its root argument; kb_server.py ignores extra arguments.
    return StdioPeer([python, server], repo)


def measure(args):
    repo = os.path.realpath(args.repo)
    if not os.path.exists(os.path.join(repo, ".venv-examples", "bin", "python")):
        raise BenchError("%s/.venv-examples is missing: run scripts/bootstrap.sh" % repo)
    work = tempfile.mkdtemp(prefix="leasehold-upstream-bench.")
    results = {"samples": args.samples}
    server = upstream_server(args.leasehold, os.path.join(work, "state"), args.policies, repo).start()
    try:
        base = os.path.join(work, "state-workspaces", TENANT, "kb")
        server.admin("POST", "/workspaces", {"tenant_id": TENANT, "workspace_id": "kb"}, expect=201)
        os.makedirs(os.path.join(base, "kb"), exist_ok=True)
        claim = server.admin("POST", "/sessions", {"tenant_id": TENANT, "actor_id": "alice", "workspace_id": "kb",
                                                    "server_id": "vivi"}, expect=201).json()["claim"]
        session = MCPSession(server.port, claim).initialize()
        listed = session.rpc("tools/list", {})
        names = [t["name"] for t in listed["tools"]]
        if len([n for n in names if n.startswith("vivi.")]) != 500:
            raise BenchError("tools/list through Leasehold: %d vivi tools" % len(names))
        expect_ok(session.call("vivi.kb_finance", {"query": "warm"}), "kb_finance")

        peer = direct_peer(repo).initialize()
        if len(peer.rpc("tools/list", {})["tools"]) != 500:
            raise BenchError("direct tools/list did not list 500 tools")
        results["list_leasehold"] = time_calls(lambda: session.rpc("tools/list", {}), args.samples // 4, args.warmup)
        results["list_direct"] = time_calls(lambda: peer.rpc("tools/list", {}), args.samples // 4, args.warmup)
        results["call_leasehold"] = time_calls(
            lambda: session.call("vivi.kb_finance", {"query": "q"}), args.samples, args.warmup)
        results["call_direct"] = time_calls(lambda: peer.call("kb_finance", {"query": "q"}), args.samples, args.warmup)
        peer.close()
        session.close()

        # Cold start: a new session's first call of the per-session server, against a fresh
        # server process asked the same call directly.
        cold_lh, cold_direct = [], []
        for _ in range(args.cold_samples):
            claim = server.admin("POST", "/sessions", {"tenant_id": TENANT, "actor_id": "alice",
                                                        "workspace_id": "kb"}, expect=201).json()["claim"]
            fresh = MCPSession(server.port, claim).initialize()
            t0 = time.perf_counter_ns()
            expect_ok(fresh.call("vivs.kb_finance", {"query": "cold"}), "cold kb_finance")
            cold_lh.append(time.perf_counter_ns() - t0)
            fresh.close()
            t0 = time.perf_counter_ns()
            direct = direct_peer(repo).initialize()
            direct.call("kb_finance", {"query": "cold"})
            cold_direct.append(time.perf_counter_ns() - t0)
            direct.close()
        results["cold_leasehold"] = summarize(cold_lh)
        results["cold_direct"] = summarize(cold_direct)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)


def signed(delta):
    return ("−" + us(-delta)) if delta < 0 else ("+" + us(delta))


def render(args):
    with open(args.json) as handle:
        r = json.load(handle)
    lines = [
        "## Upstream MCP servers (issue 15)",
        "",
        "examples/kb_server.py (500 tools, FastMCP) behind Leasehold in a confined worker, against the same",
        "server driven directly over stdio by an equally thin client. Overhead = Leasehold − direct.",
        "",
        "| figure | Leasehold median | p99 | direct median | p99 | overhead (median) |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in (("list", "tools/list, 500 upstream tools"), ("call", "one call (`kb_finance`), warm process"),
                      ("cold", "cold start: first call of a per-session server")):
        lh, direct = r[key + "_leasehold"], r[key + "_direct"]
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            name, us(lh["median_us"]), us(lh["p99_us"]), us(direct["median_us"]), us(direct["p99_us"]),
            signed(lh["median_us"] - direct["median_us"])))
    lines += [
        "",
        "The warm call's overhead is the call path of a built-in tool (claim, scope, audit intent and",
        "outcome, both fsynced: the shipped `upstream` tier is `audit_sync: full`) plus the worker relay",
        "and the Ed25519 identity assertion; tools/list through Leasehold",
        "is answered from the catalog (the upstream is not asked), so it can be faster than asking the",
        "server. Cold start is dominated by the Python server's own start (importing the SDK); Leasehold",
        "adds the worker's confinement and the relay's initialize.",
        "",
    ]
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--leasehold", required=True)
    m.add_argument("--policies", required=True)
    m.add_argument("--repo", required=True)
    m.add_argument("--json", required=True)
    m.add_argument("--samples", type=int, default=2000)
    m.add_argument("--warmup", type=int, default=100)
    m.add_argument("--cold-samples", type=int, default=10)
    r = sub.add_parser("render")
    r.add_argument("--json", required=True)
    r.add_argument("--out", required=True)
    args = parser.parse_args()
    try:
        measure(args) if args.command == "measure" else render(args)
    except BenchError as error:
        print("upstream_bench: %s" % error, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Upstream MCP servers through the real binary (issue 15): examples/kb_server.py, a 500-tool
knowledge base written with the official Python SDK, runs behind Leasehold in confined workers.

- Sessions see exactly 3, 12 and 497 of its tools (plus `system.*`) on tools/list, search and
  both call paths; a hidden tool is refused on both.
- `isolation: tenant`: acme's and globex's processes each see their own workspace's data and
  their own processes, never the other's.
- `isolation: session`: the process dies with its session.
- Failures are typed and the next call works: a crash (`upstream_unavailable`), a line that is
  not JSON-RPC (`upstream_protocol`), no answer in the tier's wall clock (`upstream_timeout`).
- A server that says its tools changed has them listed again; connected sessions see them.

The server's Python (`.venv-examples`, from Debian's /usr/bin/python3, made by
scripts/bootstrap.sh) and the examples directory are its `mounts`, read-only in its workers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from attack_support import VERSION, Agent, World, jsonrpc_messages, raw_headers
from interop_support import REPO_ROOT, copy_policies

PYTHON = REPO_ROOT / ".venv-examples" / "bin" / "python"
KB_SERVER = REPO_ROOT / "examples" / "kb_server.py"


def server_entry(id: str, isolation: str, tier: str = "upstream", workspace: bool = False, multi: bool = False) -> str:
    return (f"  - {{id: {id}, transport: stdio, command: [{PYTHON}, {KB_SERVER}], "
            f"mounts: [{REPO_ROOT / 'examples'}, {REPO_ROOT / '.venv-examples'}], isolation: {isolation}, "
            f"tier: {tier}, workspace: {str(workspace).lower()}, multi_tenant: {str(multi).lower()}}}\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run scripts/bootstrap.sh --python", pytrace=False)
    base = Path(tmp_path_factory.mktemp("upstream"))
    policies = copy_policies(base / "policies")
    tiers = policies / "tiers.yaml"
    text = tiers.read_text()
    # A tier like `upstream` with a short wall clock, for the timeout case.
    quick = text[text.index("  upstream:\n"):].replace("  upstream:\n", "  upstream-quick:\n", 1)
    quick = quick.replace("wall_ms: 30000", "wall_ms: 2500", 1)
    tiers.write_text(text.rstrip("\n") + "\n" + quick)
    config = base / "leasehold.yaml"
    config.write_text(
        "servers:\n"
        + server_entry("vivi", "tenant", workspace=True)
        + server_entry("mine", "session")
        + server_entry("quick", "session", tier="upstream-quick")
        + server_entry("common", "shared", multi=True)
    )
    world = World(base, policies=policies, config=config)
    for tree, secret in ((world.acme, "acme finance figures"), (world.globex, "globex finance figures")):
        (tree.root / "kb").mkdir(exist_ok=True)
        (tree.root / "kb" / "kb_finance.txt").write_text(secret + "\n")
    yield world
    world.stop()


def rpc(agent: Agent, method: str, params: dict[str, Any]) -> dict[str, Any]:
    agent.next_id += 1
    body = {"jsonrpc": "2.0", "id": agent.next_id, "method": method, "params": params}
    response = agent.http.post(agent.world.server.mcp_url, json=body, headers=raw_headers(agent.claim, agent.sid, VERSION))
    assert response.status_code == 200, response.text
    return jsonrpc_messages(response)[0]


def listed(agent: Agent) -> set[str]:
    names: list[str] = []
    cursor = None
    while True:
        message = rpc(agent, "tools/list", {"cursor": cursor} if cursor else {})
        names += [tool["name"] for tool in message["result"]["tools"]]
        cursor = message["result"].get("nextCursor")
        if not cursor:
            return set(names)


def call(agent: Agent, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC message answering tools/call."""
    return rpc(agent, "tools/call", {"name": name, "arguments": arguments})


def code(message: dict[str, Any]) -> str | None:
    if "error" in message:
        return (message["error"].get("data") or {}).get("detail", message["error"]["message"]).split(":", 1)[0]
    result = message["result"]
    if result.get("isError"):
        return ((result.get("structuredContent") or {}).get("error") or {}).get("code")
    return None


SYSTEM = {"system.search_tools", "system.execute_tool"}


@pytest.mark.parametrize("allowed,denied,server,expected", [
    (["vivi.kb_finance", "vivi.kb_hr", "vivi.kb_legal"], None, None, 3),
    (["vivi.kb_support_00*", "vivi.kb_finance", "vivi.kb_hr"], None, None, 12),
    (None, ["vivi.internal_*", "vivi.beta_01", "vivi.beta_02"], "vivi", 497),
])
def test_sessions_see_exactly_their_share_of_the_500_tools(
    world: World, allowed: list[str] | None, denied: list[str] | None, server: str | None, expected: int
) -> None:
    session: dict[str, Any] = {}
    if allowed is not None:
        session["allowed_tool_names"] = allowed
    if denied is not None:
        session["denied_tool_names"] = denied
    if server is not None:
        session["server_id"] = server
    agent = Agent(world, "acme", "w1", actor=f"viewer{expected}", **session)
    try:
        names = listed(agent)
        vivi = {n for n in names if n.startswith("vivi.")}
        assert len(vivi) == expected, sorted(vivi)[:20]
        assert SYSTEM <= names
        if server == "vivi":
            assert names == vivi | SYSTEM, sorted(names - vivi)
        # Search sees the same set: everything it finds is visible, and a hidden tool is never found.
        found = call(agent, "system.search_tools", {"query": "knowledge base support", "limit": 500})
        hits = {t["name"] for t in found["result"]["structuredContent"]["tools"]}
        assert hits and hits <= names, sorted(hits - names)
        # Both call paths run a visible tool in acme's own process, with acme's data.
        direct = call(agent, "vivi.kb_finance", {"query": "q1"})
        assert code(direct) is None, direct
        assert direct["result"]["structuredContent"]["entry"].strip() == "acme finance figures"
        assert direct["result"]["structuredContent"]["tenant"] == "acme"
        via = call(agent, "system.execute_tool", {"name": "vivi.kb_finance", "arguments": {"query": "q2"}})
        assert code(via) is None and via["result"]["structuredContent"]["query"] == "q2", via
        # A hidden tool is refused on both paths.
        hidden = "vivi.internal_debug" if expected != 12 else "vivi.kb_support_010"
        assert code(call(agent, hidden, {"action": "whoami"})) == "tool_not_in_scope"
        assert code(call(agent, "system.execute_tool", {"name": hidden, "arguments": {}})) == "tool_not_in_scope"
    finally:
        agent.close()


def test_tenant_processes_see_only_their_own_data_and_processes(world: World) -> None:
    acme = Agent(world, "acme", "w1", actor="alice")
    globex = Agent(world, "globex", "g1", actor="gina")
    try:
        for agent, own, other in ((acme, world.acme, world.globex), (globex, world.globex, world.acme)):
            entry = call(agent, "vivi.kb_finance", {})["result"]["structuredContent"]
            assert entry["tenant"] == agent.tenant and entry["entry"].startswith(agent.tenant), entry
            # The other tenant's files by their host path, and the runner's state directory: absent.
            for path in (other.root / "kb" / "kb_finance.txt", other.root / "notes.txt", world.state_dir / "operator.key"):
                result = call(agent, "vivi.internal_debug", {"action": "read_file", "path": str(path)})
                text = json.dumps(result)
                assert "finance figures" not in text.replace(f"{agent.tenant} finance figures", "")
                world.assert_no_leak(text, f"{agent.tenant} reading {path}", attacker=agent if agent is globex else None)
            # Its own workspace is at /workspace, read-only.
            mine = call(agent, "vivi.internal_debug", {"action": "read_file", "path": "/workspace/kb/kb_finance.txt"})
            assert f"{agent.tenant} finance figures" in json.dumps(mine)
            processes = json.dumps(call(agent, "vivi.internal_debug", {"action": "list_processes"}))
            assert "leasehold" not in processes.replace("leasehold-worke", ""), processes
        # Two processes: one per tenant, each a different worker.
        spawns = {a.tenant: [r for r in a.world.server.admin("GET", "/audit?limit=10000").json()["records"]
                             if r["event"]["event"] == "worker.spawned" and r["event"].get("tenant") == a.tenant
                             and r["event"].get("tier") == "upstream"] for a in (acme, globex)}
        assert spawns["acme"] and spawns["globex"], spawns
    finally:
        acme.close()
        globex.close()


def host_pid(world: World, session_id: str, tier: str) -> int:
    records = world.server.admin("GET", f"/audit?session_id={session_id}&limit=1000").json()["records"]
    spawned = [r["event"] for r in records if r["event"]["event"] == "worker.spawned" and r["event"].get("tier") == tier]
    assert spawned, records[-5:]
    return int(spawned[-1]["detail"].split()[1].rstrip(";"))


def test_a_session_process_dies_with_its_session(world: World) -> None:
    agent = Agent(world, "globex", "g1", actor="sam")
    assert code(call(agent, "mine.beta_05", {})) is None
    pid = host_pid(world, agent.session_id, "upstream")
    assert Path(f"/proc/{pid}").exists()
    agent.close()  # revokes the session
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the kernel to reap it; bounded by the deadline
    assert not Path(f"/proc/{pid}").exists(), f"session process {pid} outlived its session"


def test_failures_are_typed_and_the_next_call_works(world: World) -> None:
    agent = Agent(world, "globex", "g1", actor="fay")
    try:
        assert code(call(agent, "mine.beta_05", {})) is None
        crashed = call(agent, "mine.beta_01", {})
        assert code(crashed) == "upstream_unavailable", crashed
        assert code(call(agent, "mine.beta_06", {})) is None, "the server was started again"
        garbage = call(agent, "mine.beta_02", {})
        assert code(garbage) == "upstream_protocol", garbage
        assert code(call(agent, "mine.beta_07", {})) is None
        slow = call(agent, "quick.beta_00", {"seconds": 6, "steps": 3})
        assert code(slow) == "upstream_timeout", slow
        assert code(call(agent, "quick.beta_05", {})) is None, "a timed-out call leaves the server serving"
        big = call(agent, "mine.beta_03", {"bytes": 3 * 1024 * 1024})
        assert code(big) == "limit_exceeded", json.dumps(big)[:300]
        records = agent.audit()
        outcomes = [r for r in records if r["event"] == "call.outcome"]
        assert {"upstream_unavailable", "upstream_protocol", "upstream_timeout"} <= {r.get("code") for r in outcomes}, outcomes[-6:]
    finally:
        agent.close()


def test_a_server_that_changes_its_tools_is_listed_again(world: World) -> None:
    agent = Agent(world, "acme", "w1", actor="carl", server_id="common")
    try:
        before = listed(agent)
        assert "common.beta_extra" not in before and len(before - SYSTEM) == 500
        assert code(call(agent, "common.beta_04", {})) is None
        deadline = time.monotonic() + 15
        names = listed(agent)
        while "common.beta_extra" not in names and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for the catalog refresh; bounded by the deadline
            names = listed(agent)
        assert "common.beta_extra" in names
        assert code(call(agent, "common.beta_extra", {})) is None
    finally:
        agent.close()


def test_an_upstream_learns_who_calls_from_a_signed_assertion_never_the_claim(world: World) -> None:
    """The upstream gets `_meta["dev.leasehold/identity"]`: an EdDSA JWS over the session's
    tenant, workspace, session, lease and actor, for its own server id, verifiable with the key
    in its environment. The caller's claim never reaches it, and a `_meta` the caller sends
    cannot stand in for the assertion."""
    import jwt

    agent = Agent(world, "acme", "w1", actor="alice")
    try:
        answer = call(agent, "vivi.internal_debug", {"action": "whoami"})
        text = json.dumps(answer)
        assert agent.claim not in text and agent.claim.split(".")[1] not in text, "the session claim reached the upstream"
        token = answer["result"]["structuredContent"]["meta"]["dev.leasehold/identity"]
        env = call(agent, "vivi.internal_debug", {"action": "env"})["result"]["structuredContent"]["env"]
        jwks = json.loads(env["LEASEHOLD_IDENTITY_JWKS"])
        key = jwt.PyJWK(jwks["keys"][0]).key
        assert jwt.get_unverified_header(token)["typ"] == "leasehold-identity+jwt"
        claims = jwt.decode(token, key, algorithms=["EdDSA"], audience="vivi")
        assert (claims["tenant_id"], claims["workspace_id"], claims["session_id"], claims["sub"]) == (
            "acme", "w1", agent.session_id, "alice")
        assert claims["exp"] - claims["iat"] == 60 and claims["tool"] == "internal_debug"
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(token, key, algorithms=["EdDSA"], audience="common")
        # The caller's own _meta never reaches the upstream: only Leasehold's assertion does.
        forged = rpc(agent, "tools/call", {"name": "vivi.internal_debug", "arguments": {"action": "whoami"},
                                           "_meta": {"dev.leasehold/identity": "forged", "tenant": "globex"}})
        seen = forged["result"]["structuredContent"]["meta"]
        assert seen["dev.leasehold/identity"] != "forged" and "tenant" not in seen, seen
        assert jwt.decode(seen["dev.leasehold/identity"], key, algorithms=["EdDSA"], audience="vivi")["tenant_id"] == "acme"
    finally:
        agent.close()

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
import secrets
import select
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from attack_support import VERSION, Agent, World, jsonrpc_messages, raw_headers
from interop_support import INITIALIZE_BODY, OPERATOR_KEY, REPO_ROOT, copy_policies

PYTHON = REPO_ROOT / ".venv-examples" / "bin" / "python"
KB_SERVER = REPO_ROOT / "examples" / "kb_server.py"
ECHO_SERVER = REPO_ROOT / "examples" / "echo_server.sh"
TICKETS_SERVER = REPO_ROOT / "examples" / "tickets_server.py"


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
    # An HTTP upstream someone else runs, which wants its own bearer token (never the caller's claim).
    token = secrets.token_hex(16)
    (base / "tickets.token").write_text(token + "\n")
    (base / "tickets.header").write_text(f"Bearer {token}\n")
    tickets = subprocess.Popen([str(PYTHON), str(TICKETS_SERVER), "--port", "0", "--token-file", str(base / "tickets.token")],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = tickets.stdout.readline() if tickets.stdout else ""
    assert line.startswith("listening on "), f"tickets_server did not start: {line!r}"
    tickets_url = line.split()[-1]
    config = base / "leasehold.yaml"
    config.write_text(
        "servers:\n"
        + server_entry("vivi", "tenant", workspace=True)
        + server_entry("mine", "session")
        + server_entry("quick", "session", tier="upstream-quick")
        + server_entry("common", "shared", multi=True)
        + f"  - {{id: echo, command: [/bin/sh, {ECHO_SERVER}], mounts: [{REPO_ROOT / 'examples'}], isolation: session, tier: upstream}}\n"
        + f"  - {{id: tickets, transport: http, url: '{tickets_url}', headers: {{Authorization: {{file: {base / 'tickets.header'}}}}}, tier: read}}\n"
    )
    world = World(base, policies=policies, config=config)
    for tree, secret in ((world.acme, "acme finance figures"), (world.globex, "globex finance figures")):
        (tree.root / "kb").mkdir(exist_ok=True)
        (tree.root / "kb" / "kb_finance.txt").write_text(secret + "\n")
    world.tickets_token = token  # type: ignore[attr-defined]
    world.tickets = tickets  # type: ignore[attr-defined]
    yield world
    world.stop()
    stop(tickets)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


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


def exited(pids: list[int], timeout: float) -> list[int]:
    """Waits for the processes' exits on their pidfds (readable once a process has exited: an
    event, not a poll of /proc) and returns those still running after `timeout` in all."""
    deadline = time.monotonic() + timeout
    running = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                running.append(pid)
        finally:
            os.close(fd)
    return running


def test_a_session_process_dies_with_its_session(world: World) -> None:
    agent = Agent(world, "globex", "g1", actor="sam")
    assert code(call(agent, "mine.beta_05", {})) is None
    pid = host_pid(world, agent.session_id, "upstream")
    assert Path(f"/proc/{pid}").exists()
    agent.close()  # revokes the session
    assert exited([pid], timeout=10) == [], f"session process {pid} outlived its session"


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
        mark = len(world.server.log)
        assert code(call(agent, "common.beta_04", {})) is None
        assert world.server.wait_for_log("upstream tools listed", "server=common", "tools=501", after=mark)
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


def upstream_processes(marker: str, runner: int) -> list[int]:
    """Host pids descending from `runner` whose command line names `marker` (the upstream's
    script); other runners on the host (another test's) are not this one's business."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "cmdline").read_bytes():
                continue
            pid = int(entry.name)
            while pid > 1 and pid != runner:
                status = Path(f"/proc/{pid}/status").read_text()
                pid = int(next(l for l in status.splitlines() if l.startswith("PPid:")).split()[1])
            if pid == runner:
                found.append(int(entry.name))
        except (OSError, StopIteration, ValueError):
            continue  # gone meanwhile, or not ours to read
    return found


@pytest.mark.timeout(600)
def test_a_thousand_sessions_come_and_go_and_no_upstream_process_survives(world: World) -> None:
    """Each session gets its own process of `echo` (isolation: session); each is destroyed with
    its session. After 1,000 sessions, none is left (nor the process that listed the server)."""
    marker = str(ECHO_SERVER)
    runner = world.server._process.pid  # type: ignore[union-attr]
    admin = httpx.Client(base_url=world.server.api_url, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=30)
    mcp = httpx.Client(timeout=30)
    body = {"tenant_id": "acme", "actor_id": "transient", "workspace_id": "w1"}
    for index in range(1000):
        created = admin.post("/sessions", json=body)
        assert created.status_code == 201, created.text
        session_id, claim = created.json()["session"]["id"], created.json()["claim"]
        opened = mcp.post(world.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
        assert opened.status_code == 200, opened.text
        headers = raw_headers(claim, opened.headers["mcp-session-id"], VERSION)
        mcp.post(world.server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        answer = jsonrpc_messages(mcp.post(world.server.mcp_url, headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo.ping", "arguments": {}}}))[0]
        assert code(answer) is None and answer["result"]["content"][0]["text"] == "pong", (index, answer)
        if index == 0:
            assert upstream_processes(marker, runner), "the session's process is not where the scan looks"
        assert admin.delete(f"/sessions/{session_id}").status_code in (200, 204)  # revokes it
    left = exited(upstream_processes(marker, runner), timeout=20)
    assert left == [], f"{len(left)} upstream processes outlived their sessions"


def test_an_http_upstream_gets_its_own_credential_and_the_assertion_never_the_claim(world: World) -> None:
    """`transport: http`: one deployment someone else runs. Leasehold sends the configured
    Authorization (read from a file) and the signed identity assertion; the caller's claim and
    `_meta` never reach it, and scopes hold as for every other tool."""
    import jwt

    agent = Agent(world, "acme", "w1", actor="hal", denied_tool_names=["tickets.tickets_create"])
    try:
        names = listed(agent)
        assert {"tickets.tickets_list", "tickets.tickets_get", "tickets.tickets_whoami"} <= names
        assert "tickets.tickets_create" not in names
        assert code(call(agent, "tickets.tickets_create", {"title": "x"})) == "tool_not_in_scope"
        listing = call(agent, "tickets.tickets_list", {})
        assert code(listing) is None and "Printer" in json.dumps(listing), listing
        who = rpc(agent, "tools/call", {"name": "tickets.tickets_whoami", "arguments": {},
                                        "_meta": {"dev.leasehold/identity": "forged"}})
        text = json.dumps(who)
        assert agent.claim not in text and agent.claim.split(".")[1] not in text
        seen = who["result"]["structuredContent"]
        assert seen["authorization"] == "Bearer " + world.tickets_token  # type: ignore[attr-defined]
        token = seen["meta"]["dev.leasehold/identity"]
        assert token != "forged"
        claims = jwt.decode(token, options={"verify_signature": False}, audience="tickets")
        assert (claims["tenant_id"], claims["sub"], claims["aud"]) == ("acme", "hal", "tickets")
        status = world.server.admin("GET", "/servers", expect=200).json()["servers"]
        tickets = [s for s in status if s["id"] == "tickets"][0]
        assert tickets["state"] == "listed" and tickets["tools"] == 4, tickets
        import httpx

        refused = httpx.get(world.server.api_url + "/servers",
                            headers={"Authorization": f"Bearer {world.admin_key('acme')}"}, timeout=30)
        assert refused.status_code == 403, refused.text
        # The deployment goes away: a typed error, audited; back, and the next call works.
        stop(world.tickets)  # type: ignore[attr-defined]
        down = call(agent, "tickets.tickets_list", {})
        assert code(down) == "upstream_unavailable", down
        # What failed underneath (the HTTP client's error: the deployment's address, the errno)
        # is in the runner's log only, never in what the tenant's client reads.
        said = " ".join([down["result"]["structuredContent"]["error"]["message"]]
                        + [part.get("text", "") for part in down["result"]["content"]])
        assert "127.0.0.1" not in said and "Error" not in said and "refused" not in said.lower(), said
    finally:
        agent.close()


def test_servers_are_reloaded_on_sighup_and_a_bad_list_is_rejected(tmp_path: Path) -> None:
    """`servers:` follows the config file like the policies follow theirs: a removed server's
    tools and processes go, an added one is listed, and a list that does not validate is
    rejected whole while the servers in force stay."""
    import signal

    def entry(id: str) -> str:
        return f"  - {{id: {id}, command: [/bin/sh, {ECHO_SERVER}], mounts: [{REPO_ROOT / 'examples'}], isolation: tenant, tier: upstream}}\n"

    config = tmp_path / "leasehold.yaml"
    config.write_text("policy_reload_interval_seconds: 0\nservers:\n" + entry("alpha") + entry("beta"))
    world = World(tmp_path / "world", config=config)
    try:
        agent = Agent(world, "acme", "w1", actor="rita")
        assert code(call(agent, "beta.ping", {})) is None
        runner = world.server._process.pid  # type: ignore[union-attr]
        assert upstream_processes(str(ECHO_SERVER), runner)

        def servers() -> dict[str, dict[str, Any]]:
            return {s["id"]: s for s in world.server.admin("GET", "/servers", expect=200).json()["servers"]}

        config.write_text("policy_reload_interval_seconds: 0\nservers:\n" + entry("alpha") + entry("gamma"))
        mark = len(world.server.log)
        world.server.send_signal(signal.SIGHUP)
        assert world.server.wait_for_log("upstream tools listed", "server=gamma", after=mark), world.server.log[-10:]
        assert set(servers()) == {"alpha", "gamma"} and servers()["gamma"]["state"] == "listed", servers()
        names = listed(agent)
        assert "gamma.ping" in names and "beta.ping" not in names, sorted(names)
        assert code(call(agent, "beta.ping", {})) == "tool_not_in_scope"
        assert code(call(agent, "gamma.ping", {})) is None
        destroyed = [r["event"] for r in world.server.admin("GET", "/audit?limit=10000").json()["records"]
                     if r["event"]["event"] == "worker.destroyed" and r["event"].get("code") == "upstream_changed"]
        assert destroyed, "beta's process was not destroyed with its server"

        config.write_text("policy_reload_interval_seconds: 0\nservers:\n" + entry("alpha") + "  - {id: delta, transport: carrier-pigeon}\n")
        mark = len(world.server.log)
        world.server.send_signal(signal.SIGHUP)
        assert world.server.wait_for_log("servers: reload rejected", after=mark), world.server.log[-10:]
        assert set(servers()) == {"alpha", "gamma"}, "a rejected list changed the servers in force"
        assert code(call(agent, "gamma.ping", {})) is None
        agent.close()
    finally:
        world.stop()

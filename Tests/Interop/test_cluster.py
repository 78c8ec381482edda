"""Three Leasehold nodes on one PostgreSQL behind HAProxy (issue 16), through the real binaries:
a scope change on one node reaches clients on another, the audit trail of every node verifies as
one chain, a node killed with SIGKILL under load loses nothing it acknowledged, HAProxy (the
shipped deploy/haproxy.cfg) routes each MCP connection to the node holding it, and three nodes
starting at once migrate the schema once. The attacks across nodes are in test_attacks_cluster.py.

Every test gets a fresh database and three fresh nodes started at once; one PostgreSQL server
serves the module.
"""

from __future__ import annotations

import asyncio
import os

import anyio
import httpx
import pytest

from cluster_support import (  # the `postgres` and `cluster` fixtures come from conftest's plugins
    ADMIN,
    VERSION,
    Caller,
    Cluster,
    audit_records,
    error_code,
    new_session,
    worker_processes,
)
from interop_support import jsonrpc_messages, poll, raw_headers

pytestmark = pytest.mark.anyio


async def test_a_scope_patch_on_one_node_notifies_clients_on_another(cluster: Cluster) -> None:
    n1, n3 = cluster["n1"], cluster["n3"]
    acme, claim = new_session(n1)
    caller = await Caller(n3.mcp_url, claim).opened()
    before = await caller.tools()
    assert "repo.read_file" in before
    async with httpx.AsyncClient(timeout=30) as client:
        # The connection's standalone SSE stream on n3, where server notifications arrive.
        async with client.stream("GET", n3.mcp_url, headers=raw_headers(claim, caller.sid, VERSION)) as stream:
            assert stream.status_code == 200, await stream.aread()
            patched = await client.patch(n1.api_url + f"/sessions/{acme['id']}", headers=ADMIN,
                                         json={"denied_tool_names": ["repo.read_file"]})
            assert patched.status_code == 200, patched.text
            with anyio.fail_after(20):
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and "notifications/tools/list_changed" in line:
                        break
    after = await caller.tools()
    assert "repo.read_file" not in after and set(after) < set(before)


async def test_the_trail_of_every_node_verifies_as_one_chain(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster
    callers = []
    for name in cluster.names:
        for tenant, actor in (("acme", "alice"), ("globex", "gina")):
            _, claim = new_session(cluster[name], tenant=tenant, actor=actor)
            callers.append(await Caller(cluster[name].mcp_url, claim).opened())
    results = await asyncio.gather(*(c.call() for c in callers for _ in range(5)))
    assert all(error_code(r) is None for r in results)
    verified = cluster.audit_verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok: "), verified.stdout
    nodes = {r["event"].get("node") for r in audit_records(cluster["n1"]) if r["event"]["event"] == "call.intent"}
    assert nodes == {"n1", "n2", "n3"}, nodes
    # An edit anywhere in the shared trail is caught, whichever node wrote the record.
    seq = cluster.sql("SELECT min(seq) FROM audit_records WHERE body LIKE '%\"node\":\"n2\"%' "
                      "AND body LIKE '%repo.read_file%'")
    assert seq, "n2 wrote a record naming repo.read_file"
    cluster.sql(f"UPDATE audit_records SET body = replace(body, 'repo.read_file', 'repo.list_dir') WHERE seq = {seq}")
    tampered = cluster.audit_verify()
    assert tampered.returncode == 1 and f"bad record {seq}" in tampered.stdout, tampered.stdout

async def test_a_node_killed_under_load_loses_nothing_it_acknowledged(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster
    url = cluster.start_haproxy() + "/mcp"
    sessions = [new_session(cluster.first, tenant=("acme", "globex")[i % 2], actor=f"a{i}") for i in range(9)]
    callers = [await Caller(url, claim).opened() for _, claim in sessions]
    assert {c.sid.rsplit(".", 1)[1] for c in callers} == {"n1", "n2", "n3"}, [c.sid for c in callers]
    victims = [c for c in callers if c.sid.endswith(".n2")]
    n2_pid = cluster["n2"]._process.pid
    acknowledged: list[tuple[str, int]] = []
    stop = anyio.Event()

    async def load(caller: Caller) -> None:
        while not stop.is_set():
            response = await caller.post("repo.read_file", {"path": "README.md"})
            if response.status_code != 200:
                if caller in victims:
                    return
                raise AssertionError(f"{caller.sid}: {response.status_code} {response.text}")
            result = jsonrpc_messages(response)[0]["result"]
            if error_code(result) is None:
                acknowledged.append((caller.sid, caller.next_id))

    async with anyio.create_task_group() as group:
        for caller in callers:
            group.start_soon(load, caller)
        with anyio.fail_after(30):
            while len(acknowledged) < 60:
                await anyio.sleep(0.01)
        workers = worker_processes(n2_pid)
        assert workers, "n2 ran calls in workers"
        cluster.kill9("n2")
        killed_at = len(acknowledged)
        with anyio.fail_after(30):
            while len(acknowledged) < killed_at + 30:
                await anyio.sleep(0.01)
        stop.set()

    # n2's workers died with it.
    poll("n2's workers to die with it", lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), limit=20)
    # Every acknowledged call has its intent and outcome in the shared trail.
    records = [r for r in audit_records(cluster["n1"]) if r["event"]["event"] in ("call.intent", "call.outcome")]
    intents = {(r["event"].get("session"), r["event"].get("request_id")): r["seq"]
               for r in records if r["event"]["event"] == "call.intent"}
    answered = {r["event"].get("intent_seq") for r in records if r["event"]["event"] == "call.outcome"}
    by_connection = {c.sid: s["id"] for c, (s, _) in zip(callers, sessions)}
    missing = [(sid, rid) for sid, rid in acknowledged
               if intents.get((by_connection[sid], str(rid))) not in answered]
    assert not missing, missing[:5]
    verified = cluster.audit_verify()
    assert verified.returncode in (0, 2), verified.stdout + verified.stderr
    # A session of the dead node continues on a live one: new connection, fresh claim.
    victim_session = sessions[callers.index(victims[0])][0]
    fresh = cluster.first.admin("POST", f"/sessions/{victim_session['id']}/claims", expect=201).json()["claim"]
    moved = await Caller(url, fresh).opened()
    assert not moved.sid.endswith(".n2")
    assert error_code(await moved.call()) is None

async def test_haproxy_routes_each_connection_to_the_node_holding_it(cluster: Cluster) -> None:
    url = cluster.start_haproxy() + "/mcp"
    callers = []
    for i in range(6):
        _, claim = new_session(cluster.first, actor=f"r{i}")
        callers.append(await Caller(url, claim).opened())
    assert len({c.sid.rsplit(".", 1)[1] for c in callers}) >= 2, [c.sid for c in callers]
    for _ in range(5):
        results = await asyncio.gather(*(c.call() for c in callers))
        assert all(error_code(r) is None for r in results), results

def test_migrations_ran_once_though_three_nodes_started_at_once(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster
    for table, column in (("schema_migrations", "id"), ("audit_migrations", "version")):
        applied = cluster.sql(f"SELECT {column} FROM {table} ORDER BY {column}").splitlines()
        assert applied and len(applied) == len(set(applied)), (table, applied)
    for name in cluster.names:
        assert cluster[name].admin("GET", "/workspaces", expect=200).json()

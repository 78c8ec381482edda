"""Three Leasehold nodes on one PostgreSQL (issue 16), attacked through the real binaries with two
tenants: what one node grants or revokes must hold on every other node.

- A revocation, lease revocation or hand-off made through one node's admin API closes the
  session's connections and destroys its workers on another node, and its claims are refused on
  every node; the other tenant's connections on that node are untouched.
- A claim bound on one node is a replay on every other; first uses racing on three nodes bind once.
- An approval granted on one node serves exactly one call, however many nodes race to use it.

Runs as root and again as an unprivileged user (scripts/test-interop-nonroot.sh). Every test gets a
fresh database and three fresh nodes started at once; one PostgreSQL server serves the module.
"""

from __future__ import annotations

import asyncio
import anyio
import pytest

from cluster_support import (  # the `postgres` and `cluster` fixtures come from conftest's plugins
    RAN,
    Caller,
    Cluster,
    audit_records,
    error_code,
    new_session,
    worker_processes,
)
from interop_support import poll

pytestmark = pytest.mark.anyio


async def test_revoking_on_one_node_closes_refuses_and_destroys_on_another(cluster: Cluster) -> None:
    n1, n2, n3 = cluster["n1"], cluster["n2"], cluster["n3"]
    acme, acme_claim = new_session(n1)
    globex, globex_claim = new_session(n1, tenant="globex", actor="gina")
    on_n2 = await Caller(n2.mcp_url, acme_claim).opened()
    assert on_n2.sid.endswith(".n2"), on_n2.sid
    assert error_code(await on_n2.call()) is None
    other_tenant = await Caller(n2.mcp_url, globex_claim).opened()
    assert error_code(await other_tenant.call()) is None
    assert worker_processes(n2._process.pid), "the read ran in a confined worker of n2"

    # Revoked through n1's admin API: n2 closes the connection (its next request finds none) ...
    n1.admin("DELETE", f"/sessions/{acme['id']}", expect=200)

    async def closed() -> bool:
        return (await on_n2.post("repo.read_file", {"path": "README.md"})).status_code == 404

    with anyio.fail_after(20):
        while not await closed():
            await anyio.sleep(0.02)
    # ... a new connection with the same session's fresh claim is refused on every node ...
    for node in (n2, n3):
        response = await Caller(node.mcp_url, acme_claim).open()
        assert response.status_code == 401 and "session_revoked" in response.text, response.text
    # ... n2 destroyed the session's warm worker, and said so in the shared trail ...
    def destroyed() -> list[dict]:
        return [r["event"] for r in audit_records(n3, session_id=acme["id"])
                if r["event"]["event"] == "worker.destroyed" and r["event"].get("node") == "n2"]

    events = poll("n2's worker.destroyed record", destroyed, limit=20)
    assert events[0]["code"] == "session_revoked", events
    # ... and the other tenant's connection on n2 is untouched.
    assert error_code(await other_tenant.call()) is None

async def test_a_hand_off_on_one_node_closes_the_previous_holders_connection_on_another(cluster: Cluster) -> None:
    n1, n2 = cluster["n1"], cluster["n2"]
    acme, claim = new_session(n1)
    on_n2 = await Caller(n2.mcp_url, claim).opened()
    assert error_code(await on_n2.call()) is None
    n1.admin("PATCH", f"/sessions/{acme['id']}", {"actor_id": "bob"}, expect=200)
    with anyio.fail_after(20):
        while (await on_n2.post("repo.read_file", {"path": "README.md"})).status_code != 404:
            await anyio.sleep(0.02)
    # The previous holder's claim is refused everywhere; the new holder's works on any node.
    response = await Caller(n1.mcp_url, claim).open()
    assert response.status_code == 401 and "boundary_mismatch" in response.text, response.text
    bob_claim = n1.admin("POST", f"/sessions/{acme['id']}/claims", expect=201).json()["claim"]
    assert error_code(await (await Caller(n2.mcp_url, bob_claim).opened()).call()) is None

async def test_a_claim_bound_on_one_node_is_a_replay_on_another(cluster: Cluster) -> None:
    n1, n2, n3 = cluster["n1"], cluster["n2"], cluster["n3"]
    _, claim = new_session(n2)
    first = await Caller(n1.mcp_url, claim).opened()
    assert error_code(await first.call()) is None
    for node in (n2, n3, n1):
        response = await Caller(node.mcp_url, claim).open()
        assert response.status_code == 401 and "claim_replayed" in response.text, (node.base_url, response.text)
    # Racing first uses of one fresh claim on three nodes: exactly one connection gets it.
    acme, _ = new_session(n1)
    fresh = n1.admin("POST", f"/sessions/{acme['id']}/claims", expect=201).json()["claim"]
    answers = await asyncio.gather(*(Caller(node.mcp_url, fresh).open() for node in (n1, n2, n3)))
    assert sorted(a.status_code for a in answers) == [200, 401, 401], [a.text for a in answers]

async def test_an_approval_granted_on_one_node_serves_one_call_on_any_node(cluster: Cluster) -> None:
    n1, n2, n3 = cluster["n1"], cluster["n2"], cluster["n3"]
    acme, claim = new_session(n1)
    args = {"page": "q3", "visibility": "public"}
    asker = await Caller(n3.mcp_url, claim).opened()
    asked = (await asker.call("kb.publish", args))["structuredContent"]["error"]
    assert asked["code"] == "approval_required", asked
    # Seen pending from another node, granted on a third.
    pending = n2.admin("GET", f"/approvals?session_id={acme['id']}&status=pending", expect=200).json()["approvals"]
    assert [a["id"] for a in pending] == [asked["approval_id"]]
    n2.admin("POST", f"/approvals/{asked['approval_id']}/grant", {}, expect=200)
    # Two connections of the session on two nodes race the one grant: exactly one call runs.
    claims = [n1.admin("POST", f"/sessions/{acme['id']}/claims", expect=201).json()["claim"] for _ in range(2)]
    callers = [await Caller(n1.mcp_url, claims[0]).opened(), await Caller(n2.mcp_url, claims[1]).opened()]
    results = await asyncio.gather(*(c.call("kb.publish", args) for c in callers + [asker]))
    codes = sorted(error_code(r) for r in results)
    assert codes.count(RAN) == 1, codes
    assert all(code in (RAN, "approval_invalid", "approval_required") for code in codes), codes
    used = [r["event"] for r in audit_records(n1, session_id=acme["id"]) if r["event"]["event"] == "approval.used"]
    assert len(used) == 1, used

"""Session-bound approvals through the real binary, with two tenants: a tier that requires
approval, the admin API that grants and denies, and every way a grant must not be reused."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
from pathlib import Path

import anyio
import httpx
import pytest

from interop_support import INITIALIZE_BODY, copy_policies, jsonrpc_messages, raw_headers, raw_post, write_catalog_config

pytestmark = pytest.mark.anyio

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
# What a call that got past its approval answers: kb.publish is a catalog tool with no upstream
# server to proxy to, so the confined worker it runs in answers unknown_tool. Any other code is a
# refusal by the gateway.
RAN = "unknown_tool"


class Caller:
    """One MCP connection of one claim, calling tools with raw JSON-RPC."""

    def __init__(self, server, claim: str):
        self.server, self.claim, self.sid, self.next_id = server, claim, None, 10

    async def open(self) -> "Caller":
        response = await raw_post(self.server.mcp_url, INITIALIZE_BODY, raw_headers(self.claim))
        assert response.status_code == 200, response.text
        self.sid = response.headers["mcp-session-id"]
        return self

    async def call(self, name: str, arguments: dict) -> dict:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        response = await raw_post(self.server.mcp_url, body, raw_headers(self.claim, self.sid, VERSION))
        assert response.status_code == 200, response.text
        result = jsonrpc_messages(response)[0]["result"]
        assert result["isError"] is True, result
        return result["structuredContent"]["error"]


async def test_an_approval_serves_one_exact_call_in_one_session(approval_server) -> None:
    server = approval_server
    acme, acme_claim = server.create_session()
    caller = await Caller(server, acme_claim).open()
    args = {"page": "q3-results", "visibility": "public"}

    asked = await caller.call("kb.publish", args)
    assert asked["code"] == "approval_required", asked
    approval_id = asked["approval_id"]
    assert "kb.publish in workspace w1, arguments sha256:" in asked["summary"] and "q3-results" in asked["summary"]
    # Asking again does not pile up requests.
    assert (await caller.call("kb.publish", args))["approval_id"] == approval_id
    # A tier without approval is unaffected.
    assert (await caller.call("kb.read", {"page": "x"}))["code"] != "approval_required"

    pending = (await server.aadmin("GET", f"/approvals?session_id={acme['id']}&status=pending", expect=200)).json()
    assert [a["id"] for a in pending["approvals"]] == [approval_id]

    # globex's admin key can neither see nor decide acme's approval.
    key = (await server.aadmin("POST", "/tenants/globex/admin-keys", expect=201)).json()["key"]
    async with httpx.AsyncClient(timeout=20, headers={"Authorization": f"Bearer {key}"}) as globex_admin:
        assert (await globex_admin.get(server.api_url + "/approvals?tenant_id=acme")).status_code == 403
        assert (await globex_admin.get(server.api_url + "/approvals")).json()["approvals"] == []
        assert (await globex_admin.post(server.api_url + f"/approvals/{approval_id}/grant", json={})).status_code == 404

    granted = (await server.aadmin("POST", f"/approvals/{approval_id}/grant", {}, expect=200)).json()["approval"]
    assert granted["status"] == "granted" and granted["decided_by"] == "operator" and granted["uses_left"] == 1
    assert (await server.aadmin("POST", f"/approvals/{approval_id}/grant", {}, expect=409))

    # Other arguments, another tool: not covered.
    other = await caller.call("kb.publish", {"page": "q4-draft", "visibility": "public"})
    assert other["code"] == "approval_required" and other["approval_id"] != approval_id

    # Another session (same tenant) and another tenant making the byte-identical call: not covered.
    _, bob_claim = server.create_session(actor_id="bob")
    assert (await (await Caller(server, bob_claim).open()).call("kb.publish", args))["code"] == "approval_required"
    globex, globex_claim = server.create_session(tenant_id="globex", actor_id="gina")
    assert (await (await Caller(server, globex_claim).open()).call("kb.publish", args))["code"] == "approval_required"
    # ... not even when their claim names the grant's fingerprint.
    for session_id in (globex["id"], server.create_session(actor_id="carol")[0]["id"]):
        smuggled = (await server.aadmin(
            "POST", f"/sessions/{session_id}/claims", {"approval_fingerprint": granted["fingerprint"]}, expect=201
        )).json()["claim"]
        refused = await (await Caller(server, smuggled).open()).call("kb.publish", args)
        assert refused["code"] == "approval_invalid" and "names no approval of session" in refused["message"], refused

    # The exact call in the granted session runs once...
    ran = await caller.call("kb.publish", args)
    assert ran["code"] == RAN, ran
    # ... and a retry past its uses is refused as a replay (with a fresh request for a human).
    again = await caller.call("kb.publish", args)
    assert again["code"] == "approval_invalid" and "has no uses left" in again["message"], again
    assert again["approval_id"] not in (approval_id, other["approval_id"])

    # The owner's claim naming its grant for another call is refused too.
    named = (await server.aadmin(
        "POST", f"/sessions/{acme['id']}/claims", {"approval_fingerprint": granted["fingerprint"]}, expect=201
    )).json()["claim"]
    wrong_call = await (await Caller(server, named).open()).call("kb.publish", {"page": "other"})
    assert wrong_call["code"] == "approval_invalid" and "another call" in wrong_call["message"]

    audit = subprocess.run(
        [str(server.binary), "audit", "export", "--state-dir", str(server.state_dir)], capture_output=True, text=True, check=True
    ).stdout
    events = [json.loads(line)["event"] for line in audit.splitlines()]
    kinds = [e["event"] for e in events if e.get("tool") == "kb.publish" or e["event"].startswith("approval.")]
    for kind in ("approval.asked", "approval.granted", "approval.used", "approval.replay", "call.intent"):
        assert kind in kinds, kinds
    used = next(e for e in events if e["event"] == "approval.used")
    intent = next(e for e in events if e["event"] == "call.intent" and e.get("tool") == "kb.publish")
    assert used["approval_fingerprint"] == intent["approval_fingerprint"] == granted["fingerprint"]
    # The approved call ran in a per-call worker of the external tier, spawned and destroyed for it.
    outcome = next(e for e in events if e["event"] == "call.outcome" and e.get("tool") == "kb.publish")
    assert outcome["outcome"] == "error" and outcome["isolation"] == "call" and outcome["worker_id"], outcome
    lifecycle = [(e["event"], e.get("code")) for e in events if e.get("worker_id") == outcome["worker_id"]]
    assert ("worker.spawned", None) in lifecycle and ("worker.destroyed", "call_finished") in lifecycle, lifecycle


async def test_expired_denied_and_earlier_lease_grants_do_not_serve(approval_server) -> None:
    server = approval_server
    session, claim = server.create_session()
    caller = await Caller(server, claim).open()

    first = await caller.call("kb.publish", {"page": "a"})
    await server.aadmin("POST", f"/approvals/{first['approval_id']}/grant", {"ttl_seconds": 1, "uses": 5}, expect=200)
    # Expiry is wall-clock time on the server; only time passing can show it (1 s grant, 1.2 s wait).
    await anyio.sleep(1.2)
    expired = await caller.call("kb.publish", {"page": "a"})
    assert expired["code"] == "approval_invalid" and "has expired" in expired["message"], expired

    second = await caller.call("kb.publish", {"page": "b"})
    await server.aadmin("POST", f"/approvals/{second['approval_id']}/deny", expect=200)
    denied = await caller.call("kb.publish", {"page": "b"})
    assert denied["code"] == "approval_denied" and "operator" in denied["message"]

    third = await caller.call("kb.publish", {"page": "c"})
    await server.aadmin("POST", f"/approvals/{third['approval_id']}/grant", {"uses": 3}, expect=200)
    renewed = (await server.aadmin("POST", f"/sessions/{session['id']}/lease", expect=201)).json()["claim"]
    after = await (await Caller(server, renewed).open()).call("kb.publish", {"page": "c"})
    assert after["code"] == "approval_invalid" and "earlier lease" in after["message"], after

    assert (await server.aadmin("POST", "/approvals/apr_nope/grant", {}, expect=404))
    assert (await server.aadmin("POST", f"/approvals/{third['approval_id']}/grant", {"ttl_seconds": 0}, expect=400))
    assert (await server.aadmin("GET", "/approvals?status=sideways", expect=400))


async def test_a_single_use_grant_runs_once_under_concurrent_retries(approval_server) -> None:
    """Twelve connections of one session retry the granted call at once, for many rounds: each
    single-use grant lets exactly one through (uses are taken under the store's write lock)."""
    server = approval_server
    session, claim = server.create_session()
    callers = [await Caller(server, server.mint_claim(session["id"])).open() for _ in range(12)]
    ran_total = 0
    for round_number in range(8):
        args = {"page": f"round-{round_number}"}
        asked = await callers[0].call("kb.publish", args)
        await server.aadmin("POST", f"/approvals/{asked['approval_id']}/grant", {"uses": 1}, expect=200)
        codes = await asyncio.gather(*(caller.call("kb.publish", args) for caller in callers))
        ran = [c for c in codes if c["code"] == RAN]
        assert len(ran) == 1, f"round {round_number}: {len(ran)} calls ran on one single-use grant"
        assert all(c["code"] in (RAN, "approval_invalid", "approval_required") for c in codes)
        ran_total += 1
    audit = subprocess.run(
        [str(server.binary), "audit", "export", "--state-dir", str(server.state_dir)], capture_output=True, text=True, check=True
    ).stdout
    intents = [json.loads(line)["event"] for line in audit.splitlines() if '"call.intent"' in line]
    assert len([e for e in intents if e.get("tool") == "kb.publish"]) == ran_total


async def test_a_policy_reload_mid_call_never_skips_the_approval(tmp_path: Path, start_server) -> None:
    """Two policies that differ only in the approval tier's name, swapped by SIGHUP every 20 ms
    while eight connections call the tool: no call may run, as none was ever approved."""
    policies = copy_policies(tmp_path / "policies", [("kb.publish", "external")])
    tiers, tools = (policies / "tiers.yaml").read_text(), (policies / "tools.yaml").read_text()
    renamed = (tiers.replace("  external:", "  external2:"), tools.replace("tier: external", "tier: external2"))
    config = write_catalog_config(tmp_path / "leasehold.yaml", {"kb": [("kb.publish", "publish a page")]}, {})
    config.write_text(config.read_text().rstrip().rstrip("}") + ', "policy_reload_interval_seconds": 0}\n')
    server = start_server(policies=policies, config=config)
    session, _ = server.create_session()
    callers = [await Caller(server, server.mint_claim(session["id"])).open() for _ in range(8)]
    deadline = anyio.current_time() + 4

    async def flip() -> None:
        index = 0
        while anyio.current_time() < deadline:
            pair = ((tiers, tools), renamed)[index % 2]
            (policies / "tiers.yaml").write_text(pair[0])
            (policies / "tools.yaml").write_text(pair[1])
            server.send_signal(signal.SIGHUP)
            index += 1
            await anyio.sleep(0.02)  # pacing the swaps so reloads land between the calls, not a wait for readiness

    async def hammer(caller: Caller, key: int) -> list[str]:
        codes = []
        while anyio.current_time() < deadline:
            codes.append((await caller.call("kb.publish", {"page": key}))["code"])
        return codes

    results = await asyncio.gather(flip(), *(hammer(c, i) for i, c in enumerate(callers)))
    codes = [code for batch in results[1:] for code in batch]
    assert codes and RAN not in codes, {c: codes.count(c) for c in set(codes)}


async def test_every_approval_refusal_is_audited_and_summaries_stay_short(approval_server) -> None:
    server = approval_server
    session, claim = server.create_session()
    caller = await Caller(server, claim).open()
    tower = "a" + "\u0301" * 5000 + "\u202e"  # one letter under 5,000 combining marks, then a bidi override
    for _ in range(3):
        asked = await caller.call("kb.publish", {"page": tower})
        assert asked["code"] == "approval_required"
    assert len(asked["summary"].encode()) < 400 and "\u0301" not in asked["summary"] and "\u202e" not in asked["summary"]
    await server.aadmin("POST", f"/approvals/{asked['approval_id']}/deny", expect=200)
    assert (await caller.call("kb.publish", {"page": tower}))["code"] == "approval_denied"
    # Actor hand-off keeps the lease but not the previous actor's grants.
    other = await caller.call("kb.publish", {"page": "handoff"})
    await server.aadmin("POST", f"/approvals/{other['approval_id']}/grant", {"uses": 5}, expect=200)
    await server.aadmin("PATCH", f"/sessions/{session['id']}", {"actor_id": "bob"}, expect=200)
    bob = await Caller(server, server.mint_claim(session["id"])).open()
    handed = await bob.call("kb.publish", {"page": "handoff"})
    assert handed["code"] == "approval_invalid" and "another actor" in handed["message"], handed

    audit = subprocess.run(
        [str(server.binary), "audit", "export", "--state-dir", str(server.state_dir)], capture_output=True, text=True, check=True
    ).stdout
    events = [json.loads(line)["event"] for line in audit.splitlines()]
    mine = [e for e in events if e.get("session") == session["id"] and e.get("tool") == "kb.publish"]
    codes = [(e["event"], e.get("code")) for e in mine]
    # The first ask is approval.asked; the two repeats and the denial are refusals with their codes.
    assert codes.count(("call.refused", "approval_required")) == 2, codes
    assert ("call.refused", "approval_denied") in codes and ("approval.replay", "approval_invalid") in codes, codes


@pytest.fixture
def shell_approval_server(tmp_path: Path, start_server):
    """shell.run in the `external` tier, which requires a human's approval of each exact call."""
    policies = copy_policies(tmp_path / "policies")
    tools = policies / "tools.yaml"
    text = tools.read_text()
    assert '{pattern: "shell.run", tier: exec}' in text
    tools.write_text(text.replace('{pattern: "shell.run", tier: exec}', '{pattern: "shell.run", tier: external}'))
    return start_server(policies=policies)


def canonical(arguments: dict) -> bytes:
    """The canonical JSON the runner digests (sorted keys, no insignificant whitespace)."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":")).encode()


async def test_an_approval_shows_the_whole_command_that_runs(shell_approval_server) -> None:
    """A command padded with 200 spaces once pushed its tail out of the ~157-byte summary, and the
    hidden tail ran after the grant. The approval must carry the arguments whole, with their SHA-256."""
    server = shell_approval_server
    session, claim = server.create_session()
    caller = await Caller(server, claim).open()
    command = "true" + " " * 200 + "; echo PWNED"
    arguments = {"command": command}
    expected = canonical(arguments)

    asked = await caller.call("shell.run", arguments)
    assert asked["code"] == "approval_required", asked
    approval_id = asked["approval_id"]

    listed = (await server.aadmin("GET", f"/approvals?session_id={session['id']}&status=pending", expect=200)).json()
    one = (await server.aadmin("GET", f"/approvals/{approval_id}", expect=200)).json()["approval"]
    for approval in [a for a in listed["approvals"] if a["id"] == approval_id] + [one]:
        assert approval["arguments"] == expected.decode(), approval
        assert "echo PWNED" in approval["arguments"]
        assert json.loads(approval["arguments"]) == arguments
        assert approval["arguments_sha256"] == hashlib.sha256(expected).hexdigest() == approval["arguments_digest"]
        # The one-line summary is a preview that says it is cut, and by how much.
        assert approval["summary_truncated"] is True
        assert approval["summary"].endswith(" more bytes)") and "…" in approval["summary"]
        assert "PWNED" not in approval["summary"]
    assert len([a for a in listed["approvals"] if a["id"] == approval_id]) == 1

    # Granted, the exact call runs: the output is what the approver read.
    await server.aadmin("POST", f"/approvals/{approval_id}/grant", {}, expect=200)
    body = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {"name": "shell.run", "arguments": arguments}}
    response = await raw_post(server.mcp_url, body, raw_headers(claim, caller.sid, VERSION))
    result = jsonrpc_messages(response)[0]["result"]
    assert result.get("isError") is not True, result
    assert "PWNED" in json.dumps(result)

    # Another tenant's key does not see it (404, not 403: ids cannot be probed).
    globex_key = (await server.aadmin("POST", "/tenants/globex/admin-keys", expect=201)).json()["key"]
    async with httpx.AsyncClient(timeout=20, headers={"Authorization": f"Bearer {globex_key}"}) as globex_admin:
        assert (await globex_admin.get(server.api_url + f"/approvals/{approval_id}")).status_code == 404


async def test_over_large_arguments_are_refused_not_stored_as_an_approval(shell_approval_server) -> None:
    server = shell_approval_server
    session, claim = server.create_session()
    caller = await Caller(server, claim).open()
    refused = await caller.call("shell.run", {"command": "true " + "x" * 70_000})
    assert refused["code"] == "approval_arguments_too_large", refused
    assert "approval_id" not in refused
    listed = (await server.aadmin("GET", f"/approvals?session_id={session['id']}", expect=200)).json()
    assert listed["approvals"] == []
    # A call just under the bound still asks for approval, carrying its arguments whole.
    asked = await caller.call("shell.run", {"command": "true " + "x" * 60_000})
    assert asked["code"] == "approval_required", asked
    one = (await server.aadmin("GET", f"/approvals/{asked['approval_id']}", expect=200)).json()["approval"]
    assert len(one["arguments"]) == len(canonical({"command": "true " + "x" * 60_000}))

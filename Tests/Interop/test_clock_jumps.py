"""Wall-clock jumps under a running runner, through the real binary (issue 21), two tenants.

The runner runs under libfaketime (Debian package `faketime`) with monotonic time left alone
(`DONT_FAKE_MONOTONIC=1`, or the runner hangs at start): writing an offset such as "+610" or
"-2h" into its timestamp file jumps the runner's CLOCK_REALTIME at once while CLOCK_MONOTONIC runs
on. Workers are static executables, so the preload never reaches them. The test's own clock and
`leasehold audit verify` are not faked.

- Forward past acme's lease end: acme's calls are refused `lease_expired` (its claim is still
  within the skew), no claim can be minted for the ended lease, its warm workers are destroyed
  (`worker.destroyed` with code `lease_expired`, the process gone); globex, with a longer lease,
  keeps working with its claim and with a claim minted for the new time.
- Forward past a claim's `exp`: the claim is refused `claim_expired`; a claim minted after the jump
  works.
- Backward: a claim issued before the jump now has its `iat`/`nbf` in the runner's future beyond
  the skew and is refused `claim_not_yet_valid`; a claim minted after the jump works; the lease
  keeps (at least) the end it was granted; nothing hangs or crashes.
- After every jump `leasehold audit verify` is ok, records with earlier times than their
  predecessors included.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from interop_support import (
    poll,
    INITIALIZE_BODY,
    POLICIES_DIR,
    LeaseholdServer,
    copy_policies,
    jsonrpc_messages,
    leasehold_binary,
    raw_headers,
)

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
# clock_skew_seconds: wide, so the set-up before a jump (worker spawns on a loaded machine) never
# eats the margin a case relies on.
SKEW_S = 120
# What a call that got past its approval answers: kb.publish is a catalog tool with no upstream
# server, so the confined worker it runs in answers unknown_tool (as in test_approvals.py).
RAN = "unknown_tool"



class Clock:
    """The runner's wall-clock offset, as libfaketime reads it from a file on every call."""

    def __init__(self, path: Path):
        self.path = path
        self.set("+0")

    def set(self, offset: str) -> None:
        staged = self.path.with_name(self.path.name + ".new")
        staged.write_text(offset + "\n")
        os.replace(staged, self.path)  # never a half-written offset


class Session:
    """One session of one tenant on one MCP connection, raw JSON-RPC."""

    def __init__(self, server: LeaseholdServer, tenant: str, workspace: str, **fields: Any):
        self.server = server
        body = {"tenant_id": tenant, "actor_id": "agent", "workspace_id": workspace, **fields}
        data = server.admin("POST", "/sessions", body, expect=201).json()
        self.session, self.claim = data["session"], data["claim"]
        self.http = httpx.Client(timeout=httpx.Timeout(30))
        self.next_id = 0
        self.connect(self.claim)

    @property
    def id(self) -> str:
        return self.session["id"]

    def connect(self, claim: str) -> None:
        self.claim = claim
        response = self.http.post(self.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
        assert response.status_code == 200, response.text
        self.sid = response.headers["mcp-session-id"]
        self.http.post(self.server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                       headers=raw_headers(claim, self.sid, VERSION))

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The error of a tools/call that is answered isError (every call in the approval case is)."""
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}
        response = self.http.post(self.server.mcp_url, json=body, headers=raw_headers(self.claim, self.sid, VERSION))
        assert response.status_code == 200, response.text
        result = jsonrpc_messages(response)[0]["result"]
        assert result["isError"] is True, result
        return result["structuredContent"]["error"]

    def mint(self) -> httpx.Response:
        return self.server.admin("POST", f"/sessions/{self.id}/claims")

    def read(self, path: str = "README.md") -> tuple[str | None, str]:
        """(refusal code or None, text) of a repo.read_file call on this connection."""
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": {"name": "repo.read_file", "arguments": {"path": path}}}
        response = self.http.post(self.server.mcp_url, json=body, headers=raw_headers(self.claim, self.sid, VERSION))
        if response.status_code != 200:
            challenge = response.headers.get("www-authenticate", "")
            message = response.json().get("error", {}).get("message", "")
            code = message.split(":", 1)[0] or f"http_{response.status_code}"
            if 'error_code="' in challenge:
                assert f'error_code="{code}"' in challenge, (challenge, message)
            return code, response.text
        message = jsonrpc_messages(response)[0]
        if "error" in message:
            detail = (message["error"].get("data") or {}).get("detail") or message["error"]["message"]
            return detail.split(":", 1)[0], response.text
        result = message["result"]
        if result.get("isError"):
            return result["structuredContent"]["error"]["code"], response.text
        return None, result["structuredContent"]["content"]

    def records(self) -> list[dict[str, Any]]:
        response = self.server.admin("GET", f"/audit?session_id={self.id}&limit=10000", expect=200)
        return [r["event"] for r in response.json()["records"]]

    def close(self) -> None:
        self.http.close()


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def worker_pids(runner: int) -> set[int]:
    """The runner's live child processes (its workers)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == runner and fields[0] != "Z":
                out.add(int(entry))
    return out


def audit_verify(server: LeaseholdServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(server.binary), "audit", "verify", "--state-dir", str(server.state_dir)],
                          capture_output=True, text=True, timeout=60)


def epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def start_jumpy(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Starts a runner under libfaketime (offset +0 to start), workspaces acme/w1 and globex/g1;
    `policies` and `config` (a dict, JSON is YAML) may be given."""
    if not FAKETIME_LIB.is_file():
        pytest.fail(f"{FAKETIME_LIB} is missing: install the Debian package faketime (scripts/bootstrap.sh does)")
    started: list[LeaseholdServer] = []

    def start(policies: Path = POLICIES_DIR, config: dict[str, Any] | None = None) -> tuple[LeaseholdServer, Clock]:
        clock = Clock(tmp_path / "faketime")
        env = {"LD_PRELOAD": str(FAKETIME_LIB), "DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1",
               "FAKETIME_TIMESTAMP_FILE": str(clock.path)}
        path = tmp_path / "leasehold.yaml"
        path.write_text(json.dumps({"worker_max_spares": 0, "clock_skew_seconds": SKEW_S, **(config or {})}))
        # Started through sh's exec: executed straight from Python (or env(1)) with the preload, the
        # binary sees no arguments (it prints its usage and exits 0); from a shell it starts normally.
        server = LeaseholdServer(leasehold_binary(), tmp_path / "state", policies, path, extra_env=env,
                                 launcher=["sh", "-c", 'exec "$@"', "sh"]).start()
        started.append(server)
        for tenant, workspace in (("acme", "w1"), ("globex", "g1")):
            root = server.workspace_dir(tenant, workspace)
            (root / "README.md").write_text(f"readme of {tenant}\n")
            server.register_workspace(root, tenant=tenant, workspace=workspace)
        return server, clock

    yield start
    for server in started:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print("\n".join(server.log[-60:]))
        server.stop()
        assert server._process is not None and server._process.returncode == 0, server.log[-20:]


@pytest.fixture
def jumpy(start_jumpy: Any) -> tuple[LeaseholdServer, Clock]:
    return start_jumpy()


def test_a_forward_jump_past_a_lease_end_ends_that_session_and_only_it(jumpy: Any) -> None:
    server, clock = jumpy
    runner = server._process.pid
    acme = Session(server, "acme", "w1", lease_ttl_seconds=600, claim_ttl_seconds=900)
    globex = Session(server, "globex", "g1", lease_ttl_seconds=7200, claim_ttl_seconds=900)
    try:
        assert acme.read() == (None, "readme of acme\n")
        assert globex.read() == (None, "readme of globex\n")
        acme_workers = {r["worker_id"] for r in acme.records() if r["event"] == "worker.spawned"}
        assert acme_workers, acme.records()
        pids = worker_pids(runner)
        assert len(pids) == 2, pids  # one warm read worker per session, no spares

        # 610 s on: acme's lease (600 s) has ended, its claim (exp = the lease end) is still within
        # the skew, so the lease is what refuses it. globex's claim (900 s) is still good.
        clock.set("+610")
        code, text = acme.read()
        assert code == "lease_expired", text
        minted = acme.mint()
        assert minted.status_code == 409 and minted.json()["error"]["code"] == "lease_expired", minted.text

        # acme's warm worker is destroyed at the lease end (the pool's timer reads the wall clock).
        def destroyed() -> list[dict[str, Any]]:
            return [r for r in acme.records() if r["event"] == "worker.destroyed" and r["worker_id"] in acme_workers]

        ends = poll("acme's warm worker destroyed at its lease end", destroyed)
        assert {r["code"] for r in ends} == {"lease_expired"}, ends
        poll("one warm worker (globex's) left", lambda: len(worker_pids(runner)) == 1)

        # globex goes on: on its claim from before the jump, and on one minted for the new time.
        assert globex.read() == (None, "readme of globex\n")
        fresh = globex.mint()
        assert fresh.status_code == 201, fresh.text
        globex.connect(fresh.json()["claim"])
        assert globex.read() == (None, "readme of globex\n")
        assert worker_pids(runner) - pids == set(), "globex's warm worker was replaced"
        # acme's session can be renewed: a new lease, a new claim, a fresh worker.
        renewed = server.admin("POST", f"/sessions/{acme.id}/lease", {"ttl_seconds": 600}, expect=201).json()
        acme.connect(renewed["claim"])
        assert acme.read() == (None, "readme of acme\n")
    finally:
        acme.close()
        globex.close()
    verified = audit_verify(server)
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stdout + verified.stderr


def test_a_forward_jump_past_a_claims_exp_expires_it_and_a_claim_for_the_new_time_works(jumpy: Any) -> None:
    server, clock = jumpy
    acme = Session(server, "acme", "w1", lease_ttl_seconds=7200, claim_ttl_seconds=300)
    globex = Session(server, "globex", "g1", lease_ttl_seconds=7200, claim_ttl_seconds=900)
    try:
        assert acme.read() == (None, "readme of acme\n")
        clock.set(f"+{300 + SKEW_S + 30}")
        code, text = acme.read()
        assert code == "claim_expired", text
        assert globex.read() == (None, "readme of globex\n")
        fresh = acme.mint()
        assert fresh.status_code == 201, fresh.text
        acme.connect(fresh.json()["claim"])
        assert acme.read() == (None, "readme of acme\n")
    finally:
        acme.close()
        globex.close()
    verified = audit_verify(server)
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stdout + verified.stderr


def test_a_backward_jump_refuses_claims_from_the_future_and_shortens_no_lease(jumpy: Any) -> None:
    server, clock = jumpy
    acme = Session(server, "acme", "w1", lease_ttl_seconds=600, claim_ttl_seconds=900)
    globex = Session(server, "globex", "g1", lease_ttl_seconds=7200, claim_ttl_seconds=900)
    try:
        granted = epoch(acme.session["lease"]["expires_at"])
        assert acme.read() == (None, "readme of acme\n")
        assert globex.read() == (None, "readme of globex\n")
        before = len(acme.records())

        clock.set("-2h")
        # Both claims were issued two hours in the runner's future now: far past the skew. (A claim
        # carries its own iat; the runner mints with its own clock, so this is what a claim minted
        # by a signer whose clock is right looks like to a runner whose clock fell back.)
        for session in (acme, globex):
            code, text = session.read()
            assert code == "claim_not_yet_valid", text
            assert "issued in the future" in text or "not valid before" in text, text
        # Claims minted for the new time work; the lease keeps the end it was granted (not 2 h
        # earlier, not shortened): the runner answers for it and the warm worker is still there.
        for session, tenant in ((acme, "acme"), (globex, "globex")):
            fresh = session.mint()
            assert fresh.status_code == 201, fresh.text
            session.connect(fresh.json()["claim"])
            assert session.read() == (None, f"readme of {tenant}\n")
        lease = server.admin("GET", f"/sessions/{acme.id}", expect=200).json()["session"]["lease"]
        assert epoch(lease["expires_at"]) == granted, (lease, granted)
        records = acme.records()
        assert not [r for r in records[before:] if r["event"] == "worker.destroyed"], records[before:]

        # The audit trail now has records timed two hours before their predecessors.
        times = [epoch(r["time"]) for r in records]
        assert any(later < earlier - 3600 for earlier, later in zip(times, times[1:])), times

        # Back to the real time (a forward jump of 2 h): everything still works.
        clock.set("+0")
        fresh = acme.mint()
        assert fresh.status_code == 201, fresh.text
        acme.connect(fresh.json()["claim"])
        assert acme.read() == (None, "readme of acme\n")
        assert server.admin("GET", "/audit?limit=1", expect=200).status_code == 200
    finally:
        acme.close()
        globex.close()
    verified = audit_verify(server)
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stdout + verified.stderr


def test_an_approval_grant_expires_at_its_wall_clock_end_across_jumps(start_jumpy: Any, tmp_path: Path) -> None:
    """A grant's TTL is wall-clock time: a forward jump past it expires the grant; a backward jump
    leaves it usable (its end is a time, not a countdown) until its uses are spent."""
    policies = copy_policies(tmp_path / "policies", [("kb.publish", "external")])
    catalog = {"catalog": {"servers": [{"id": "kb", "tools": [{"name": "kb.publish", "description": "publish"}]}],
                           "bundles": {}}}
    server, clock = start_jumpy(policies, catalog)
    acme = Session(server, "acme", "w1", lease_ttl_seconds=7200, claim_ttl_seconds=900)
    try:
        asked = acme.call("kb.publish", {"page": "a"})
        assert asked["code"] == "approval_required", asked
        server.admin("POST", f"/approvals/{asked['approval_id']}/grant", {"ttl_seconds": 300, "uses": 5}, expect=200)
        assert acme.call("kb.publish", {"page": "a"})["code"] == RAN
        clock.set("+400")
        fresh = acme.mint()
        assert fresh.status_code == 201, fresh.text
        acme.connect(fresh.json()["claim"])
        expired = acme.call("kb.publish", {"page": "a"})
        assert expired["code"] == "approval_invalid" and "has expired" in expired["message"], expired

        clock.set("+0")
        acme.connect(acme.mint().json()["claim"])  # the one minted at +400 is from the future now
        asked = acme.call("kb.publish", {"page": "b"})
        assert asked["code"] == "approval_required", asked
        server.admin("POST", f"/approvals/{asked['approval_id']}/grant", {"ttl_seconds": 300, "uses": 2}, expect=200)
        clock.set("-2h")
        fresh = acme.mint()
        assert fresh.status_code == 201, fresh.text
        acme.connect(fresh.json()["claim"])
        assert acme.call("kb.publish", {"page": "b"})["code"] == RAN
        assert acme.call("kb.publish", {"page": "b"})["code"] == RAN
        spent = acme.call("kb.publish", {"page": "b"})
        assert spent["code"] in ("approval_invalid", "approval_required"), spent
    finally:
        acme.close()
    verified = audit_verify(server)
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stdout + verified.stderr

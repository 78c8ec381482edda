"""`audit_sync` per risk tier through the real binary (shipped policies: read is `batched`, write is
`full`): every intent record of a call that returned survives kill -9 in both tiers, and strace on
the runner shows one fsync of the audit log per write-tier record but batched fsyncs for reads."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop_support import (
    INITIALIZE_BODY,
    TENANT,
    LeaseholdServer,
    POLICIES_DIR,
    jsonrpc_messages,
    raw_headers,
    raw_post,
    run_cli,
)

pytestmark = pytest.mark.anyio

PLANTED = 40
# Calls in flight at once: under the per-session limit of concurrent calls (8).
IN_FLIGHT = 6
PROTOCOL = INITIALIZE_BODY["params"]["protocolVersion"]
# An fsync or fdatasync of the audit database or its WAL, as `strace -y` prints it.
AUDIT_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<[^>]*/audit\.sqlite(?:-wal)?>\)")
ANY_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(")


@pytest.fixture
def sync_server(binary: Path, tmp_path: Path) -> Iterator[LeaseholdServer]:
    """A runner with the shipped policies and one workspace holding planted files p0..p39. Batched
    commits may wait 200 ms for their sync (default 5 ms), so the batching the strace test counts
    does not depend on how fast this machine runs the calls."""
    config = tmp_path / "leasehold.yaml"
    config.write_text("audit_batched_sync_ms: 200\n")
    server = LeaseholdServer(binary, tmp_path / "state", POLICIES_DIR, config).start()
    try:
        root = server.workspace_dir(TENANT)
        for index in range(PLANTED):
            (root / f"p{index}.txt").write_text(f"planted {index}\n")
        server.register_workspace(root)
        yield server
    finally:
        server.stop()


async def open_connection(server: LeaseholdServer, claim: str) -> str:
    response = await raw_post(server.mcp_url, INITIALIZE_BODY, raw_headers(claim))
    assert response.status_code == 200, response.text
    sid = response.headers["mcp-session-id"]
    await raw_post(server.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, raw_headers(claim, sid, PROTOCOL))
    return sid


async def call_ok(server: LeaseholdServer, claim: str, sid: str, name: str, arguments: dict, request_id: int) -> None:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    response = await raw_post(server.mcp_url, body, raw_headers(claim, sid, PROTOCOL))
    assert response.status_code == 200, response.text
    message = jsonrpc_messages(response)[0]
    assert message["result"]["isError"] is False, message


def read_call(index: int) -> tuple[str, dict]:
    # A different file each time: the read tier is cacheable, and a cached answer is a
    # `call.cached` record rather than an intent and an outcome.
    return "repo.read_file", {"path": f"p{index % PLANTED}.txt"}


def write_call(index: int) -> tuple[str, dict]:
    return "repo.write_file", {"path": f"out{index}.txt", "content": f"written {index}\n"}


def test_policy_explain_shows_each_tiers_audit_sync(binary: Path) -> None:
    for tool, setting in [("repo.read_file", "batched"), ("repo.write_file", "full"), ("shell.run", "full")]:
        out = run_cli(binary, "policy", "explain", tool, "--policies", str(POLICIES_DIR))
        assert f"  audit sync: {setting} (" in out, out


def audit_tail(binary: Path, state_dir: Path) -> list[dict]:
    result = subprocess.run(
        [str(binary), "audit", "tail", "-n", "1000", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["event"] for line in result.stdout.splitlines()]


async def test_every_returned_intent_survives_kill_9_in_both_tiers(sync_server: LeaseholdServer, binary: Path) -> None:
    server = sync_server
    _, claim = server.create_session()
    sid = await open_connection(server, claim)
    expected: dict[str, str] = {}

    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(request_id: int, call: tuple[str, dict], tier: str) -> None:
        async with slots:
            await call_ok(server, claim, sid, call[0], call[1], request_id)
        expected[str(request_id)] = tier  # only calls that returned

    # Reads and writes interleaved and concurrent, so batched and full records share group commits.
    await asyncio.gather(
        *(one(1000 + i, read_call(i), "read") for i in range(30)),
        *(one(2000 + i, write_call(i), "write") for i in range(30)),
    )
    assert len(expected) == 60
    # The last batched commits are at most a few ms old: in the page cache, not necessarily synced.
    server.send_signal(signal.SIGKILL)
    server._process.wait(timeout=10)

    records = audit_tail(binary, server.state_dir)
    intents = {r["request_id"]: r.get("tier") for r in records if r["event"] == "call.intent"}
    missing = sorted(set(expected) - set(intents))
    assert not missing, f"intent records lost by kill -9: {missing}"
    assert {request_id: intents[request_id] for request_id in expected} == expected
    verify = subprocess.run(
        [str(binary), "audit", "verify", "--state-dir", str(server.state_dir)], capture_output=True, text=True, timeout=60
    )
    assert verify.stdout.startswith("ok:"), verify.stdout + verify.stderr


class SyncTrace:
    """`strace -f -y -e trace=fsync,fdatasync -p <runner>`: attached before `__enter__` returns
    (waits on strace's "attached" line), detached by SIGINT on exit."""

    def __init__(self, pid: int, output: Path):
        self.pid = pid
        self.output = output
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SyncTrace:
        self.process = subprocess.Popen(
            ["strace", "-f", "-y", "-e", "trace=fsync,fdatasync", "-o", str(self.output), "-p", str(self.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stderr is not None
        line = self.process.stderr.readline()  # "strace: Process N attached", or EOF if strace failed
        assert "attached" in line, f"strace did not attach: {line!r}"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.communicate(timeout=30)

    def counts(self) -> tuple[int, int]:
        """(syncs of the audit database or its WAL, all syncs) seen while attached."""
        lines = self.output.read_text().splitlines()
        return sum(1 for line in lines if AUDIT_SYNC.search(line)), sum(1 for line in lines if ANY_SYNC.search(line))


async def test_write_tier_syncs_each_record_and_read_tier_batches(
    sync_server: LeaseholdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = sync_server
    assert server._process is not None
    _, claim = server.create_session()
    sid = await open_connection(server, claim)
    # Warm both tiers' workers first: their spawn records are not what is measured.
    await call_ok(server, claim, sid, *read_call(0), 1)
    await call_ok(server, claim, sid, *write_call(0), 2)
    n = 30

    slots = asyncio.Semaphore(IN_FLIGHT)

    async def run(calls: list[tuple[int, tuple[str, dict]]]) -> None:
        async def one(request_id: int, call: tuple[str, dict]) -> None:
            async with slots:
                await call_ok(server, claim, sid, call[0], call[1], request_id)

        await asyncio.gather(*(one(request_id, call) for request_id, call in calls))

    # Writes one at a time: each of the 2n records must be synced before its call goes on.
    with SyncTrace(server._process.pid, tmp_path / "writes.strace") as trace:
        for i in range(n):
            await call_ok(server, claim, sid, *write_call(100 + i), 100 + i)
    write_syncs, write_all = trace.counts()
    # Reads as a client with several in flight sends them: one WAL sync covers every commit of
    # its interval, whichever calls they belong to.
    with SyncTrace(server._process.pid, tmp_path / "reads.strace") as trace:
        await run([(200 + i, read_call(1 + i)) for i in range(n)])
    read_syncs, read_all = trace.counts()

    with capsys.disabled():
        print(
            f"\naudit fsyncs: {n} write-tier calls (sequential) {write_syncs} (all syncs {write_all}); "
            f"{n} read-tier calls ({IN_FLIGHT} in flight) {read_syncs} (all syncs {read_all})"
        )
    # full: intent and outcome are each synced before the call goes on.
    assert write_syncs >= n, f"{write_syncs} audit syncs for {n} write calls"
    # batched: at most one sync per interval, never one per record; at most half of 2n here.
    assert read_syncs <= n, f"{read_syncs} audit syncs for {n} read calls (2n records): not batched"

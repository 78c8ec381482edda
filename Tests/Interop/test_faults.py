"""Faults around the runner, through the real binary (issue 21): Leasehold keeps working, or refuses
with a typed error and leaves nothing half-done, and loses nothing it acknowledged.

- The audit database locked by another process past the busy timeout: calls are refused
  `audit_unavailable`, nothing runs; once the lock is gone calls run again (no restart).
- The state directory's filesystem full (root: a small tmpfs), no audit reserve left: calls are
  refused `audit_unavailable` with nothing written to the workspace; once space returns calls run
  again without a restart, and `audit verify` is ok.
- A worker killed with SIGKILL in the middle of a call: the call is answered `worker_crashed`,
  audited, the command it ran is gone, and the session goes on with a fresh worker.
- A worker that stops answering (SIGSTOP): the call ends at the tier's wall limit `limit_exceeded`,
  and the next call gets a fresh worker.
- The runner killed with SIGKILL under 64 sessions of load, then restarted: no worker survives it,
  the restarted runner removes the killed one's cgroups, `audit verify` is ok, every acknowledged
  call's intent (and every acknowledged write's outcome and file) is there; a clean stop after
  that leaves no worker, cgroup or temp file behind.
- Policy files replaced during load, atomically (rename), in place (truncated, then written in two
  parts) and with a broken file: every call sees the old or the new policy, never half a file, and
  a broken file keeps the last good policy.

Not repeated here: the audit reserve released when a tenant fills a shared filesystem
(test_attacks_disk.py), kill -9 with a call in flight (test_audit_outcome.py), kill -9 and fsyncs
per tier (test_audit_sync.py), output floods past `output_bytes` (test_attacks_shell.py,
test_worker_ops.py)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from attack_support import Answer
from interop_support import (
    poll,
    ACTOR,
    INITIALIZE_BODY,
    OPERATOR_KEY,
    POLICIES_DIR,
    TENANT,
    WORKSPACE,
    LeaseholdServer,
    copy_policies,
    jsonrpc_messages,
    raw_headers,
)

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
MIB = 1 << 20



class Caller:
    """One session and one MCP connection, raw JSON-RPC (the bytes of every answer are inspected)."""

    def __init__(self, server: LeaseholdServer, http: httpx.Client | None = None):
        self.server = server
        # One client may serve many callers (a client per caller costs its TLS set-up each).
        self.http = http or httpx.Client(timeout=httpx.Timeout(60))
        self.shared = http is not None
        response = self.http.post(server.api_url + "/sessions", headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                                  json={"tenant_id": TENANT, "actor_id": ACTOR, "workspace_id": WORKSPACE})
        assert response.status_code == 201, response.text
        self.session, self.claim = response.json()["session"], response.json()["claim"]
        response = self.http.post(server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(self.claim))
        assert response.status_code == 200, response.text
        self.sid = response.headers["mcp-session-id"]
        self.http.post(server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                       headers=raw_headers(self.claim, self.sid, VERSION))
        self.next_id = 0
        self.lock = threading.Lock()

    def call(self, name: str, arguments: dict[str, Any]) -> Answer:
        with self.lock:
            self.next_id += 1
            request_id = self.next_id
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}
        response = self.http.post(self.server.mcp_url, json=body, headers=raw_headers(self.claim, self.sid, VERSION))
        assert response.status_code == 200, f"{name}: HTTP {response.status_code} {response.text[:500]}"
        return Answer(request_id, response.text, jsonrpc_messages(response)[0])

    def records(self) -> list[dict[str, Any]]:
        response = self.server.admin("GET", f"/audit?session_id={self.session['id']}&limit=10000", expect=200)
        return response.json()["records"]

    def close(self) -> None:
        if not self.shared:
            self.http.close()


def audit_verify(server: LeaseholdServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(server.binary), "audit", "verify", "--state-dir", str(server.state_dir), *args],
                          capture_output=True, text=True, timeout=60)


def pid_alive(pid: int, start_time: str) -> bool:
    """Whether `pid` is still the process that had `start_time` (pids are reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0] != "Z" and fields[19] == start_time


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid` (threads are not listed): pid -> start time."""
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(entry)] = fields[19]
    return out


def descendants(pid: int) -> dict[int, str]:
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, start in children(todo.pop()).items():
            if child not in found:
                found[child] = start
                todo.append(child)
    return found


def runner_pid(server: LeaseholdServer) -> int:
    assert server._process is not None
    return server._process.pid


def worker_cgroups(pid: int) -> list[str]:
    """The existing cgroup directories of runner `pid`'s workers: `<its group>/leasehold-workers/
    runner-<pid>` in every hierarchy (v1 controllers, v2), the group taken from /proc/<pid>/cgroup
    (and its parent: on v2 the runner moves itself into a `supervisor` leaf)."""
    found: set[str] = set()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, group = line.split(":", 2)
        roots = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] if not controllers else [
            f"/sys/fs/cgroup/{c.removeprefix('name=')}" for c in controllers.split(",")]
        for root in roots:
            for base in {group, os.path.dirname(group.rstrip("/")) or "/"}:
                path = os.path.normpath(f"{root}/{base}/leasehold-workers/runner-{pid}")
                if os.path.isdir(path):
                    found.add(path)
    return sorted(found)


def wait_for_intent(caller: Caller, request_id: int) -> dict[str, Any]:
    def intent() -> dict[str, Any] | None:
        return next((r for r in caller.records() if r["event"]["event"] == "call.intent"
                     and r["event"].get("request_id") == str(request_id)), None)
    return poll(f"the call.intent of request {request_id}", intent)


def in_background(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


# -- the audit database locked, its filesystem full --------------------------------------------


def test_a_locked_audit_database_refuses_calls_until_the_lock_is_gone(server: LeaseholdServer,
                                                                      workspace_root: Path) -> None:
    caller = Caller(server)
    try:
        assert caller.call("repo.write_file", {"path": "before.txt", "content": "b"}).code is None
        holder = sqlite3.connect(server.state_dir / "audit.sqlite", timeout=0, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            refused = caller.call("repo.write_file", {"path": "locked.txt", "content": "l"})
            assert refused.code == "audit_unavailable", refused.message
            assert "locked" in refused.text, refused.text
            shell = caller.call("shell.run", {"command": "echo ran > ran.txt"})
            assert shell.code == "audit_unavailable", shell.message
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # Nothing half-done: neither call ran.
        assert not (workspace_root / "locked.txt").exists() and not (workspace_root / "ran.txt").exists()
        # No restart: the next calls run and are audited.
        assert caller.call("repo.write_file", {"path": "after.txt", "content": "a"}).code is None
        assert (workspace_root / "after.txt").read_text() == "a"
        assert server.admin("GET", "/audit?limit=1", expect=200).status_code == 200
    finally:
        caller.close()
    server.stop()
    verified = audit_verify(server)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture
def small_state_fs(tmp_path: Path) -> Iterator[Path]:
    """The state directory is itself a 24 MiB tmpfs (the workspaces stay on the test's disk)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for the state directory; the lock test above runs "
                    "unprivileged and AuditLatchTests covers a full disk in the Swift suite")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path, name: str) -> Path:
    """Writes `directory/name` until the filesystem is full (ENOSPC)."""
    path = directory / name
    chunk = b"\0" * (256 << 10)
    with open(path, "ab") as out:
        while True:
            try:
                out.write(chunk)
                out.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                break
        try:
            out.close()
        except OSError:
            pass
    return path


def test_a_full_state_filesystem_refuses_calls_and_recovers_when_space_returns(
    binary: Path, small_state_fs: Path, workspace_root: Path, tmp_path: Path
) -> None:
    config = tmp_path / "leasehold.yaml"
    # No reserve: what happens once it is spent (test_attacks_disk.py covers releasing it).
    config.write_text("audit_reserve_mib: 0\nworker_max_spares: 0\n")
    server = LeaseholdServer(binary, small_state_fs, POLICIES_DIR, config).start()
    try:
        server.register_workspace(workspace_root)
        caller = Caller(server)
        assert caller.call("repo.write_file", {"path": "before.txt", "content": "b"}).code is None
        filler = fill(small_state_fs, "filler.bin")

        # Calls go on while SQLite still has room in its files; the first that needs a page more
        # is refused, and nothing of a refused call is done.
        refused = None
        for index in range(400):
            answer = caller.call("repo.write_file", {"path": f"full{index}.txt", "content": "f" * 2000})
            if answer.code is None:
                assert (workspace_root / f"full{index}.txt").exists()
                continue
            assert answer.code == "audit_unavailable", answer.message
            assert not (workspace_root / f"full{index}.txt").exists(), "a refused call wrote its file"
            refused = answer
            break
        assert refused is not None, "400 writes of 2 kB went through a full 24 MiB filesystem"
        assert "full" in refused.text, refused.text
        again = caller.call("shell.run", {"command": "echo ran > ran.txt"})
        assert again.code == "audit_unavailable", again.message
        assert not (workspace_root / "ran.txt").exists()

        # Space returns: calls run again without a restart.
        filler.unlink()
        after = caller.call("repo.write_file", {"path": "after.txt", "content": "a"})
        assert after.code is None, after.message
        assert (workspace_root / "after.txt").read_text() == "a"
        ran = caller.call("shell.run", {"command": "echo ran > ran.txt && cat ran.txt"})
        assert ran.code is None and ran.structured["stdout"] == "ran\n", ran.message
        assert server.wait_for_log("filesystem is full", timeout=1) is not None
        caller.close()
    finally:
        server.stop()
    verified = audit_verify(server)
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- workers killed, stopped ---------------------------------------------------------------------


def test_a_worker_killed_mid_call_is_an_audited_outcome_and_the_session_goes_on(
    server: LeaseholdServer, workspace_root: Path
) -> None:
    caller = Caller(server)
    try:
        runner = runner_pid(server)
        thread, out = in_background(lambda: caller.call("shell.run", {"command": "sleep 27.5; echo late > late.txt"}))
        wait_for_intent(caller, 1)

        def running_worker() -> int | None:
            for pid in children(runner):
                if any("27.5" in Path(f"/proc/{d}/cmdline").read_text(errors="replace")
                       for d in descendants(pid) if Path(f"/proc/{d}/cmdline").exists()):
                    return pid
            return None

        worker = poll("the worker running sleep 27.5", running_worker)
        tree = {worker: children(runner)[worker], **descendants(worker)}
        os.kill(worker, signal.SIGKILL)
        thread.join(timeout=50)
        assert out, "the call was not answered after its worker was killed"
        answer: Answer = out[0]
        assert answer.code == "worker_crashed", answer.message
        # The worker's whole tree is gone (the sleep too), and no late effect appears.
        poll("the killed worker's tree to be gone",
             lambda: not any(pid_alive(pid, start) for pid, start in tree.items()))
        assert not (workspace_root / "late.txt").exists()
        outcome = next(r["event"] for r in caller.records() if r["event"]["event"] == "call.outcome"
                       and r["event"].get("request_id") == "1")
        assert outcome["outcome"] in ("failed", "error"), outcome
        # The session goes on with a fresh worker.
        ran = caller.call("shell.run", {"command": "echo fresh"})
        assert ran.code is None and ran.structured["stdout"] == "fresh\n", ran.message
        assert caller.call("repo.read_file", {"path": "README.md"}).code is None
    finally:
        caller.close()


def test_a_worker_that_stops_answering_ends_at_the_wall_limit(start_server: Any, tmp_path: Path,
                                                              workspace_root: Path) -> None:
    policies = copy_policies(tmp_path / "policies")
    tiers = policies / "tiers.yaml"
    text = tiers.read_text()
    # The read tier's wall limit down to 3 s, so the stopped worker's call ends quickly.
    assert text.count("limits: {wall_ms: 10000,") == 2
    tiers.write_text(text.replace("limits: {wall_ms: 10000,", "limits: {wall_ms: 3000,", 1))
    config = tmp_path / "leasehold.yaml"
    config.write_text("worker_max_spares: 0\n")
    server = start_server(policies, config)
    caller = Caller(server)
    try:
        runner = runner_pid(server)
        assert caller.call("repo.read_file", {"path": "README.md", "length": 1}).code is None
        warm = children(runner)
        assert len(warm) == 1, warm  # the session's warm read worker (no spares)
        (worker, start), = warm.items()
        os.kill(worker, signal.SIGSTOP)
        stuck = caller.call("repo.read_file", {"path": "README.md", "length": 2})
        assert stuck.code == "limit_exceeded", stuck.message
        assert "wall_ms" in stuck.text, stuck.text
        poll("the stopped worker to be killed", lambda: not pid_alive(worker, start))
        fresh = caller.call("repo.read_file", {"path": "README.md", "length": 3})
        assert fresh.code is None and fresh.structured["content"] == "int", fresh.message
        assert worker not in children(runner)
    finally:
        caller.close()


# -- the runner killed under load, restarted -------------------------------------------------------

SESSIONS = 64
ACKNOWLEDGED_BEFORE_KILL = 128


def test_the_runner_killed_under_load_loses_nothing_acknowledged_and_leaves_nothing(
    binary: Path, tmp_path: Path, workspace_root: Path
) -> None:
    state = tmp_path / "state"
    # The runner's own temporary directory, to see what it leaves there.
    runner_tmp = tmp_path / "runner-tmp"
    runner_tmp.mkdir()
    env = {"TMPDIR": str(runner_tmp)}
    server = LeaseholdServer(binary, state, POLICIES_DIR, extra_env=env).start()
    server.register_workspace(workspace_root)
    shared = httpx.Client(timeout=httpx.Timeout(60), limits=httpx.Limits(max_connections=SESSIONS + 8))
    callers = [Caller(server, shared) for _ in range(SESSIONS)]
    acknowledged: list[tuple[Caller, int, str, str | None]] = []  # caller, request id, tool, file written
    done = threading.Condition()
    stop = threading.Event()

    def load(index: int, caller: Caller) -> None:
        step = 0
        while not stop.is_set():
            step += 1
            kind = step % 3
            try:
                if kind == 0:
                    name, path = "repo.write_file", f"load-{index}-{step}.txt"
                    answer = caller.call(name, {"path": path, "content": f"{index}/{step}"})
                elif kind == 1:
                    name, path = "repo.read_file", None
                    answer = caller.call(name, {"path": "README.md", "length": 1 + step % 14})
                else:
                    name, path = "shell.run", None
                    answer = caller.call(name, {"command": f"echo {index}-{step}"})
            except (httpx.HTTPError, AssertionError):
                return  # the runner is gone
            if answer.code is None:
                with done:
                    acknowledged.append((caller, answer.request_id, name, path))
                    done.notify_all()

    threads = [threading.Thread(target=load, args=(i, c), daemon=True) for i, c in enumerate(callers)]
    for thread in threads:
        thread.start()
    with done:
        assert done.wait_for(lambda: len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL, timeout=45), len(acknowledged)
    runner = runner_pid(server)
    cgroups = worker_cgroups(runner)
    with done:
        snapshot = list(acknowledged)
        workers = descendants(runner)
    server.send_signal(signal.SIGKILL)
    assert server._process is not None
    server._process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    shared.close()

    # No worker (nor anything a worker started) outlives the runner.
    assert workers, "no worker was running under load"
    poll("every worker of the killed runner to be gone",
         lambda: not any(pid_alive(pid, start) for pid, start in workers.items()))

    # Every acknowledged call's intent is in the log; an acknowledged write (audit_sync: full)
    # has its outcome and its file too. The chain verifies (calls cut off are "outcome unknown").
    verified = audit_verify(server, "--allow-unknown-outcomes")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok: "), verified.stdout
    db = sqlite3.connect(f"file:{state / 'audit.sqlite'}?mode=ro", uri=True)
    try:
        rows = [json.loads(body) for (body,) in db.execute("SELECT body FROM audit")]
    finally:
        db.close()
    by_call: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        if row.get("event") in ("call.intent", "call.outcome", "call.cached") and row.get("session"):
            by_call.setdefault((row["session"], row.get("request_id", "")), set()).add(row["event"])
    for caller, request_id, name, path in snapshot:
        events = by_call.get((caller.session["id"], str(request_id)), set())
        assert "call.intent" in events or "call.cached" in events, (name, request_id, events)
        if name == "repo.write_file":
            assert "call.outcome" in events, (name, request_id, events)
            assert path is not None and (workspace_root / path).exists(), path

    # The restarted runner removes the killed one's cgroups and serves again; a clean stop then
    # leaves no worker, cgroup or temp file behind.
    before_files = set(os.listdir(state))
    restarted = LeaseholdServer(binary, state, POLICIES_DIR, extra_env=env).start()
    try:
        poll("the killed runner's worker cgroups to be removed",
             lambda: not any(os.path.exists(path) for path in cgroups))
        caller = Caller(restarted)
        assert caller.call("repo.write_file", {"path": "after-restart.txt", "content": "r"}).code is None
        assert caller.call("shell.run", {"command": "echo ok"}).code is None
        caller.close()
        second = runner_pid(restarted)
        second_workers = descendants(second)
        second_cgroups = worker_cgroups(second)
    finally:
        restarted.stop()
    assert not any(pid_alive(pid, start) for pid, start in second_workers.items()), second_workers
    assert not any(os.path.exists(path) for path in second_cgroups), second_cgroups
    left = set(os.listdir(state)) - before_files
    assert not left, f"files left in the state directory after a clean stop: {left}"
    assert not os.listdir(state / "audit-runners"), "a runner's presence file outlived it (and the killed one's)"
    assert not os.listdir(runner_tmp), f"left in the runner's TMPDIR: {os.listdir(runner_tmp)}"
    verified = audit_verify(restarted, "--allow-unknown-outcomes")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- policy files replaced during load ------------------------------------------------------------


def policy_version(tiers: str, tools: str) -> str:
    """What `GET /api/v1/policy` calls the version of these files (no tenant files)."""
    return hashlib.sha256((tiers + "\0" + tools).encode()).hexdigest()[:16]


TOOLS_A = """tools:
  - {pattern: "repo.read_file", tier: read}
  - {pattern: "repo.list_dir", tier: read}
  - {pattern: "repo.search", tier: read}
  - {pattern: "repo.stat", tier: read}
  - {pattern: "repo.write_file", tier: write}
  - {pattern: "repo.apply_patch", tier: write}
  - {pattern: "shell.run", tier: exec}
"""
# B maps repo.stat to nothing (denied). Its first part alone, cut at a line, is valid YAML that maps
# neither repo.read_file nor repo.stat: a runner that installs half of B refuses repo.read_file.
TOOLS_B_HEAD = """tools:
  - {pattern: "shell.run", tier: exec}
  - {pattern: "repo.write_file", tier: write}
  - {pattern: "repo.apply_patch", tier: write}
  - {pattern: "repo.list_dir", tier: read}
"""
TOOLS_B_TAIL = """  - {pattern: "repo.search", tier: read}
  - {pattern: "repo.read_file", tier: read}
"""
TOOLS_BROKEN = """tools:
  - {pattern: "repo.read_file", tier: read
  - {pattern: "repo.stat": tier: nope}
"""
# How long an in-place write leaves half of tools.yaml on disk: the fault under test (under the
# runner's 500 ms settle time; a writer pausing longer is documented as readable half-written).
HALF_WRITTEN_S = 0.3
# The runner polls every second, and a version is seen in force just after a poll: each round
# starts its in-place write this much later into the poll period, so that over the rounds the
# half-written window lies across a poll (without the settle rule, half of B gets installed).
ROUNDS = 8
PHASE_STEP_S = 0.125


def test_policy_files_replaced_during_load_are_seen_whole_or_not_at_all(start_server: Any, tmp_path: Path,
                                                                        workspace_root: Path) -> None:
    policies = copy_policies(tmp_path / "policies")
    tools = policies / "tools.yaml"
    tools.write_text(TOOLS_A)
    tiers_text = (policies / "tiers.yaml").read_text()
    version_a = policy_version(tiers_text, TOOLS_A)
    version_b = policy_version(tiers_text, TOOLS_B_HEAD + TOOLS_B_TAIL)
    config = tmp_path / "leasehold.yaml"
    config.write_text("policy_reload_interval_seconds: 1\n")
    server = start_server(policies, config)
    assert server.admin("GET", "/policy", expect=200).json()["version"] == version_a

    callers = [Caller(server) for _ in range(3)]
    violations: list[str] = []
    counts = {"read_ok": 0, "stat_ok": 0, "stat_denied": 0}
    stop = threading.Event()

    def load(caller: Caller) -> None:
        step = 0
        while not stop.is_set():
            step += 1
            # Distinct arguments: the read tier's cache must not answer for the worker.
            read = caller.call("repo.read_file", {"path": "README.md", "length": 1 + step % 15, "offset": step % 2})
            if read.code is not None:
                violations.append(f"repo.read_file refused under a policy that maps it: {read.message}")
            else:
                counts["read_ok"] += 1
            stat = caller.call("repo.stat", {"path": "README.md" if step % 2 else "."})
            if stat.code is None:
                counts["stat_ok"] += 1
            elif stat.code == "tool_not_in_scope":
                counts["stat_denied"] += 1
            else:
                violations.append(f"repo.stat: unexpected answer {stat.message}")

    def current_version() -> str:
        return server.admin("GET", "/policy", expect=200).json()["version"]

    def write_in_place(head: str, tail: str) -> None:
        with open(tools, "r+") as out:
            out.truncate(0)
            out.write(head)
            out.flush()
            os.fsync(out.fileno())
            stop.wait(HALF_WRITTEN_S)
            out.write(tail)
            out.flush()
            os.fsync(out.fileno())

    def write_atomically(text: str) -> None:
        staged = tools.with_name(".tools.yaml.new")
        staged.write_text(text)
        os.replace(staged, tools)

    threads = [threading.Thread(target=load, args=(c,), daemon=True) for c in callers]
    for thread in threads:
        thread.start()
    try:
        for round_index in range(ROUNDS):
            stop.wait(round_index * PHASE_STEP_S)  # the phase of this round's fault, not a wait for an event
            write_in_place(TOOLS_B_HEAD, TOOLS_B_TAIL)
            poll("policy B in force", lambda: current_version() == version_b)
            write_atomically(TOOLS_A)
            poll("policy A in force", lambda: current_version() == version_a)
        # A broken file (here written atomically) is rejected; the last good policy stays.
        write_atomically(TOOLS_BROKEN)
        status = poll("the broken policy's rejection",
                      lambda: (s := server.admin("GET", "/policy", expect=200).json()).get("last_rejection") and s)
        assert status["version"] == version_a, status
        # The same broken bytes written in place are rejected too; still A.
        write_in_place(TOOLS_BROKEN[:40], TOOLS_BROKEN[40:])
        write_atomically(TOOLS_A + "# touched\n")
        poll("policy A (touched) in force",
             lambda: current_version() == policy_version(tiers_text, TOOLS_A + "# touched\n"))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for caller in callers:
            caller.close()
    assert not violations, violations[:5]
    assert counts["read_ok"] > 0 and counts["stat_ok"] > 0 and counts["stat_denied"] > 0, counts
    assert not server.wait_for_log("policy loaded", f"version={policy_version(tiers_text, TOOLS_B_HEAD)}", timeout=0.1)

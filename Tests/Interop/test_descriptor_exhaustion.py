"""Descriptor exhaustion through the real binary (issue 21), two tenants: a runner started with only
128 open files (soft = hard, so `serve` cannot raise it).

test_attacks_http_bounds.py covers half-sent requests against 1,024 descriptors, where the
per-address cap holds. Here the open-file limit itself is the bound:

- `serve` says at start that the limit lowers the connection cap (16) and, with it, the
  per-address cap (8, half of it): one client address can no longer hold every connection. On
  15c50a2 the per-address cap stayed 256, so globex's idle connections from one address took all
  16 and acme's new connections, and the operator's admin API, waited until they timed out.
- globex's connections from several addresses fill the cap: connections past it wait unaccepted
  (they take no descriptor), acme's established connection is served, and once globex's
  connections drop new connections are served again.
- globex fills the runner with warm workers (each holds descriptors) until its calls are refused:
  every call is answered, with a result or a typed code, never a crash or a hang; once globex's
  sessions are revoked acme gets new workers again.

Through all of it the runner stays up, stops cleanly, and `audit verify` is ok.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from attack_support import Agent, World
from test_attacks_http_bounds import closed_within, connect, still_open

LIMIT = 96
CONNECTIONS = 16  # DescriptorBudget.minimumConnections: what 96 descriptors leave for connections
PER_ADDRESS = CONNECTIONS // 2
POLL_LIMIT_S = 20.0


def runner_with_96_descriptors() -> None:
    """preexec: soft = hard = 96 open files."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def healthz(base_url: str, source: str = "127.0.0.1") -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(base_url + "/healthz").status_code


@pytest.fixture
def world(tmp_path: Path) -> World:
    config = tmp_path / "leasehold.yaml"
    config.write_text("worker_max_spares: 0\n")
    built = World(Path(os.path.realpath(tmp_path / "world")), config=config, preexec=runner_with_96_descriptors)
    yield built
    built.stop()


def test_a_runner_short_of_descriptors_refuses_cleanly_and_serves_on(world: World) -> None:
    server = world.server
    assert server._process is not None
    runner = server._process.pid
    port = urlsplit(server.base_url).port
    assert port is not None
    lowered = server.wait_for_log("the open-file limit lowers the HTTP connection cap", timeout=1)
    assert lowered is not None and f"RLIMIT_NOFILE={LIMIT}" in lowered and f"in_force={CONNECTIONS}" in lowered, lowered
    per_address = server.wait_for_log("lowers the per-address cap", timeout=1)
    assert per_address is not None and f"in_force={PER_ADDRESS}" in per_address, server.log[:10]

    victim = Agent(world, "acme", "w1", actor="victim")
    assert victim.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.acme.notes

    # 1. globex from one address: PER_ADDRESS connections held, the rest answered 429 and closed.
    held: list[socket.socket] = []
    try:
        one = [connect(port, "127.0.0.2") for _ in range(3 * PER_ADDRESS)]
        held += one
        refused = closed_within(one, 5.0)
        assert len(refused) == len(one) - PER_ADDRESS, f"{len(one) - len(refused)} connections from one address held"
        answered = [data for data in refused.values() if data]
        assert answered and all(data.startswith(b"HTTP/1.1 429 ") for data in answered), answered[:3]
        # Meanwhile acme's new connections and the admin API are served.
        assert healthz(server.base_url) == 200
        victim.reconnect()
        assert victim.call("repo.stat", {"path": "notes.txt"}).ok()["type"] == "file"

        # 2. globex from more addresses fills the connection cap: the rest wait, unaccepted.
        for index in range(CONNECTIONS):
            held.append(connect(port, f"127.0.0.{3 + index % 4}"))
        assert open_files(runner) < LIMIT
        # acme's established connection is served all the while.
        assert victim.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.acme.notes
        assert sum(still_open(s) for s in held if s not in refused) == len(held) - len(refused)
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, new connections are served again (no restart).
    assert healthz(server.base_url) == 200
    victim.reconnect()
    assert victim.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.acme.notes

    # 3. globex fills the runner with warm workers (a read, a write and an exec worker per session,
    # no connection kept) until it is refused: every call is answered, a result or a typed code.
    sessions: list[Agent] = []
    refusal = None
    try:
        for _ in range(40):
            agent = Agent(world, "globex", "g1")
            sessions.append(agent)
            for name, arguments in (("repo.read_file", {"path": "notes.txt"}),
                                    ("repo.write_file", {"path": f"w{len(sessions)}.txt", "content": "x"}),
                                    ("shell.run", {"command": "true"})):
                answer = agent.call(name, arguments)
                if answer.code is not None:
                    refusal = answer
                    break
            agent.close(revoke=False)  # its connection goes, its session and warm workers stay
            if refusal is not None:
                break
        assert refusal is not None, f"{len(sessions)} sessions' warm workers fit in {LIMIT} descriptors"
        assert refusal.code == "worker_unavailable", refusal.message
        assert "Too many open files" in refusal.text, refusal.text
        agent.audited(refusal, "worker_unavailable")
        # acme's warm worker, and its established connection, are still served.
        assert victim.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.acme.notes
    finally:
        for agent in sessions:
            server.admin("DELETE", f"/sessions/{agent.session_id}")
    assert server._process.poll() is None, server.log[-20:]

    # Once globex's sessions are revoked: new connections, sessions and workers work.
    victim.reconnect()
    assert victim.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.acme.notes
    second = Agent(world, "acme", "w2", actor="second")
    assert second.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == world.acme2.notes
    second.close()
    victim.close()
    world.assert_victims_unchanged()
    server.stop()
    assert server._process.returncode == 0, server.log[-20:]
    verified = subprocess.run([str(server.binary), "audit", "verify", "--state-dir", str(server.state_dir)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr

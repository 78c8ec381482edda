"""Memory, processes and CPU per worker through the real binary (issue 14, finding 1).

Found in review: memory was bounded per process only. One `shell.run` started 8 processes of
900 MiB each under a 1 GiB tier limit and the host lost 7 GiB. Now each worker sits in its own
cgroup under its tenant's (`memory.max`, `pids.max`, a CPU weight; tenants weigh the same), so
a call's processes share the tier's memory. A host that cannot give the runner cgroups refuses
tiers that need them, unless the tier accepts the limit as best-effort, which every spawn then
records.

The attacker is globex, the victim acme. The exec tier here has 256 MiB; the attack holds six
processes of 100 MiB, each under that limit on its own. Unprivileged, these run with a
delegated cgroup, as production under systemd `Delegate=yes` (scripts/test-interop-nonroot.sh).
"""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from attack_support import Agent, World
from interop_support import copy_policies, leasehold_binary

MIB = 1 << 20
# One process holding 100 MiB for long enough that six of them are alive together.
HOLD = "python3 -c 'import time; a = b\"x\" * (100 << 20); time.sleep(3)'"


def small_exec_policies(base: Path, best_effort: str | None = None) -> Path:
    policies = copy_policies(base / "policies")
    tiers = policies / "tiers.yaml"
    text = tiers.read_text()
    assert "memory_mib: 1024, file_size_mib: 256, processes: 64" in text
    text = text.replace("memory_mib: 1024, file_size_mib: 256, processes: 64", "memory_mib: 256, file_size_mib: 256, processes: 64")
    if best_effort:
        text = text.replace("  exec:\n", f"  exec:\n    best_effort: [{best_effort}]\n", 1)
    tiers.write_text(text)
    return policies


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = Path(tmp_path_factory.mktemp("memory"))
    world = World(base, policies=small_exec_policies(base))
    yield world
    world.stop()


def said(answer) -> str:
    """The text of a refusal or limit, as the caller reads it."""
    return answer.text


def spawned(agent: Agent) -> list[dict]:
    return [r for r in agent.audit() if r["event"] == "worker.spawned"]


def worker_pid(record: dict) -> int:
    match = re.match(r"pid (\d+)", record.get("detail", ""))
    assert match, record
    return int(match.group(1))


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """The worker's group per controller, as this (init-namespace) process sees it."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fields, kind = head.split(), tail.split()
        if kind[0] == "cgroup2":
            mounts.setdefault("", Path(fields[4]))
        elif kind[0] == "cgroup":
            for option in kind[2].split(","):
                if option in ("memory", "pids", "cpu"):
                    mounts[option] = Path(fields[4])
    found: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            if name in mounts:
                found[name] = mounts[name] / path.lstrip("/")
    unified = found.get("")
    if unified is not None and (unified / "memory.max").exists():
        return {"memory": unified, "pids": unified, "cpu": unified, "version": Path("v2")}
    return {name: found[name] for name in ("memory", "pids", "cpu") if name in found} | {"version": Path("v1")}


def test_a_calls_processes_share_the_tiers_memory(world: World) -> None:
    attacker = Agent(world, "globex", "g1", actor="mallory")
    victim = Agent(world, "acme", "w1", actor="alice")
    victim_answers: list = []
    started = threading.Event()

    def victim_works() -> None:
        started.wait(30)
        victim_answers.append(victim.call("shell.run", {"command": "echo victim ok"}, leak_check=False))
        victim_answers.append(victim.call("repo.read_file", {"path": "notes.txt", "length": 7}, leak_check=False))

    helper = threading.Thread(target=victim_works)
    helper.start()
    try:
        # Six holders of 100 MiB, each under the tier's 256 MiB; the shell waits for all of them.
        command = f"for i in 1 2 3 4 5 6; do {HOLD} & done; wait; echo all held"
        started.set()
        answer = attacker.call("shell.run", {"command": command, "timeout_ms": 20000})
        assert answer.code == "limit_exceeded", f"six processes held 600 MiB under a 256 MiB tier: {answer.text[:600]}"
        assert "memory_mib" in said(answer) and "256 MiB" in said(answer), said(answer)
        record = attacker.audited(answer, "limit_exceeded")
        assert record["event"] == "call.outcome" and record["outcome"] == "limit_exceeded", record
        assert "memory_mib" in str(record), record
        # The attacker's next call starts clean; the victim never noticed.
        assert attacker.shell("echo next")["stdout"] == "next\n"
    finally:
        helper.join(60)
    assert [a.code for a in victim_answers] == [None, None], [a.text[:300] for a in victim_answers]
    assert victim_answers[0].ok()["stdout"] == "victim ok\n"
    attacker.close()
    victim.close()


def test_workers_sit_in_their_tenants_groups_with_the_tiers_limits(world: World) -> None:
    attacker = Agent(world, "globex", "g1", actor="gina")
    victim = Agent(world, "acme", "w1", actor="bob")
    try:
        # A warm read worker each (distinct arguments: the read tier's cache would answer a repeat).
        assert attacker.call("repo.list_dir", {"path": ".", "limit": 901}).code is None
        assert victim.call("repo.list_dir", {"path": ".", "limit": 902}, leak_check=False).code is None
        groups = {}
        for agent in (attacker, victim):
            pid = worker_pid(spawned(agent)[-1])
            groups[agent.tenant] = cgroup_dirs(pid)
        for tenant, dirs in groups.items():
            assert set(dirs) >= {"memory", "pids", "cpu"}, f"{tenant}'s worker has no cgroups of its own: {dirs}"
            v2 = dirs["version"] == Path("v2")
            memory = dirs["memory"] / ("memory.max" if v2 else "memory.limit_in_bytes")
            assert int(memory.read_text()) == 256 * MIB, f"{tenant}: {memory}"
            assert (dirs["pids"] / "pids.max").read_text().strip() == "1", tenant
            # Each worker under its own tenant's group; tenant groups weigh the same.
            for name in ("memory", "pids", "cpu"):
                assert dirs[name].parent.name == f"tenant-{tenant}", dirs[name]
            weight = dirs["cpu"].parent / ("cpu.weight" if v2 else "cpu.shares")
            assert weight.read_text().strip() == ("100" if v2 else "1024"), weight
        assert groups["globex"]["memory"].parent.parent == groups["acme"]["memory"].parent.parent
    finally:
        attacker.close()
        victim.close()


def test_a_tier_whose_limits_cannot_be_held_is_refused_unless_best_effort(tmp_path: Path) -> None:
    config = tmp_path / "leasehold.yaml"
    config.write_text("worker_cgroups: off\n")
    # What doctor says of this host with cgroups off.
    report = subprocess.run(
        [str(leasehold_binary()), "doctor", "--config", str(config), "--policies", str(small_exec_policies(tmp_path / "d"))],
        capture_output=True, text=True, timeout=120)
    assert "worker cgroups:  none (worker_cgroups: off)" in report.stdout, report.stdout
    assert re.search(r"tier exec:\s+unavailable: memory_mib, cpu_weight cannot be enforced", report.stdout), report.stdout
    assert re.search(r"tier read:\s+available", report.stdout), report.stdout

    strict = World(tmp_path / "strict", policies=small_exec_policies(tmp_path / "s"), config=config)
    try:
        attacker = Agent(strict, "globex", "g1", actor="mallory")
        answer = attacker.call("shell.run", {"command": "echo ran"})
        assert answer.code == "tier_unavailable", answer.text[:500]
        assert "memory_mib" in said(answer) and "best_effort" in said(answer), said(answer)
        attacker.audited(answer, "tier_unavailable")
        # A tier of one process holds its memory with its address-space rlimit: it still runs.
        assert attacker.call("repo.list_dir", {"path": ".", "limit": 903}).code is None
        assert not [r for r in spawned(attacker) if "shell" in str(r) or r.get("tier") == "exec"]
        attacker.close()
    finally:
        strict.stop()

    lenient = World(
        tmp_path / "lenient", policies=small_exec_policies(tmp_path / "l", best_effort="memory_mib, cpu_weight"),
        config=config)
    try:
        agent = Agent(lenient, "globex", "g1", actor="gina")
        assert agent.shell("echo ran")["stdout"] == "ran\n"
        exec_spawns = [r for r in spawned(agent) if r.get("tier") == "exec"]
        assert exec_spawns, spawned(agent)
        assert "best-effort, not enforced on this host: memory_mib, cpu_weight" in exec_spawns[-1]["detail"], exec_spawns[-1]
        # And best-effort means what it says: without a memory cgroup the same six holders all
        # hold their 100 MiB (the behaviour every tier had before worker cgroups).
        held = agent.call("shell.run", {"command": f"for i in 1 2 3 4 5 6; do {HOLD} & done; wait; echo all held",
                                        "timeout_ms": 20000})
        assert held.code is None and held.ok()["stdout"] == "all held\n", said(held)
        agent.close()
    finally:
        lenient.stop()

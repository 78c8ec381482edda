"""Warm state across trust boundaries, through the real binary: a warm (read or write tier)
worker is never reused after an actor hand-off, a lease renewal, or a policy change of its tier
(compared by the worker_id of call.outcome records); files left in /tmp by one call are not seen
by the next call, session or tenant; result cache entries for byte-identical arguments never
cross tenants or workspaces (issue 3), and the cache counters and call.cached records say so;
and one tenant's idle warm workers cannot starve another tenant's calls.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from attack_support import Agent, World
from interop_support import copy_policies, write_catalog_config


def outcome(agent: Agent, answer) -> dict:
    record = agent.audited(answer)
    assert record["event"] == "call.outcome", record
    return record


def read_worker(agent: Agent, length: int) -> str:
    """A read-tier call with arguments nobody used before (so the cache cannot answer it)."""
    answer = agent.call("repo.read_file", {"path": "notes.txt", "length": length})
    assert answer.code is None, answer.message
    return outcome(agent, answer)["worker_id"]


def write_worker(agent: Agent, n: int) -> str:
    answer = agent.call("repo.write_file", {"path": f"w{n}.txt", "content": str(n)})
    assert answer.code is None, answer.message
    return outcome(agent, answer)["worker_id"]


def destroyed(world: World, worker_id: str) -> list[str]:
    records = world.server.admin("GET", "/audit?limit=10000").json()["records"]
    return [r["event"].get("code") for r in records if r["event"]["event"] == "worker.destroyed"
            and r["event"].get("worker_id") == worker_id]


def test_warm_workers_are_reused_within_one_binding(world: World) -> None:
    """The baseline the other tests depend on: same session, lease and tier -> same worker."""
    agent, _ = world.attacker()
    try:
        first = read_worker(agent, 1001)
        assert read_worker(agent, 1002) == first
        writer = write_worker(agent, 1)
        assert writer != first and write_worker(agent, 2) == writer
    finally:
        agent.close()


def test_hand_off_to_another_actor_gets_fresh_workers(world: World) -> None:
    agent, _ = world.attacker()
    try:
        reader, writer = read_worker(agent, 2001), write_worker(agent, 3)
        world.server.admin("PATCH", f"/sessions/{agent.session_id}", {"actor_id": "mallory"}, expect=200)
        agent.reconnect()  # the hand-off closed the old connection
        new_reader, new_writer = read_worker(agent, 2002), write_worker(agent, 4)
        assert new_reader != reader and new_writer != writer
        assert destroyed(world, reader) == ["hand_off"] and destroyed(world, writer) == ["hand_off"]
        # The new workers belong to the new actor.
        spawned = [r for r in agent.audit() if r["event"] == "worker.spawned" and r["worker_id"] == new_reader]
        assert spawned and spawned[0]["actor"] == "mallory", spawned
    finally:
        agent.close()


def test_lease_renewal_gets_fresh_workers(world: World) -> None:
    agent, _ = world.attacker()
    try:
        reader, writer = read_worker(agent, 3001), write_worker(agent, 5)
        renewed = world.server.admin("POST", f"/sessions/{agent.session_id}/lease", expect=201).json()
        agent.connect(renewed["claim"])
        assert read_worker(agent, 3002) != reader and write_worker(agent, 6) != writer
        assert destroyed(world, reader) == ["lease_replaced"] and destroyed(world, writer) == ["lease_replaced"]
    finally:
        agent.close()


def test_revoke_destroys_warm_workers(world: World) -> None:
    agent, _ = world.attacker()
    reader = read_worker(agent, 4001)
    agent.close()  # DELETE /sessions/{id}
    assert destroyed(world, reader) == ["session_revoked"]


def test_tmp_files_do_not_outlive_a_call(world: World) -> None:
    first, _ = world.attacker()
    try:
        left = first.shell(f"echo {first.tenant}-leftover > /tmp/leftover && mkdir -p /tmp/d && ls /tmp")
        assert "leftover" in left["stdout"], left
        for agent in (first, Agent(world, "globex", first.workspace, actor="next")):
            seen = agent.shell("ls -A /tmp; cat /tmp/leftover 2>&1; true")
            assert "leftover-" not in seen["stdout"] and seen["stdout"].split("\n")[0] != "leftover", seen
            if agent is not first:
                agent.close()
    finally:
        first.close()


def test_tmp_files_of_one_tenant_are_not_seen_by_another(world: World) -> None:
    acme = Agent(world, "acme", "w1", actor="alice")
    globex, _ = world.attacker()
    try:
        acme.call("shell.run", {"command": f"echo {world.acme.content} > /tmp/acme-secret; sleep 2",
                                "timeout_ms": 10000}, leak_check=False)
        seen = globex.shell("ls -A /tmp; test -e /tmp/acme-secret && echo FOUND; cat /tmp/acme-secret 2>/dev/null; true")
        assert seen["stdout"] == "", seen  # leak-checked as well
    finally:
        acme.close()
        globex.close()


# --------------------------------------------------------------------------------------------
# The result cache (issue 3): keyed by tenant and workspace
# --------------------------------------------------------------------------------------------


def cache_stats(world: World) -> dict:
    return world.server.admin("GET", "/cache", expect=200).json()


def test_cache_never_serves_one_tenants_entry_to_another(world: World) -> None:
    """acme/w1, acme/w2 and globex/g1 all have notes.txt; byte-identical arguments from each."""
    args = {"path": "notes.txt", "offset": 0}
    owners = [(world.acme, Agent(world, "acme", "w1", actor="alice")),
              (world.acme2, Agent(world, "acme", "w2", actor="alice")),
              (world.globex, Agent(world, "globex", "g1", actor="gina"))]
    try:
        # First round: every workspace misses (none may hit another's entry).
        for tree, agent in owners:
            before = cache_stats(world)
            answer = agent.call("repo.read_file", args)
            assert answer.ok()["content"] == tree.notes, answer.message
            after = cache_stats(world)
            assert after["hits"] == before["hits"] and after["misses"] == before["misses"] + 1, (before, after)
            assert outcome(agent, answer)["worker_id"]
        # Second round: each hits its own entry, sees its own bytes, and the answer is audited as cached.
        for tree, agent in owners:
            before = cache_stats(world)
            answer = agent.call("repo.read_file", args)
            assert answer.ok()["content"] == tree.notes, answer.message
            after = cache_stats(world)
            assert after["hits"] == before["hits"] + 1, (before, after)
            record = agent.audited(answer)
            assert record["event"] == "call.cached" and record["outcome"] == "cached", record
            assert record["tenant"] == tree.tenant and record["workspace"] == tree.workspace, record
        # A fresh globex session with the same arguments still sees only globex's bytes.
        late = Agent(world, "globex", "g1", actor="late")
        assert late.call("repo.read_file", args).ok()["content"] == world.globex.notes
        late.close()
    finally:
        for _, agent in owners:
            agent.close()


def test_cache_is_not_served_after_the_file_changes(world: World) -> None:
    agent, tree = world.attacker()
    try:
        first = agent.call("repo.read_file", {"path": "notes.txt"}).ok()["content"]
        agent.call("repo.write_file", {"path": "notes.txt", "content": "changed\n"}).ok()
        assert agent.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == "changed\n" != first
        agent.shell("echo shell-changed > notes.txt")
        assert agent.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == "shell-changed\n"
    finally:
        agent.close()


def test_cache_search_results_do_not_cross_tenants(world: World) -> None:
    args = {"pattern": "notes of", "case_sensitive": False}
    acme = Agent(world, "acme", "w1", actor="alice")
    globex = Agent(world, "globex", "g1", actor="gina")
    try:
        mine = acme.call("repo.search", args, leak_check=False).ok()
        assert world.acme.content in json.dumps(mine)
        for _ in range(2):
            theirs = globex.call("repo.search", args).ok()  # leak-checked
            assert world.globex.content in json.dumps(theirs)
    finally:
        acme.close()
        globex.close()


# --------------------------------------------------------------------------------------------
# A tier change (policy reload) retires the warm workers of that tier
# --------------------------------------------------------------------------------------------


def test_policy_change_of_a_tier_retires_its_warm_workers(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("tier-change")
    policies = copy_policies(base / "policies")
    config = write_catalog_config(base / "leasehold.yaml", {}, {})
    config.write_text(config.read_text().rstrip().rstrip("}") + ', "policy_reload_interval_seconds": 0}\n')
    world = World(base / "world", policies=policies, config=config)
    try:
        agent = Agent(world, "globex", "g1", actor="gina")
        reader, writer = read_worker(agent, 5001), write_worker(agent, 7)
        version = world.server.admin("GET", "/policy", expect=200).json()["version"]
        tiers = policies / "tiers.yaml"
        text = tiers.read_text()
        assert "memory_mib: 256, file_size_mib: 0," in text
        tiers.write_text(text.replace("memory_mib: 256, file_size_mib: 0,", "memory_mib: 200, file_size_mib: 0,"))
        world.server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while world.server.admin("GET", "/policy").json()["version"] == version:
            assert time.monotonic() < deadline, "SIGHUP did not reload the policy"
            time.sleep(0.05)  # polling the admin API for the reload; bounded by the deadline
        new_reader = read_worker(agent, 5002)
        assert new_reader != reader, "a warm read worker survived a change of its tier"
        assert destroyed(world, reader) == ["tier_changed"]
        # The write tier did not change: its warm worker is still the same.
        assert write_worker(agent, 8) == writer
        agent.close()
    finally:
        world.stop()


# --------------------------------------------------------------------------------------------
# One tenant's warm workers must not starve another tenant
# --------------------------------------------------------------------------------------------


def test_idle_warm_workers_do_not_starve_other_tenants(world: World) -> None:
    """globex opens many sessions, each leaving a warm read and write worker idle (within their
    lease and idle timeout); acme's next call must still get a worker."""
    idle: list[Agent] = []
    try:
        # 90 sessions x 2 warm workers: more descriptors in the runner than a read-tier worker's
        # RLIMIT_NOFILE (256). Stop early once globex itself is refused: that is the point shown.
        for i in range(90):
            agent = Agent(world, "globex", "g1", actor=f"idle{i}")
            idle.append(agent)
            codes = {agent.call("repo.stat", {"path": f"nothing-{i}"}).code,
                     agent.call("repo.write_file", {"path": f"idle/{i}.txt", "content": "x", "create_parents": True}).code}
            agent.http.close()
            if "worker_unavailable" in codes:
                break
        acme = Agent(world, "acme", "w1", actor="alice")
        answer = acme.call("repo.read_file", {"path": "notes.txt", "length": 77}, leak_check=False)
        acme.close()
        assert answer.code is None, f"acme was refused a worker while globex idles: {answer.message}"
    finally:
        for agent in idle:
            world.server.admin("DELETE", f"/sessions/{agent.session_id}")

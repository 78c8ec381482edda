"""Fair workers through the real binary (issue 14, finding 3): one tenant's sessions cannot hold
the workers or calls the others need. An attacker (globex) holds its idle warm workers, or keeps
calls in flight, at its limits; the victim's (acme's) calls keep working.

Calls take distinct arguments: the shipped read tier's result cache would answer a repeat
without a worker. The runner here has 4 workers in all; each tenant may hold 3 of them and have 2 calls in flight
(`tenant_limits`), so the attacker can fill the runner only with idle workers, which make room."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from attack_support import Agent, World

CONFIG = """worker_max_live: 4
worker_max_spares: 0
tenant_limits:
  worker_max_live: 3
  calls_in_flight: 2
"""


@pytest.fixture(scope="module")
def fair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = Path(tmp_path_factory.mktemp("fair"))
    config = base / "leasehold.yaml"
    config.write_text(CONFIG)
    world = World(base, config=config)
    yield world
    world.stop()


def worker_events(world: World, tenant: str) -> list[dict]:
    """The worker records of `tenant`, read with its own admin key."""
    import httpx

    key = world.admin_key(tenant)
    response = httpx.get(world.server.api_url + "/audit?limit=10000", headers={"Authorization": f"Bearer {key}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return [r["event"] for r in response.json()["records"] if r["event"]["event"].startswith("worker.")]


def test_idle_workers_of_one_tenant_make_room_for_another(fair: World) -> None:
    victim = Agent(fair, "acme", "w1", actor="alice")
    second = Agent(fair, "acme", "w1", actor="bob")
    idle = [Agent(fair, "globex", "g1", actor=f"idle{i}") for i in range(5)]
    try:
        assert victim.call("repo.read_file", {"path": "notes.txt", "length": 11}, leak_check=False).code is None
        # globex warms five sessions: never more than its 3 workers, its oldest idle ones go first.
        for index, agent in enumerate(idle):
            assert agent.call("repo.list_dir", {"path": ".", "limit": 100 + index}).code is None
        globex_gone = [e for e in worker_events(fair, "globex") if e["event"] == "worker.destroyed"]
        assert len([e for e in globex_gone if "tenant's worker limit" in e.get("detail", "")]) == 2, globex_gone
        # The runner is full (acme 1, globex 3) of idle workers; acme's next session still gets one,
        # and the room comes from globex, above an equal share, not from acme's own idle worker.
        answer = second.call("repo.read_file", {"path": "notes.txt", "length": 12}, leak_check=False)
        assert answer.code is None, f"acme was refused while globex idles: {answer.message}"
        globex_gone = [e for e in worker_events(fair, "globex") if e["event"] == "worker.destroyed"]
        assert len([e for e in globex_gone if "runner's worker limit" in e.get("detail", "")]) == 1, globex_gone
        assert not [e for e in worker_events(fair, "acme")
                    if e["event"] == "worker.destroyed" and e.get("session") == victim.session_id]
        assert victim.call("repo.read_file", {"path": "notes.txt", "length": 13}, leak_check=False).code is None
    finally:
        for agent in idle:
            agent.close()
        victim.close()
        second.close()


def test_calls_in_flight_are_capped_per_tenant(fair: World) -> None:
    busy = [Agent(fair, "globex", "g1", actor=f"busy{i}") for i in range(3)]
    victim = Agent(fair, "acme", "w1", actor="alice")
    started = threading.Barrier(3)
    results: list[str | None] = []

    def sleep_call(agent: Agent) -> None:
        started.wait()
        results.append(agent.call("shell.run", {"argv": ["sleep", "3"]}).code)

    threads = [threading.Thread(target=sleep_call, args=(agent,)) for agent in busy[:2]]
    try:
        for thread in threads:
            thread.start()
        started.wait()
        # globex's two calls in flight are its limit: wait until both workers exist.
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            spawned = [e for e in worker_events(fair, "globex")
                       if e["event"] == "worker.spawned" and e.get("session") in {a.session_id for a in busy[:2]}]
            if len(spawned) >= 2:
                break
            time.sleep(0.05)  # the spawns are audited, not announced: a bounded poll of the audit API
        third = busy[2].call("repo.list_dir", {"path": ".", "limit": 77})
        assert third.code == "tenant_at_limit", third.text
        # acme is not held up by globex's calls.
        assert victim.call("repo.read_file", {"path": "notes.txt", "length": 14}, leak_check=False).code is None
    finally:
        for thread in threads:
            thread.join(timeout=30)
        for agent in busy:
            agent.close()
        victim.close()
    assert results == [None, None], results


def test_one_tenant_cannot_hold_every_session(tmp_path: Path) -> None:
    """Sessions are capped per tenant too (`tenant_limits.sessions`): the attacker's orchestrator
    creating sessions without end is refused 429 `tenant_at_limit` at its cap, audited, while the
    victim creates and uses sessions as before. A revoked session frees its place."""
    import httpx

    config = tmp_path / "leasehold.yaml"
    config.write_text("tenant_limits:\n  sessions: 3\n  tenants:\n    acme: {sessions: 5}\n")
    world = World(tmp_path / "world", config=config)
    try:
        key = world.admin_key("globex")

        def create(tenant: str, admin_key: str) -> httpx.Response:
            body = {"tenant_id": tenant, "actor_id": "orchestrator", "workspace_id": "g1" if tenant == "globex" else "w1"}
            return httpx.post(world.server.api_url + "/sessions", json=body,
                              headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)

        made = [create("globex", key) for _ in range(3)]
        assert [r.status_code for r in made] == [201, 201, 201], [r.text for r in made]
        refused = create("globex", key)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "tenant_at_limit", refused.text
        audit = httpx.get(world.server.api_url + "/audit?limit=10000", headers={"Authorization": f"Bearer {key}"},
                          timeout=30).json()["records"]
        assert [r["event"] for r in audit if r["event"]["event"] == "session.refused"][-1]["code"] == "tenant_at_limit"
        # The victim's own cap is its own (an override of 5), untouched by the attacker's.
        victim = [Agent(world, "acme", "w1", actor=f"alice{i}") for i in range(5)]
        assert victim[-1].call("repo.read_file", {"path": "notes.txt", "length": 9}, leak_check=False).code is None
        assert create("acme", world.admin_key("acme")).status_code == 429
        # A revoked session no longer counts.
        gone = made[0].json()["session"]["id"]
        assert httpx.delete(world.server.api_url + f"/sessions/{gone}", headers={"Authorization": f"Bearer {key}"},
                            timeout=30).status_code in (200, 204)
        assert create("globex", key).status_code == 201
        for agent in victim:
            agent.close()
    finally:
        world.stop()

"""Spare workers through the real binary, with two tenants. A per-call (exec tier) session has
its next workers confined ahead of its calls (spares); each serves exactly one call of exactly its
own tenant, workspace and session, never another tenant's or another session's, and has run
nothing before it: a file one call leaves in /tmp is not there in the next. Compared by the
worker_id of call.outcome records and the worker.spawned / worker.destroyed records.
"""

from __future__ import annotations

import time

from attack_support import Agent, Answer, World


def operator_records(world: World) -> list[tuple[int, dict]]:
    records = world.server.admin("GET", "/audit?limit=10000").json()["records"]
    return [(r["seq"], r["event"]) for r in records]


def shell(agent: Agent, command: str) -> tuple[Answer, str, str]:
    """Runs `command`; returns the answer, its stdout and the worker that ran it."""
    answer = agent.call("shell.run", {"command": command})
    return answer, answer.ok()["stdout"], agent.audited(answer)["worker_id"]


def test_each_spare_serves_one_call_of_its_own_tenant_and_session(world: World) -> None:
    acme = Agent(world, "acme", "w1", actor="alice")
    globex, _ = world.attacker()
    acme_again = Agent(world, "acme", "w1", actor="alice")  # same tenant and workspace, another session
    try:
        _, _, first = shell(acme, f"echo {acme.tenant}-left > /tmp/left; true")
        acme_calls: list[tuple[Answer, str]] = []
        globex_workers: list[str] = []
        other_session_workers: list[str] = []
        for _ in range(4):
            answer, out, worker = shell(acme, "ls -A /tmp; cat /tmp/left 2>/dev/null; true")
            assert out == "", f"a fresh worker's /tmp is empty, got {out!r}"
            acme_calls.append((answer, worker))
            # acme's spares are ready now; the other tenant and the other session call meanwhile.
            _, out, worker = shell(globex, "ls -A /tmp; true")
            assert out == "", out
            globex_workers.append(worker)
            _, out, worker = shell(acme_again, "ls -A /tmp; true")
            assert out == "", out
            other_session_workers.append(worker)

        acme_workers = [first] + [worker for _, worker in acme_calls]
        everyone = acme_workers + globex_workers + other_session_workers
        assert len(set(everyone)) == len(everyone), "a worker never serves a second call"

        records = operator_records(world)
        spawned = {e["worker_id"]: (seq, e) for seq, e in records if e["event"] == "worker.spawned"}
        for workers, tenant, session in ((acme_workers, "acme", acme.session_id),
                                         (globex_workers, "globex", globex.session_id),
                                         (other_session_workers, "acme", acme_again.session_id)):
            for worker in workers:
                _, event = spawned[worker]
                assert (event["tenant"], event["session"]) == (tenant, session), event
        for worker in everyone:
            codes = [e.get("code") for _, e in records if e["event"] == "worker.destroyed" and e.get("worker_id") == worker]
            assert codes == ["call_finished"], (worker, codes)

        # The spares were at work: acme's calls ran in workers confined before the call was
        # even authorized (their worker.spawned record precedes the call's call.intent).
        intents = {e.get("request_id"): seq for seq, e in records
                   if e["event"] == "call.intent" and e.get("session") == acme.session_id}
        ahead = [worker for answer, worker in acme_calls if spawned[worker][0] < intents[str(answer.request_id)]]
        assert ahead, "no call of acme's was served by a spare"
    finally:
        acme.close()
        globex.close()
        acme_again.close()


def test_revoking_a_session_destroys_its_spares(world: World) -> None:
    agent, _ = world.attacker()
    _, _, used = shell(agent, "true")

    def spares() -> set[str]:
        return {e["worker_id"] for _, e in operator_records(world)
                if e["event"] == "worker.spawned" and e.get("session") == agent.session_id} - {used}

    # The spare's own worker.spawned record is the event waited for (bounded).
    deadline = time.monotonic() + 20
    while not spares() and time.monotonic() < deadline:
        time.sleep(0.05)
    ready = spares()
    assert ready, "a per-call session gets a spare confined ahead of its next call"
    agent.close()  # DELETE /sessions/{id}
    records = operator_records(world)
    for worker in ready:
        codes = [e.get("code") for _, e in records if e["event"] == "worker.destroyed" and e.get("worker_id") == worker]
        assert codes == ["session_revoked"], (worker, codes)
